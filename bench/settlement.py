"""Settling a business day of 1,000,000 taps: time and peak memory, beside the limits.

    .venv/bin/python -m bench.settlement [--taps 1000000] [--cards 20000] [--keep]
                                         [--json FILE]

In a fresh PostgreSQL database this loads, with PostgreSQL's own bulk path
(`INSERT ... SELECT ... FROM generate_series`), two business days of the built-in
Surabaya policy (Asia/Jakarta, days from 03:00):

  * 2025-11-26, a day one tenth the size;
  * 2025-11-27, TAPS fare entries;

each with 2 postings per entry: fares of 50 routes run by 3 operators, 400 buses, cards
of 3 categories (transfers and senior fares at 0, the early-morning fare from 05:00 to
07:00), 2 % late taps posted on the day with the previous `service_date`, corrections
of about 0.8 % of the charged taps (a whole fare or half of it back, signed) and one
top-up per card that rides, a minute before its first tap. Card balances are set to
the sum of their postings, so `transit reconcile` passes.

Then it measures, in the same run:
  1. `transit settle` of an empty day, of the small day and of the big day, each as a
     subprocess: wall time and the child's peak RSS (wait4), entries per second;
  2. the limits the big day approaches: PostgreSQL's bare streaming read of the same
     join in the same order (COPY ... TO '/dev/null', on the server), and the same
     query fetched through a psycopg server-side cursor with no Python work per row
     (settle streams through such a cursor);
  3. settling the big day a second time (recorded day: byte-identical files);
  4. `transit reconcile 2025-11-27 --dir DIR` once.

The database is dropped at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.results import write_figures
from fare_gateway.schema import upgrade
from ledger.adapters.db import make_engine
from ledger.settlement import BusinessCalendar
from testbed.postgres import create_pg_database, drop_pg_database

DAY = date(2025, 11, 27)
SMALL_DAY = DAY - timedelta(days=1)
EMPTY_DAY = DAY - timedelta(days=2)
CALENDAR = BusinessCalendar("Asia/Jakarta", 180)
OPERATORS = ("SBB", "TSS", "WWS")  # Suroboyo Bus, Trans Semanggi, Wira-Wiri
N_ROUTES = 50
OPS = "ARRAY[" + ", ".join(f"'{op}'" for op in OPERATORS) + "]"

# The columns and order `ledger.settlement.compute` streams, as plain SQL.
STREAM_SQL = """
SELECT e.id, e.idem_key, e.kind, e.amount, e.posted_ms, e.currency, e.card, e.tap_id,
       e.reference, e.service_date, e.operator_id, e.route_id, e.category, e.digest,
       p.id, p.account_id, p.amount
