"""A rider's statement of a card with two years of history, beside the database's own time.

    .venv/bin/python -m bench.statement [--days 730] [--others 2000] [--runs 200]
                                        [--sqlite] [--keep] [--reuse URL] [--json FILE]

In a fresh PostgreSQL database (the schema by the migrations, the Transjakarta GTFS
network imported with `transit gtfs import`: 5,365 stops) the real tap path
(`TapService` over the SQL unit of work, with the built-in Surabaya fares) posts two
years of one commuter's card, ending today: on weekdays a morning ride and its
transfer (from 06:40, so often the 05:00-07:00 fare, then paying the difference), an
evening ride and its free transfer, now and then a lunch ride, a repeat tap or a day
that reaches the daily cap; on weekends a ride or two; about 1 % of taps denied at the
reader, 1 % arriving hours late from a bus that was offline (correcting what the day's
later taps cost), and a top-up of 100,000 whenever the balance falls below 15,000.
Every tap is made at a stop of its route, within about 20 m (one in twenty 300 m off,
where no stop is near). Alongside, a third of OTHERS cards ride once or twice a day, so
that the card is a small part of tables the statement finds it in through their indexes.
Each batch is processed at its arrival time (the ledger's clock and the tap window
follow it); the card's inbox rows get those arrival times.

Then, for `Statements.of_card` (what the rider's endpoint calls: a session of its own
per call):
  1. the default window (the 30 service days up to today) and the whole two years:
     p50 and p95 over RUNS calls, after a warm-up;
  2. the database's own time for the same statements, captured from one call: on
     PostgreSQL the EXPLAIN ANALYZE execution time of each (and the indexes its plan
     used), and on either database each statement executed and fetched through the
     driver with no Python work per row;
  3. the JSON of the answer (what the HTTP view adds): `json.dumps(as_json())`.

`--sqlite` runs the same on an SQLite file as well. The databases are removed at the
end (unless --keep); `--reuse URL` (once per database) measures a kept one again
without building it.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import percentile  # noqa: E402
from bench.results import write_figures  # noqa: E402
from fare_gateway.adapters.models import TapRecord  # noqa: E402
from fare_gateway.cards import issue_card, topup_card  # noqa: E402
from fare_gateway.devices import DeviceDirectory, add_device  # noqa: E402
from fare_gateway.fares.policy import builtin_policy  # noqa: E402
from fare_gateway.metrics import Metrics  # noqa: E402
from fare_gateway.riders.statement import Statement, Statements  # noqa: E402
from fare_gateway.routes import RouteDirectory  # noqa: E402
from fare_gateway.schema import upgrade  # noqa: E402
from fare_gateway.taps import Inbound, TapService  # noqa: E402
from fare_gateway.taps.sql import sql_units  # noqa: E402
from ledger.adapters.bulk import bulk_update  # noqa: E402
from ledger.adapters.db import make_engine, session_factory  # noqa: E402
from ledger.audit import Actor  # noqa: E402
from ledger.services import Ledger  # noqa: E402
from testbed.environment import transjakarta_feed  # noqa: E402
from testbed.postgres import create_pg_database, drop_pg_database  # noqa: E402
from transit.topics import Topics  # noqa: E402
from transit.window import EventWindow  # noqa: E402
from transit.wire import Tap  # noqa: E402

CARD = "04C0FFEE00000001"
POLICY = builtin_policy()
TOPICS = Topics()
ROUTES = 6  # routes of the feed the card and the others ride, five buses each
LOW, TOPUP = 15_000, 100_000


@dataclass
class Bus:
    device_id: str
    vehicle_id: str
    route_id: str
    secret: bytes
    stops: list[tuple[int, int]]  # the route's stops, lat/lon e6
    seq: int = 0


@dataclass(order=True)
class Arrival:
    """A batch of taps as it reaches the gateway."""

    at_ms: int
    taps: list[Tap] = field(compare=False)


@dataclass
class World:
    buses: list[Bus]
    rng: random.Random

    def tap(self, bus: Bus, card: str, ts: int, *, accepted: bool = True,
            reason: str | None = None, at_stop: int | None = None) -> Tap:
        bus.seq += 1
        lat, lon = bus.stops[(at_stop if at_stop is not None else self.rng.randrange(
            len(bus.stops))) % len(bus.stops)]
        off = 2700 if self.rng.random() < 0.05 else 180  # ~300 m (no stop near) or ~20 m
        return Tap(device_id=bus.device_id, seq=bus.seq, vehicle_id=bus.vehicle_id,
                   route_id=bus.route_id, card=card, kind="entry", accepted=accepted,
                   ts=ts, lat_e6=lat + self.rng.randint(-off, off),
                   lon_e6=lon + self.rng.randint(-off, off), reason=reason
                   ).signed(bus.secret)


def local_ms(day: date, minute: float) -> int:
    """Epoch ms of a local (Asia/Jakarta) time of `day`."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=POLICY.tz)
    return int((midnight + timedelta(minutes=minute)).timestamp() * 1000)


