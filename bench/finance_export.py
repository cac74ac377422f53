"""The finance detail export of a big business day, beside PostgreSQL's own COPY, and
what the day's float costs on the same ledger.

    .venv/bin/python -m bench.finance_export [--million | --taps N] [--cards N] [--keep]
                                             [--json FILE]

In a fresh PostgreSQL database it loads the days `bench.settlement` loads (the same
generator, `INSERT ... SELECT ... FROM generate_series`): 2025-11-27 with TAPS fare
entries (default 100,000; `--million`: 1,000,000) plus its corrections and top-ups, and
the day before with a tenth of that. Then, in the same run:

  1. the export of 2025-11-27 through the endpoint's own code path
     (`FinanceOffice.detail`, what `GET /api/v1/finance/taps` streams), in a child
     process: its rows per second (timed inside the child, from the request to the
     last byte) and the child's peak RSS (wait4), beside the same child exporting an
     empty day: bounded memory means the two are close;
  2. the limits it approaches: `COPY (the same query) TO STDOUT` read by psycopg and
     dropped, and the same query through a psycopg server-side cursor with no Python
     work per row;
  3. that the export is right at that size: its lines, summed per key, are the day's
     settlement lines (`ledger.settlement.compute`);
  4. the float of the big day and of the day before (which reads the postings of both
     days since it began), several times: milliseconds, and whether it ties out.

The database is dropped at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date

from bench.results import write_figures
from bench.settlement import CALENDAR, DAY, EMPTY_DAY, SMALL_DAY, load, pg_url
from fare_gateway.schema import upgrade
from ledger.adapters.db import make_engine
from testbed.postgres import create_pg_database, drop_pg_database

# What `fare_gateway.finance.detail.detail_query` asks for, as plain SQL.
DETAIL_SQL = """
SELECT id, posted_ms, kind, service_date, tap_id, card, operator_id, route_id, category,
       amount
FROM entries WHERE posted_ms >= {start} AND posted_ms < {end} ORDER BY id
"""
KEY = ("line_type", "service_date", "operator_id", "route_id", "category")


def office(db_url: str):  # type: ignore[no-untyped-def]
    """The finance office of the built-in policy over the database (what the gateway
    builds), and its engine."""
    from fare_gateway.fares.policy import builtin_policy
    from fare_gateway.finance.office import FinanceOffice
    from ledger.adapters.db import session_factory
    from ledger.services import Ledger

    policy = builtin_policy()
    engine = make_engine(db_url)
    return FinanceOffice(session_factory(engine), Ledger(engine, policy.currency),
                         policy), engine


def child(db_url: str, day: str) -> None:
    """Export one day as the endpoint does and print what it took (run as a child)."""
    finance, engine = office(db_url)
    digest = hashlib.sha256()
    lines = size = 0
    t0 = time.perf_counter()
    chunks = finance.detail(date.fromisoformat(day))
    try:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    finally:
        chunks.close()
    seconds = time.perf_counter() - t0
    engine.dispose()
    print(json.dumps({"rows": lines - 1, "bytes": size, "seconds": seconds,
                      "sha256": digest.hexdigest()}))


def run_child(db_url: str, day: date) -> tuple[dict[str, float], int]:
    """The child's figures and its peak RSS (KiB)."""
    argv = [sys.executable, "-m", "bench.finance_export", "--child", day.isoformat(),
            "--db", db_url]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=dict(os.environ))
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"the export of {day} failed: {err.read()[-2000:]}")
        return json.loads(out.read().strip().splitlines()[-1]), int(usage.ru_maxrss)


def copy_out(db_url: str, day: date) -> tuple[float, int]:
    """PostgreSQL's COPY of the same query TO STDOUT, read by the client and dropped."""
    import psycopg

    start, end = CALENDAR.bounds(day)
    sql = " ".join(DETAIL_SQL.format(start=start, end=end).split())
    size = 0
    with psycopg.connect(pg_url(db_url)) as conn:
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)") as copy:
            for block in copy:
                size += len(block)
        return time.perf_counter() - t0, size


def cursor_fetch(db_url: str, day: date, itersize: int = 5000) -> float:
    """The same query through a psycopg server-side cursor, rows fetched and dropped."""
    import psycopg

    start, end = CALENDAR.bounds(day)
    with psycopg.connect(pg_url(db_url)) as conn:
        t0 = time.perf_counter()
        with conn.cursor(name="bench_detail") as cur:
            cur.itersize = itersize
            cur.execute(DETAIL_SQL.format(start=start, end=end))
            for _ in cur:
                pass
        return time.perf_counter() - t0


def matches_settlement(db_url: str, day: date) -> tuple[bool, int]:
    """Whether the export's lines, summed per key, are the settlement's lines; how many
    settlement lines there are."""
    from ledger.settlement import compute

    finance, engine = office(db_url)
    try:
        groups: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
        chunks = finance.detail(day)
        rest = b""
        header: list[str] | None = None
        for chunk in chunks:
            text = (rest + chunk).decode()
            body, _, tail = text.rpartition("\n")
            rest = tail.encode()
            for row in csv.reader(io.StringIO(body + "\n", newline="")):
                if header is None:
                    header = row
                    continue
                fields = dict(zip(header, row, strict=True))
                group = groups[tuple(fields[k] for k in KEY)]
                group[0] += 1
                group[1] += int(fields["amount"])
        with finance.sessions() as session:
            settled = compute(session, CALENDAR, day, "IDR", None, True)
        lines = list(csv.DictReader(io.StringIO(settled.csv.decode(), newline="")))
        expected = {tuple(line[k] for k in KEY): [int(line["count"]), int(line["amount"])]
                    for line in lines}
        return expected == dict(groups), len(lines)
    finally:
        engine.dispose()