FROM entries e JOIN postings p ON p.entry_id = e.id
WHERE e.posted_ms >= {start} AND e.posted_ms < {end}
ORDER BY e.id, p.id
"""


def pg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- loading -------------------------------------------------------------------------

def load_reference(conn, n_cards: int) -> None:  # type: ignore[no-untyped-def]
    """Cards (70 % regular, 25 % student, 5 % senior), their accounts, routes, operators."""
    ts = CALENDAR.bounds(EMPTY_DAY)[0]
    conn.execute(f"""
        CREATE TEMP TABLE bench_cards AS
        SELECT c AS ci, '04C1' || upper(lpad(to_hex(c), 8, '0')) AS card,
               CASE WHEN c % 20 < 14 THEN 'regular' WHEN c % 20 < 19 THEN 'student'
                    ELSE 'senior' END AS category
        FROM generate_series(0, {n_cards - 1}) AS c""")
    conn.execute("CREATE UNIQUE INDEX ON bench_cards (ci)")
    conn.execute(f"""
        INSERT INTO accounts (kind, ref, currency, created_ms)
        SELECT 'card', card, 'IDR', {ts} FROM bench_cards ORDER BY ci""")
    conn.execute(f"""
        INSERT INTO accounts (kind, ref, currency, created_ms)
        SELECT 'revenue', op, 'IDR', {ts} FROM unnest({OPS}) AS op""")
    conn.execute(f"""
        INSERT INTO accounts (kind, ref, currency, created_ms)
        VALUES ('clearing', 'topups', 'IDR', {ts})""")
    conn.execute(f"""
        INSERT INTO cards (card, category, status, account_id, balance, created_ms)
        SELECT b.card, b.category, 'active', a.id, 0, {ts}
        FROM bench_cards b JOIN accounts a ON a.kind = 'card' AND a.ref = b.card
        ORDER BY b.ci""")
    conn.execute(f"""
        CREATE TEMP TABLE bench_routes AS
        SELECT r AS ri, 'R' || lpad((r + 1)::text, 2, '0') AS route_id,
               ({OPS})[1 + r % 3] AS operator_id
        FROM generate_series(0, {N_ROUTES - 1}) AS r""")
    conn.execute("CREATE UNIQUE INDEX ON bench_routes (ri)")
    conn.execute("ANALYZE bench_cards; ANALYZE bench_routes")


def load_day(conn, day: date, n: int, first_seq: int, n_cards: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """One business day: `n` fare entries, corrections, top-ups, and their postings."""
    start, end = CALENDAR.bounds(day)
    midnight = start - 180 * 60_000
    iso, prev = day.isoformat(), (day - timedelta(days=1)).isoformat()
    compact = day.strftime("%Y%m%d")
    # Taps: 04:30 to 23:30 local, in order; every 50th one is a late tap of the previous
    # service day from a bus that was offline, uploaded in the morning (04:30-08:00).
    conn.execute("DROP TABLE IF EXISTS bench_taps")
    conn.execute(f"""
        CREATE TEMP TABLE bench_taps AS
        SELECT t.*, c.card, c.category, r.route_id, r.operator_id,
               'SBY-' || r.route_id || '-' || lpad((t.seq % 8 + 1)::text, 2, '0') AS device,
               CASE WHEN t.late THEN '{prev}' ELSE '{iso}' END AS service_date,
               CASE WHEN t.seq % 5 = 1 OR c.category = 'senior' THEN 0
                    WHEN c.category = 'student' THEN
                         CASE WHEN NOT t.late AND t.local_min >= 300 AND t.local_min < 420
                              THEN 1000 ELSE 2500 END
                    ELSE CASE WHEN NOT t.late AND t.local_min >= 300 AND t.local_min < 420
                              THEN 2000 ELSE 5000 END
               END AS fare
        FROM (
            SELECT s.i, s.seq, s.late, s.posted_ms,
                   (s.posted_ms - {midnight}) / 60000 AS local_min
            FROM (
                SELECT i, {first_seq} + i AS seq, i % 50 = 0 AS late,
                       CASE WHEN i % 50 = 0
                            THEN {start} + 5400000 + (i::bigint * 7919) % 12600000
                            ELSE {start} + 5400000 + (i - 1)::bigint * 68400000 / {n}
                       END AS posted_ms
                FROM generate_series(1, {n}) AS i) AS s) AS t
        JOIN bench_cards c ON c.ci = (t.i::bigint * 7919 + t.i / 1000) % {n_cards}
        JOIN bench_routes r ON r.ri = (t.i::bigint * 31 + t.i / 97) % {N_ROUTES}""")
    conn.execute(f"""
        INSERT INTO entries (idem_key, kind, digest, amount, posted_ms, currency, card,
                             tap_id, reference, service_date, operator_id, route_id, category)
        SELECT idem_key, kind, digest, amount, posted_ms, 'IDR', card, tap_id, reference,
               service_date, operator_id, route_id, category
        FROM (
            -- fares
            SELECT 'tap:' || device || ':' || seq AS idem_key, 'fare' AS kind,
                   encode(sha256(convert_to(device || ':' || seq || '|' || card, 'UTF8')),
                          'hex') AS digest,
                   fare AS amount, posted_ms, card, device || ':' || seq AS tap_id,
                   NULL AS reference, service_date, operator_id, route_id, category,
                   i AS tiebreak
            FROM bench_taps
            UNION ALL
            -- corrections of about 1 % of charged taps, 30-90 minutes later: a whole fare
            -- back (a transfer discovered late) or half of it (an exit tap's refund)
            SELECT 'corr:' || device || ':' || seq || ':' || device || ':' || (seq + {n}),
                   'correction',
                   encode(sha256(convert_to('corr|' || device || ':' || seq, 'UTF8')), 'hex'),
                   CASE WHEN i % 3 = 0 THEN -fare ELSE -(fare / 2) END,
                   least(posted_ms + 1800000 + (i % 60) * 60000, {end - 1}), card,
                   device || ':' || seq, NULL, service_date, operator_id, route_id, category,
                   i
            FROM bench_taps WHERE i % 97 = 3 AND fare > 0
            UNION ALL
            -- top-ups: each card that rides tops up once, a minute before its first
            -- tap of the day, by enough (in steps of 50,000) to cover the day's fares
            SELECT 'topup:TU' || '{compact}' || lpad(j::text, 7, '0'), 'topup',
                   encode(sha256(convert_to('topup|' || card || '|' || amount, 'UTF8')),
                          'hex'),
                   amount, greatest(first_ms - 60000, {start}), card, NULL,
                   'TU' || '{compact}' || lpad(j::text, 7, '0'), NULL, NULL, NULL, NULL, 0
            FROM (SELECT card, min(posted_ms) AS first_ms,
                         (sum(fare) / 50000 + 1) * 50000 AS amount,
                         row_number() OVER (ORDER BY min(posted_ms), card) AS j
                  FROM bench_taps GROUP BY card) AS t
        ) AS day
        ORDER BY posted_ms, kind DESC, tiebreak""")
    clearing = conn.execute(
        "SELECT id FROM accounts WHERE kind = 'clearing' AND ref = 'topups'").fetchone()[0]
    conn.execute(f"""
        INSERT INTO postings (entry_id, account_id, amount)
        SELECT e.id, v.account_id, v.amount
        FROM entries e
        JOIN accounts ca ON ca.kind = 'card' AND ca.ref = e.card
        LEFT JOIN accounts ra ON ra.kind = 'revenue' AND ra.ref = e.operator_id
        CROSS JOIN LATERAL (VALUES
            (1, CASE WHEN e.kind = 'topup' THEN {clearing} ELSE ca.id END, -e.amount),
            (2, CASE WHEN e.kind = 'topup' THEN ca.id ELSE ra.id END, e.amount)
        ) AS v(k, account_id, amount)
        WHERE e.posted_ms >= {start} AND e.posted_ms < {end}
        ORDER BY e.id, v.k""")
    counts = dict(conn.execute(f"""
        SELECT kind, count(*) FROM entries
        WHERE posted_ms >= {start} AND posted_ms < {end} GROUP BY kind""").fetchall())
    return {k: int(v) for k, v in counts.items()}


def load(db_url: str, taps: int, n_cards: int) -> dict[date, dict[str, int]]:
    import psycopg

    with psycopg.connect(pg_url(db_url)) as conn:
        conn.execute("SET work_mem = '256MB'")
        load_reference(conn, n_cards)
        days = {SMALL_DAY: load_day(conn, SMALL_DAY, max(1, taps // 10), 0, n_cards),
                DAY: load_day(conn, DAY, taps, 10 * taps, n_cards)}
        conn.execute("""
            UPDATE cards SET balance = s.total
            FROM (SELECT account_id, sum(amount) AS total FROM postings
                  GROUP BY account_id) AS s
            WHERE cards.account_id = s.account_id""")
        conn.commit()
    with psycopg.connect(pg_url(db_url), autocommit=True) as conn:
        # What autovacuum would have done by the time a day is settled (hint bits, stats).
        conn.execute("VACUUM (ANALYZE) accounts, cards, entries, postings")
    return days


# -- measuring -----------------------------------------------------------------------

def run_child(argv: list[str], env: dict[str, str]
              ) -> tuple[float, int, float, str, str, int]:
    """Run a command and reap it with wait4.

    Returns its wall time (s), its own peak RSS (KiB), its CPU time (s, user + system),
    stdout, stderr and exit code.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        cpu = usage.ru_utime + usage.ru_stime
        return wall, int(usage.ru_maxrss), cpu, out.read(), err.read(), proc.returncode


def bare_copy(db_url: str, day: date) -> float:
    """PostgreSQL alone: the same join, in the same order, written to /dev/null."""
    start, end = CALENDAR.bounds(day)
    sql = " ".join(STREAM_SQL.format(start=start, end=end).split())
    t0 = time.perf_counter()
    subprocess.run(["psql", pg_url(db_url), "-v", "ON_ERROR_STOP=1", "-qc",
                    f"COPY ({sql}) TO '/dev/null'"], check=True, capture_output=True)
    return time.perf_counter() - t0


def cursor_fetch(db_url: str, day: date, itersize: int = 5000) -> tuple[float, int]:
    """The same query through a psycopg server-side cursor, rows fetched and dropped."""
    import psycopg

    start, end = CALENDAR.bounds(day)
    rows = 0
    t0 = time.perf_counter()
    with psycopg.connect(pg_url(db_url)) as conn:
        with conn.cursor(name="bench_stream") as cur:
            cur.itersize = itersize
            cur.execute(STREAM_SQL.format(start=start, end=end))
            for _ in cur:
                rows += 1
    return time.perf_counter() - t0, rows


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--taps", type=int, default=1_000_000,
                    help="fare entries on 2025-11-27 (the day before gets a tenth)")
    ap.add_argument("--cards", type=int, default=20_000)
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args()

    exe = shutil.which("transit", path=str(Path(sys.executable).parent)) or "transit"
    workdir = Path(tempfile.mkdtemp(prefix="transit-settle-bench-"))
    db_url = create_pg_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=db_url, TRANSIT_LOG_LEVEL="WARNING")
    try:
        engine = make_engine(db_url)
        upgrade(engine)
        engine.dispose()
        t0 = time.perf_counter()
        days = load(db_url, args.taps, args.cards)
        load_s = time.perf_counter() - t0
        # Rows loaded with plain SQL have no fingerprints: seal them as `transit db
        # upgrade --seal-legacy` seals a database of an older version, so that reconcile
        # checks them as it checks rows the gateway wrote.
        subprocess.run([exe, "db", "upgrade", "--seal-legacy"], env=env,
                       capture_output=True, text=True, check=True)
        total = {d: sum(c.values()) for d, c in days.items()}
        print(f"database {db_url.rsplit('/', 1)[1]} (PostgreSQL, this machine)")
        for d, c in days.items():
            kinds = ", ".join(f"{v:,} {k}" for k, v in sorted(c.items()))
            print(f"  {d}: {total[d]:,} entries ({kinds}), {2 * total[d]:,} postings")
        print(f"loaded in {load_s:.1f} s ({sum(total.values()) / load_s:,.0f} entries/s "
              "with their postings, INSERT ... SELECT, then VACUUM ANALYZE)")

        # Warm the cache the same way for every reader, then the limits.
        bare_copy(db_url, DAY)
        copies = [bare_copy(db_url, DAY) for _ in range(2)]
        fetch_s, rows = cursor_fetch(db_url, DAY)
        n = total[DAY]

        runs = {}
        for d in (EMPTY_DAY, SMALL_DAY, DAY):
            wall, rss, cpu, out, err, rc = run_child(
                [exe, "settle", d.isoformat(), "--out", str(workdir)], env)
            if rc != 0:
                raise SystemExit(f"transit settle {d} failed ({rc}): {err[-2000:]}")
            runs[d] = (wall, rss, cpu, out.strip())
        first_csv = (workdir / f"settlement-{DAY}.csv").read_bytes()
        first_json = (workdir / f"settlement-{DAY}.json").read_bytes()
        again = run_child([exe, "settle", DAY.isoformat(), "--out", str(workdir)], env)
        identical = (first_csv == (workdir / f"settlement-{DAY}.csv").read_bytes()
                     and first_json == (workdir / f"settlement-{DAY}.json").read_bytes())

        rec_wall, rec_rss, rec_cpu, rec_out, _, rec_rc = run_child(
            [exe, "reconcile", DAY.isoformat(), "--dir", str(workdir)], env)

        print()
        print(f"business day {DAY}: {n:,} entries, {rows:,} entry-posting rows")
        best_copy = min(copies)
        print(f"  PostgreSQL alone, COPY (same join, same order) TO '/dev/null': "
              f"{best_copy:.2f} s = {n / best_copy:,.0f} entries/s")
        print(f"  psycopg server-side cursor, same query, rows fetched and dropped "
              f"(itersize 5000): {fetch_s:.2f} s = {n / fetch_s:,.0f} entries/s")
        wall, rss, cpu, out = runs[DAY]
        print(f"  transit settle {DAY}: {wall:.2f} s = {n / wall:,.0f} entries/s, "
              f"peak RSS {mib(rss)}, CPU of the settle process {cpu:.2f} s")
        print(f"    {out}")
        print(f"  transit settle {DAY} again (day recorded): {again[0]:.2f} s, "
              f"peak RSS {mib(again[1])}, files byte-identical: {identical}")
        print()
        print("peak memory of transit settle (the process's max RSS):")
        for d in (EMPTY_DAY, SMALL_DAY, DAY):
            wall, rss, _, _ = runs[d]
            print(f"  {d}: {total.get(d, 0):>9,} entries  {wall:6.2f} s  {mib(rss):>8}")
        print()
        print(f"transit reconcile {DAY} --dir: {rec_wall:.2f} s, peak RSS {mib(rec_rss)}, "
              f"CPU of the process {rec_cpu:.2f} s, exit {rec_rc}")
        print("  " + "\n  ".join(rec_out.strip().splitlines()))
        sha = hashlib.sha256(first_csv).hexdigest()
        print(f"\nsettlement-{DAY}.csv sha256 {sha}")
        wall, rss, cpu, _ = runs[DAY]
        write_figures(args.json, "settlement", {
            "taps": args.taps, "cards": args.cards, "day": DAY.isoformat(), "entries": n,
            "rows": rows, "load_s": round(load_s, 2),
            "copy_s": round(best_copy, 3), "copy_entries_s": round(n / best_copy),
            "cursor_s": round(fetch_s, 3), "cursor_entries_s": round(n / fetch_s),
            "settle_s": round(wall, 3), "settle_entries_s": round(n / wall),
            "settle_cpu_s": round(cpu, 2), "settle_peak_rss_kib": rss,
            "settle_again_s": round(again[0], 3), "files_identical": identical,
            "peak_rss_kib_by_day": {d.isoformat(): runs[d][1] for d in runs},
            "entries_by_day": {d.isoformat(): total.get(d, 0) for d in runs},
            "reconcile_s": round(rec_wall, 3), "reconcile_peak_rss_kib": rec_rss,
            "reconcile_exit": rec_rc, "csv_sha256": sha})
    finally:
        if args.keep:
            print(f"kept {db_url} and {workdir}")
        else:
            drop_pg_database(db_url)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