def commuter_day(world: World, day: date, home: list[Bus], work: list[Bus]
                 ) -> list[tuple[int, Tap]]:
    """One day of the card's taps, each with its arrival time."""
    rng = world.rng
    rides: list[tuple[Bus, float]] = []
    if day.weekday() < 5:
        start = 400 + rng.uniform(0, 40)  # 06:40-07:20
        rides += [(rng.choice(home), start), (rng.choice(work), start + rng.uniform(20, 40))]
        if rng.random() < 0.35:  # lunch, and back
            rides += [(rng.choice(work), 720.0), (rng.choice(work), 770.0)]
        back = 1020 + rng.uniform(0, 60)
        rides += [(rng.choice(work), back), (rng.choice(home), back + rng.uniform(20, 40))]
        if rng.random() < 0.12:  # out in the evening: past the daily cap
            rides += [(rng.choice(home), 1200.0), (rng.choice(work), 1350.0)]
    elif rng.random() < 0.8:
        t = rng.uniform(540, 960)
        rides += [(rng.choice(home + work), t)]
        if rng.random() < 0.5:
            rides += [(rng.choice(home + work), t + rng.uniform(150, 240))]
    out: list[tuple[int, Tap]] = []
    for bus, minute in rides:
        ts = local_ms(day, minute)
        denied = rng.random() < 0.01
        tap = world.tap(bus, CARD, ts, accepted=not denied,
                        reason=rng.choice(["denylisted", "not_authentic"]) if denied else None)
        # 1 % from a bus that was offline: they arrive hours later.
        delay = rng.uniform(2, 6) * 3_600_000 if rng.random() < 0.01 else 1500
        out.append((ts + int(delay), tap))
        if rng.random() < 0.05:  # tapped again a few seconds later, same bus
            again = world.tap(bus, CARD, ts + rng.randint(3, 30) * 1000)
            out.append((again.ts + 1500, again))
    return out


