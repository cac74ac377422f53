"""The durable track from outside (contract section 8): positions published over MQTT
into a running `transit gateway` come back from `/api/v1/vehicles/{id}/track`, in
order, after a restart of the gateway and of Redis; retention drops whole days
(PostgreSQL partitions) and `transit tracks prune` says what it dropped; gateways
racing to make or drop the same day both succeed; a track's query reads only the
partitions of its interval."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.dialects import postgresql

from testbed.broker import Broker
from testbed.gateway import Gateway, transit
from tests.conftest import System
from tests.integration.commands import clean_env, failed, ok
from tests.integration.tracking.test_positions import now_ms, wait_until
from tests.support.commands import transit_here
from tests.support.redis_server import PrivateRedis
from transit.wire import Position

DAY_MS = 86_400_000
VEHICLE = "SBY-0042"  # the `system` fixture's validator rides on it
START = (-7.2650, 112.7500)  # Surabaya, Jalan Basuki Rahmat
STEP_MS = 5_000


def drive(system: System, first_ts: int, n: int, start: int = 0
          ) -> list[tuple[int, int, int]]:
    """`n` positions of the system's vehicle, 100 m north every 5 s from `first_ts`:
    published, and returned as (ts, lat_e6, lon_e6)."""
    sent, items = [], []
    for i in range(start, start + n):
        ts, lat_e6, lon_e6 = first_ts + (i - start) * STEP_MS, round(
            (START[0] + i * 0.0009) * 1e6), round(START[1] * 1e6)
        sent.append((ts, lat_e6, lon_e6))
        items.append((f"{system.prefix}/dev/{system.device_id}/pos", Position(
            device_id=system.device_id, vehicle_id=VEHICLE, route_id="1", ts=ts,
            lat_e6=lat_e6, lon_e6=lon_e6).signed(system.secret).encode()))
    peer = system.peer()
    try:
        peer.publish_many(items, qos=1)
    finally:
        peer.close()
    return sent


def track(system: System, token: str, query: str = "", vehicle: str = VEHICLE
          ) -> list[tuple[int, int, int]]:
    status, body = system.http.get(f"/api/v1/vehicles/{vehicle}/track{query}", token=token)
    assert status == 200, body
    assert body["vehicle_id"] == vehicle and body["truncated"] is False, body
    return [(p["ts"], round(p["lat"] * 1e6), round(p["lon"] * 1e6))
            for p in body["positions"]]


def track_is(system: System, token: str, want: list[tuple[int, int, int]], query: str = ""
             ) -> Callable[[], Any]:
    def probe() -> Any:
        got = track(system, token, query)
        return got if got == want else None
    return probe


def track_counts(system: System) -> dict[str, float]:
    status, body = system.http.get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {s.labels["outcome"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "transit_track_positions" for s in f.samples
            if s.name == "transit_track_positions_total"}


def partitions(system: System) -> list[str]:
    engine = system.engine()
    try:
        with engine.connect() as conn:
            return sorted(conn.exec_driver_sql(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'vehicle_positions'::regclass").scalars())
    finally:
        engine.dispose()


def day_name(ts: int) -> str:
    return "vehicle_positions_" + time.strftime("%Y%m%d", time.gmtime(ts / 1000))


# The tests' gateways keep their live state in a Redis of their own: one test restarts it,
# and none leaves keys behind in the shared one.

@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.close()


@pytest.fixture
def own_redis(base_env: dict[str, str], broker: Broker, redis_server: PrivateRedis,
              tmp_path: Path) -> Iterator[System]:
    """The `system` fixture's gateway and validator, on a Redis of the test's own."""
    env = dict(base_env, TRANSIT_REDIS_URL=redis_server.url)
    transit_here("db", "upgrade", env=env)
    secret = transit_here("devices", "add", f"{VEHICLE}-A", "--vehicle", VEHICLE,
                          env=env).stdout.strip().splitlines()[-1]
    gateway = Gateway(env, tmp_path / "gateway.log").start()
    yield System(env, gateway, f"{VEHICLE}-A", bytes.fromhex(secret), broker)
    gateway.stop()
    log = (tmp_path / "gateway.log").read_text()
    print(log[-6000:])
    assert "Traceback (most recent call last)" not in log, log[-4000:]


def test_the_track_survives_a_restart_of_the_gateway_and_of_redis(
        own_redis: System, redis_server: PrivateRedis) -> None:
    system = own_redis
    ops = system.token("ops")
    first = now_ms() - 60 * STEP_MS
    sent = drive(system, first, 30)
    wait_until("the track of 30 positions", track_is(system, ops, sent))
    # oldest first, exactly as sent; a window's `to` is exclusive
    assert track(system, ops, f"?from={sent[10][0]}&to={sent[20][0]}") == sent[10:20]

    system.gateway.stop()
    system.gateway.start()
    assert track(system, ops) == sent

    redis_server.restart()  # comes back empty: the live state is gone ...
    status, body = system.http.get("/api/v1/vehicles", token=ops)
    assert status == 200 and body["vehicles"] == [], body
    assert track(system, ops) == sent  # ... and the track is not

    # the gateway goes on after Redis's restart (positions are dropped while it is away,
    # so publish until one gets through), and the track grows after what was kept
    more: list[tuple[int, int, int]] = []

    def one_more() -> Any:
        more.extend(drive(system, sent[-1][0] + (len(more) + 1) * STEP_MS, 1,
                          start=30 + len(more)))
        kept = track(system, ops)
        return kept if kept[:30] == sent and len(kept) > 30 else None

    kept = wait_until("a position after Redis's restart", one_more, timeout=30)
    assert kept == sorted(kept) and set(kept) <= set(sent + more), kept
    assert track_counts(system).get("dropped", 0) == 0


# -- retention ------------------------------------------------------------------------------------

def test_retention_drops_whole_days_and_the_command_says_which(own_redis: System) -> None:
    system = own_redis
    ops = system.token("ops")
    now = now_ms()
    days = {"3 days ago": now - 3 * DAY_MS, "2 days ago": now - 2 * DAY_MS, "now": now - 10_000}
    sent = {label: drive(system, ts, 3, start=i * 3)
            for i, (label, ts) in enumerate(days.items())}
    for label, positions in sent.items():
        window = f"?from={positions[0][0]}&to={positions[-1][0] + 1}"
        wait_until(f"the positions of {label}", track_is(system, ops, positions, window))
    names = {label: day_name(ts) for label, ts in days.items()}
    assert set(names.values()) <= set(partitions(system)), partitions(system)

    env = dict(system.env, TRANSIT_TRACK_DAYS="2")
    said = ok(transit("tracks", "prune", env=env)).stdout.strip()
    oldest = time.strftime("%Y-%m-%d", time.gmtime(days["3 days ago"] / 1000))
    assert re.fullmatch(rf"dropped 1 day of tracks before \S+: {oldest}", said), said
    left = partitions(system)
    assert names["3 days ago"] not in left, left
    assert {names["2 days ago"], names["now"]} <= set(left), left
    positions = sent["3 days ago"]
    assert track(system, ops, f"?from={positions[0][0]}&to={positions[-1][0] + 1}") == []
    for label in ("2 days ago", "now"):
        positions = sent[label]
        assert track(system, ops, f"?from={positions[0][0]}&to={positions[-1][0] + 1}"
                     ) == positions, label
    # a second run, or two at once, finds nothing more to drop
    assert ok(transit("tracks", "prune", env=env)).stdout.startswith("nothing to drop")

    # a gateway keeping 2 days writes no position of a day already dropped: counted
    # (with ingest processes the counts are kept in Redis, across the restart)
    before = track_counts(system)
    system.gateway.stop()
    system.gateway.env = env
    system.gateway.start()
    other = system.add_device("SBY-0077-A", "SBY-0077")
    peer = system.peer()
    try:
        for ts in (days["3 days ago"], now - 5_000):
            peer.publish(f"{system.prefix}/dev/SBY-0077-A/pos", Position(
                device_id="SBY-0077-A", vehicle_id="SBY-0077", route_id="1", ts=ts,
                lat_e6=round(START[0] * 1e6), lon_e6=round(START[1] * 1e6)).signed(
                    other).encode())
    finally:
        peer.close()
    def more(outcome: str) -> float:
        return track_counts(system).get(outcome, 0) - before.get(outcome, 0) \
            if system.env.get("TRANSIT_INGEST_PROCESSES", "0") != "0" \
            else track_counts(system).get(outcome, 0)

    wait_until("the two positions counted", lambda: more("expired") == 1 and more(
        "written") == 1)
    assert names["3 days ago"] not in partitions(system)
    assert [p[0] for p in track(system, ops, vehicle="SBY-0077")] == [now - 5_000]


def test_the_prune_command_fails_in_one_line(pg_url: str, tmp_path: Path) -> None:
    failed(transit("tracks", "prune", env=clean_env(TRANSIT_DATABASE_URL=pg_url),
                   check=False), "no schema", "transit db upgrade")
    failed(transit("tracks", "prune", env=clean_env(
        TRANSIT_DATABASE_URL="postgresql://postgres@127.0.0.1:1/transit"), check=False),
        "unreachable", "TRANSIT_DATABASE_URL")
    failed(transit("tracks", "prune", env=clean_env(
        TRANSIT_DATABASE_URL=pg_url, TRANSIT_TRACK_DAYS="0"), check=False), "--days")


# -- gateways at once, and what a query reads ------------------------------------------------------

def test_gateways_making_and_dropping_the_same_days_at_once_all_succeed(
        pg_url: str) -> None:
    from fare_gateway.schema import upgrade
    from ledger.adapters.db import make_engine, session_factory
    from tracking.adapters.track_sql import SqlTrack
    from tracking.track import day_of

    engines = [make_engine(pg_url) for _ in range(4)]
    upgrade(engines[0])
    tables = [SqlTrack(session_factory(e)) for e in engines]
    today = day_of(now_ms())
    days = list(range(today - 6, today + 1))
    failures: list[BaseException] = []

    def at_once(work: Callable[[SqlTrack], object]) -> list[object]:
        barrier = threading.Barrier(len(tables))
        results: list[object] = []

        def run(table: SqlTrack) -> None:
            try:
                barrier.wait(10)
                results.append(work(table))
            except BaseException as exc:  # reported below, with the others
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(t,)) for t in tables]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not failures, failures
        return results

    try:
        for day in days:
            at_once(lambda table, d=day: table.prepare([d]))
        engine = engines[0]
        with engine.connect() as conn:
            made = set(conn.exec_driver_sql(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'vehicle_positions'::regclass").scalars())
        assert made == {f"vehicle_positions_{time.strftime('%Y%m%d', time.gmtime(d * 86400))}"
                        for d in days}, made
        pruned = at_once(lambda table: table.prune(today - 2))
        dropped = sorted(d for p in pruned for d in p.days)  # type: ignore[attr-defined]
        # each day dropped once, or by several who met it at once: never a failure
        assert set(dropped) == set(days[:-3]), dropped
        with engine.connect() as conn:
            left = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = "
                "'vehicle_positions'::regclass").scalar()
        assert left == 3
    finally:
        for e in engines:
            e.dispose()


def test_a_track_query_reads_only_the_partitions_of_its_interval(pg_url: str) -> None:
    from fare_gateway.schema import upgrade
    from ledger.adapters.db import make_engine, session_factory
    from tracking.adapters.track_sql import TRACK, SqlTrack
    from tracking.store import VehicleRecord
    from tracking.track import day_of

    engine = make_engine(pg_url)
    try:
        upgrade(engine)
        table = SqlTrack(session_factory(engine))
        today = day_of(now_ms())
        noon = [(today - k) * DAY_MS + DAY_MS // 2 for k in range(4)]
        table.write([VehicleRecord(VEHICLE, f"{VEHICLE}-A", "1", None, ts + i, -7_265_000,
                                   112_750_000, None, None, None, None)
                     for ts in noon for i in range(50)])
        sql = str(TRACK.compile(dialect=postgresql.dialect()))
        with engine.connect() as conn:
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + sql, {
                "vehicle_id": VEHICLE, "start": noon[1] - 3_600_000,
                "end": noon[1] + 3_600_000, "limit": 100}).scalars())
        read = sorted(set(re.findall(r"vehicle_positions_\d{8}\b", plan)))
        assert read == [f"vehicle_positions_{time.strftime('%Y%m%d', time.gmtime(noon[1] / 1000))}"
                        ], plan
        assert "Index" in plan, plan
        assert len(table.read(VEHICLE, noon[1] - 3_600_000, noon[1] + 3_600_000, 100)) == 50
    finally:
        engine.dispose()