def floats(db_url: str, day: date, runs: int) -> tuple[list[float], dict[str, object]]:
    """The float of `day`, `runs` times: each run's milliseconds, and the last figures."""
    finance, engine = office(db_url)
    try:
        times = []
        figures: dict[str, object] = {}
        for _ in range(runs):
            t0 = time.perf_counter()
            result = finance.float_of(day)
            times.append((time.perf_counter() - t0) * 1000)
            figures = {**result.as_json(), "ties_out": result.ties_out}
        return times, figures
    finally:
        engine.dispose()


def ledger_size(db_url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(pg_url(db_url)) as conn:
        entries = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        postings = conn.execute("SELECT count(*) FROM postings").fetchone()[0]
    return int(entries), int(postings)


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--taps", type=int, default=100_000,
                    help="fare entries on 2025-11-27 (the day before gets a tenth)")
    ap.add_argument("--million", action="store_true", help="--taps 1000000")
    ap.add_argument("--cards", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=5, help="float runs per day")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    ap.add_argument("--child", metavar="DAY", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.db, args.child)
        return
    taps = 1_000_000 if args.million else args.taps

    db_url = create_pg_database()
    try:
        engine = make_engine(db_url)
        upgrade(engine)
        engine.dispose()
        t0 = time.perf_counter()
        days = load(db_url, taps, args.cards)
        load_s = time.perf_counter() - t0
        n = sum(days[DAY].values())
        entries, postings = ledger_size(db_url)
        print(f"database {db_url.rsplit('/', 1)[1]} (PostgreSQL, this machine), loaded in "
              f"{load_s:.1f} s: {entries:,} entries, {postings:,} postings")
        for d, kinds in days.items():
            print(f"  {d}: {sum(kinds.values()):,} entries ("
                  + ", ".join(f"{v:,} {k}" for k, v in sorted(kinds.items())) + ")")

        copy_out(db_url, DAY)  # warm the cache the same way for every reader
        copies = [copy_out(db_url, DAY) for _ in range(2)]
        copy_s, copy_bytes = min(copies)
        fetch_s = min(cursor_fetch(db_url, DAY) for _ in range(2))
        empty, empty_rss = run_child(db_url, EMPTY_DAY)
        exports = [run_child(db_url, DAY) for _ in range(2)]
        export, export_rss = min(exports, key=lambda e: e[0]["seconds"])
        peak_rss = max(rss for _, rss in exports)
        right, n_lines = matches_settlement(db_url, DAY)
        big_ms, big = floats(db_url, DAY, args.runs)
        small_ms, small = floats(db_url, SMALL_DAY, args.runs)

        rows = int(export["rows"])
        print()
        print(f"business day {DAY}: {n:,} entries")
        print(f"  PostgreSQL COPY (same query) TO STDOUT, read by psycopg: {copy_s:.2f} s = "
              f"{n / copy_s:,.0f} rows/s ({copy_bytes / 2**20:.0f} MiB of CSV)")
        print(f"  psycopg server-side cursor, same query, rows dropped: {fetch_s:.2f} s = "
              f"{n / fetch_s:,.0f} rows/s")
        print(f"  detail export (FinanceOffice.detail, the endpoint's path): "
              f"{export['seconds']:.2f} s = {rows / export['seconds']:,.0f} rows/s, "
              f"{export['bytes'] / 2**20:.0f} MiB, peak RSS {mib(peak_rss)} "
              f"(an empty day's export: {mib(empty_rss)})")
        print(f"  its lines summed per key are the {n_lines} settlement lines: {right}")
        print(f"float of {DAY} on this ledger: median {statistics.median(big_ms):.0f} ms, "
              f"best {min(big_ms):.0f} ms; ties out: {big['ties_out']}")
        print(f"float of {SMALL_DAY} (reads both days' postings): median "
              f"{statistics.median(small_ms):.0f} ms; ties out: {small['ties_out']}; its "
              f"closing {small['closing']:,} = the opening of {DAY} {big['opening']:,}: "
              f"{small['closing'] == big['opening']}")
        write_figures(args.json, "finance_export", {
            "taps": taps, "cards": args.cards, "day": DAY.isoformat(), "entries": n,
            "ledger_entries": entries, "ledger_postings": postings,
            "load_s": round(load_s, 1), "rows": rows, "bytes": int(export["bytes"]),
            "copy_s": round(copy_s, 3), "copy_rows_s": round(n / copy_s),
            "cursor_s": round(fetch_s, 3), "cursor_rows_s": round(n / fetch_s),
            "export_s": round(export["seconds"], 3),
            "export_rows_s": round(rows / export["seconds"]),
            "export_peak_rss_kib": peak_rss, "empty_export_peak_rss_kib": empty_rss,
            "empty_rows": int(empty["rows"]), "matches_settlement": right,
            "settlement_lines": n_lines,
            "float_ms_median": round(statistics.median(big_ms), 1),
            "float_ms_best": round(min(big_ms), 1),
            "float_day_before_ms_median": round(statistics.median(small_ms), 1),
            "float_ties_out": bool(big["ties_out"]) and bool(small["ties_out"]),
            "floats_chain": small["closing"] == big["opening"]})
    finally:
        if args.keep:
            print(f"kept {db_url}")
        else:
            drop_pg_database(db_url)


if __name__ == "__main__":
    main()