def others_day(world: World, day: date, cards: list[str]) -> list[Tap]:
    """Other cards' rides of a day: one or two each for a third of them."""
    rng = world.rng
    taps = []
    for card in rng.sample(cards, len(cards) // 3):
        for _ in range(rng.choice((1, 2))):
            taps.append(world.tap(rng.choice(world.buses), card,
                                  local_ms(day, rng.uniform(300, 1380))))
    return taps


def network(sessions: Any, rng: random.Random) -> list[tuple[str, list[tuple[int, int]]]]:
    """ROUTES routes of the imported feed with their stops in trip order."""
    from sqlalchemy import select

    from tracking.adapters.models import Stop, Trip, TripStop

    with sessions() as s:
        rows = s.execute(select(Trip.route_id, Trip.trip_id, TripStop.seq, Stop.lat_e6,
                                Stop.lon_e6)
                         .join(TripStop, TripStop.trip_id == Trip.trip_id)
                         .join(Stop, Stop.stop_id == TripStop.stop_id)
                         .order_by(Trip.route_id, Trip.trip_id, TripStop.seq)).all()
    by_route: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for route, trip, _seq, lat, lon in rows:
        by_route.setdefault(route, {}).setdefault(trip, []).append((lat, lon))
    usable = sorted(r for r, trips in by_route.items()
                    if max(len(s) for s in trips.values()) >= 8)
    chosen = rng.sample(usable, ROUTES)
    return [(r, max(by_route[r].values(), key=len)) for r in chosen]


def build(url: str, days: int, others: int, seed: int = 7) -> dict[str, Any]:
    """The database: network, buses, cards, two years of taps through the tap path."""
    engine = make_engine(url)
    upgrade(engine)
    exe = shutil.which("transit", path=str(Path(sys.executable).parent)) or "transit"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    subprocess.run([exe, "gtfs", "import", str(transjakarta_feed())], check=True,
                   capture_output=True, env={**env, "TRANSIT_DATABASE_URL": url})
    sessions = session_factory(engine)
    rng = random.Random(seed)
    clock = [0]
    ledger = Ledger(engine, POLICY.currency, clock=lambda: clock[0])
    buses = []
    with sessions.begin() as s:
        for r, (route, stops) in enumerate(network(sessions, rng)):
            for b in range(5):
                row, _ = add_device(s, f"TJ-{r:02d}{b}-A", f"TJ-{r:02d}{b}", key=None)
                buses.append(Bus(row.device_id, row.vehicle_id, route, row.plain_secret,
                                 stops))
    world = World(buses, rng)
    home, work = buses[:10], buses[10:20]
    today = POLICY.service_date(int(time.time() * 1000))
    first = today - timedelta(days=days - 1)
    other_cards = [f"04C1{i:012X}" for i in range(others)]
    clock[0] = local_ms(first, 0) - 86_400_000
    with sessions.begin() as s:
        for card in [CARD, *other_cards]:
            issue_card(s, ledger, POLICY, card, None, actor=Actor.command())
            topup_card(s, ledger, POLICY, card, TOPUP if card == CARD else 10_000_000,
                       f"init-{card}", actor=Actor.command())
    service = TapService(sql_units(sessions, ledger, POLICY), POLICY,
                         DeviceDirectory(sessions, key=None), RouteDirectory(sessions), TOPICS,
                         Metrics(), window=EventWindow(days + 7),
                         clock=lambda: clock[0])
    received: dict[str, int] = {}
    topups = 0

    def deliver(arrival: Arrival) -> None:
        nonlocal topups
        clock[0] = arrival.at_ms
        outcomes = service.handle([Inbound(TOPICS.tap(t.device_id), t.encode(), arrival.at_ms)
                                   for t in arrival.taps])
        for t, o in zip(arrival.taps, outcomes, strict=True):
            if t.card != CARD:
                continue
            received[t.tap_id] = arrival.at_ms
            if o.receipt is not None and o.receipt.balance is not None \
                    and o.receipt.balance < LOW:
                clock[0] = arrival.at_ms + 60_000  # topped up a minute later
                topups += 1
                with sessions.begin() as s:
                    topup_card(s, ledger, POLICY, CARD, TOPUP, f"TU-{topups:05d}",
                               actor=Actor.command())

    # Day by day, arrivals in time order: a late tap waits in the heap for its hour, and
    # what arrives before the next day's first ride (05:00) is delivered first.
    pending: list[Arrival] = []
    now_ms = int(time.time() * 1000)
    t0 = time.perf_counter()
    for n in range(days):
        day = first + timedelta(days=n)
        for at, t in commuter_day(world, day, home, work):
            heapq.heappush(pending, Arrival(at, [t]))
        background = others_day(world, day, other_cards)
        if background:
            heapq.heappush(pending, Arrival(local_ms(day, 1410), background))
        horizon = min(local_ms(day + timedelta(days=1), 300), now_ms)
        while pending and pending[0].at_ms < horizon:
            deliver(heapq.heappop(pending))
    # What is still to arrive after now has not arrived.
    load_s = time.perf_counter() - t0
    with sessions.begin() as s:  # the arrival times, where the inbox took the wall clock
        bulk_update(s, TapRecord.__table__, "tap_id", "received_ms", received)
    facts = count(engine)
    facts.update(load_s=round(load_s, 1), topups=topups + 1, first=first.isoformat(),
                 today=today.isoformat())
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")  # what autovacuum would have done
    engine.dispose()
    return facts


def known(url: str) -> dict[str, Any]:
    """What a kept database holds, for a run that only measures it."""
    engine = make_engine(url)
    try:
        facts = count(engine)
        with engine.connect() as conn:
            first = conn.exec_driver_sql(
                f"SELECT min(service_date) FROM taps WHERE card = '{CARD}'").scalar()
            topups = conn.exec_driver_sql(
                f"SELECT count(*) FROM entries WHERE card = '{CARD}' AND kind = 'topup'"
            ).scalar()
    finally:
        engine.dispose()
    facts.update(load_s=float("nan"), topups=int(topups or 0), first=str(first),
                 today=POLICY.service_date(int(time.time() * 1000)).isoformat())
    return facts


def count(engine: Any) -> dict[str, Any]:
    """What the database holds: the card's and everyone's."""
    with engine.connect() as conn:
        one = lambda sql: int(conn.exec_driver_sql(sql).scalar() or 0)  # noqa: E731
        return {
            "card_taps": one(f"SELECT count(*) FROM taps WHERE card = '{CARD}'"),
            "card_denied": one(f"SELECT count(*) FROM taps WHERE card = '{CARD}' "
                               "AND NOT accepted"),
            "card_entries": one(f"SELECT count(*) FROM entries WHERE card = '{CARD}'"),
            "card_corrections": one(f"SELECT count(*) FROM entries WHERE card = '{CARD}' "
                                    "AND kind = 'correction'"),
            "card_balance": one(f"SELECT balance FROM cards WHERE card = '{CARD}'"),
            "taps": one("SELECT count(*) FROM taps"),
            "entries": one("SELECT count(*) FROM entries"),
            "postings": one("SELECT count(*) FROM postings"),
            "stops": one("SELECT count(*) FROM stops")}


# -- measuring -----------------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def captured(engine: Any, fn: Callable[[], Any]) -> list[tuple[str, Any]]:
    """The statements (and their parameters) `fn` sends to the database."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
             _many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    return seen


def database_time(engine: Any, statements: list[tuple[str, Any]], runs: int
                  ) -> dict[str, Any]:
    """The statements alone: executed and fetched through the driver; on PostgreSQL
    also their EXPLAIN ANALYZE execution time and the indexes the plans used."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if engine.dialect.name == "postgresql":  # as `Statements.of_card` reads
            raw.execute("SET max_parallel_workers_per_gather = 0")

        def run_all() -> int:
            rows = 0
            cur = raw.cursor()
            for sql, params in statements:
                cur.execute(sql, params)
                rows += len(cur.fetchall())
            cur.close()
            return rows

        out["rows"] = run_all()
        out["fetch_ms"] = timed(run_all, runs)
        if engine.dialect.name == "postgresql":
            executions, indexes = [], set()
            for _ in range(runs):
                total = 0.0
                for sql, params in statements:
                    cur = raw.cursor()
                    cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                    plan = cur.fetchone()[0][0]
                    cur.close()
                    total += plan["Execution Time"]
                    indexes |= set(_indexes(plan["Plan"]))
                executions.append(total)
            out["explain_ms"] = executions
            out["indexes"] = sorted(indexes)
        raw.rollback()
    return out


def _indexes(plan: dict[str, Any]) -> list[str]:
    found = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", []):
        found += _indexes(child)
    return found


def measure(url: str, runs: int, first: date, today: date) -> dict[str, Any]:
    """Statements as the rider's endpoint asks for them (`Statements.of_card`)."""
    engine = make_engine(url)
    statements = Statements(session_factory(engine), POLICY)
    figures: dict[str, Any] = {}
    for name, window in (("default", (None, None)), ("whole", (first, today))):
        def call(window: tuple[date | None, date | None] = window) -> Statement:
            return statements.of_card(CARD, window[0], window[1], "id")

        answer = call()
        ms = timed(call, runs)
        body = answer.as_json()
        encode = timed(lambda answer=answer: json.dumps(answer.as_json()), max(20, runs // 5))
        sent = captured(engine, call)
        db = database_time(engine, sent, runs)
        kinds: dict[str, int] = {}
        for item in answer.items:
            kinds[item.type] = kinds.get(item.type, 0) + 1
        figures[name] = {
            "from": answer.window.first.isoformat(), "to": answer.window.last.isoformat(),
            "items": len(answer.items), "kinds": kinds,
            "with_stop": sum(1 for i in answer.items if i.stop_name),
            "closing_balance": answer.closing_balance,
            "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2),
            "json_p50_ms": round(percentile(encode, 50), 2),
            "json_bytes": len(json.dumps(body)),
            "statements": len(sent),
            "db_rows": db["rows"],
            "db_fetch_p50_ms": round(percentile(db["fetch_ms"], 50), 2),
            "db_fetch_p95_ms": round(percentile(db["fetch_ms"], 95), 2)}
        if "explain_ms" in db:
            figures[name].update(
                db_execution_p50_ms=round(percentile(db["explain_ms"], 50), 2),
                db_execution_p95_ms=round(percentile(db["explain_ms"], 95), 2),
                indexes=db["indexes"])
    engine.dispose()
    return figures


def report(label: str, facts: dict[str, Any], figures: dict[str, Any]) -> None:
    print(f"\n{label}: card {CARD}, {facts['first']} to {facts['today']}: "
          f"{facts['card_taps']:,} taps ({facts['card_denied']} denied), "
          f"{facts['card_entries']:,} entries ({facts['card_corrections']} corrections, "
          f"{facts['topups']} top-ups), balance {facts['card_balance']:,}")
    print(f"  in all: {facts['taps']:,} taps, {facts['entries']:,} entries, "
          f"{facts['postings']:,} postings, {facts['stops']:,} stops"
          + ("" if facts["load_s"] != facts["load_s"] else  # nan: a kept database
             f"; the history posted through the tap path in {facts['load_s']:.0f} s"))
    for name, f in figures.items():
        print(f"  {name} window {f['from']}..{f['to']}: {f['items']:,} lines "
              f"({', '.join(f'{v} {k}' for k, v in sorted(f['kinds'].items()))}; "
              f"{f['with_stop']:,} with a stop)")
        print(f"    card_statement: p50 {f['p50_ms']:.1f} ms, p95 {f['p95_ms']:.1f} ms "
              f"(goal < 100 ms); its JSON ({f['json_bytes']:,} bytes) "
              f"{f['json_p50_ms']:.1f} ms more")
        line = (f"    the database alone, its {f['statements']} statements "
                f"({f['db_rows']:,} rows): fetched through the driver p50 "
                f"{f['db_fetch_p50_ms']:.1f} ms, p95 {f['db_fetch_p95_ms']:.1f} ms")
        if "db_execution_p50_ms" in f:
            line += (f"; EXPLAIN ANALYZE execution p50 {f['db_execution_p50_ms']:.1f} ms, "
                     f"p95 {f['db_execution_p95_ms']:.1f} ms")
        print(line)
        if f.get("indexes"):
            print(f"    indexes used: {', '.join(f['indexes'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--others", type=int, default=2000, help="other cards riding meanwhile")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--sqlite", action="store_true", help="also on an SQLite file")
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    ap.add_argument("--reuse", metavar="URL", action="append", default=[],
                    help="measure a database kept by an earlier run (--keep) instead of "
                         "building one; may be given for each database")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    workdir: Path | None = None
    urls = {"postgresql" if u.startswith("postgres") else "sqlite": u for u in args.reuse}
    if not urls:
        urls["postgresql"] = create_pg_database()
        if args.sqlite:
            workdir = Path(tempfile.mkdtemp(prefix="transit-statement-bench-"))
            urls["sqlite"] = f"sqlite:///{workdir}/statement.db"
    try:
        for label, url in urls.items():
            facts = known(url) if args.reuse else build(url, args.days, args.others)
            figures = measure(url, args.runs, date.fromisoformat(facts["first"]),
                              date.fromisoformat(facts["today"]))
            report(label, facts, figures)
            results[label] = {**facts, **figures}
        write_figures(args.json, "statement", {"runs": args.runs, **results})
    finally:
        if args.keep or args.reuse:
            print(f"kept {', '.join(urls.values())}")
        else:
            drop_pg_database(urls["postgresql"])
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
