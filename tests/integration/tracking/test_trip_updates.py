"""Arrival predictions from outside (contract section 8): a copy of the real Transjakarta
feed with a timetable on one trip imported into a running gateway, buses driven over
MQTT along real shapes; `/gtfs-rt/trip-updates` names the stops ahead of each in order
with arrival times that increase, shows a bus running behind its timetable late, and
passes the validator's TripUpdates rules against the static feed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from testbed.broker import Broker
from testbed.environment import transjakarta_feed
from tests.conftest import System
from tests.integration.tracking.test_positions import now_ms, sent, wait_until
from tests.support.feeds import timed_copy
from tests.support.gtfs_rt_rules import StaticFeed, check, errors, static_feed
from tests.support.riders import rider_system
from tests.support.tj_gateway import imported_schedule, publish, tj_gateway
from tracking.schedule import Pattern, Schedule
from tracking.schedule_load import read_schedule

TIMED_TRIP = "1.001"  # Blok M - Kota, an id one trip carries
UNTIMED_TRIP = "1.002"  # Kota - Blok M, a pattern only
LATE_S = 15 * 60  # the timed bus left its first stop this long after its timetable
STEP_S = 90  # the timetable's time from each stop to the next
STEP_M, STEP_MS = 100.0, 10_000  # 10 m/s, a bus on the busway
POINTS = 12


def late_start(now: datetime) -> tuple[date, int]:
    """The service day and the second of it at which a trip left LATE_S before `now`
    (local time): the day of that instant, so that the time never has to be clamped
    to 00:00:00 just after midnight, and the trip runs whatever the hour."""
    left = now - timedelta(seconds=LATE_S)
    zero = left.replace(hour=0, minute=0, second=0, microsecond=0)
    return left.date(), int((left - zero).total_seconds())


@pytest.fixture(scope="module")
def timed_start() -> tuple[date, int]:
    return late_start(datetime.now(ZoneInfo("Asia/Jakarta")))  # the agency_timezone


@pytest.fixture(scope="module")
def feed_path(tmp_path_factory: pytest.TempPathFactory, timed_start: tuple[date, int]
              ) -> Path:
    """The real feed with a timetable on TIMED_TRIP: it left its first stop LATE_S ago."""
    folder = tmp_path_factory.mktemp("timed")
    _day, start = timed_start
    return timed_copy(transjakarta_feed(), folder / "timed.zip", TIMED_TRIP, [start], STEP_S)


@pytest.fixture(scope="module")
def tj(broker: Broker, feed_path: Path, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[System]:
    """A gateway on the timed copy of the Transjakarta network."""
    with tj_gateway(broker, tmp_path_factory.mktemp("tu"), feed_path) as system:
        yield system


@pytest.fixture(scope="module")
def schedule(tj: System) -> Schedule:
    return imported_schedule(tj)


@pytest.fixture(scope="module")
def static(feed_path: Path) -> StaticFeed:
    return static_feed(feed_path)


def pattern_of(schedule: Schedule, trip_id: str) -> Pattern:
    return schedule.patterns[schedule.trips[trip_id].pattern_id]


def drive(tj: System, vehicle: str, pattern: Pattern, trip_id: str, from_m: float = 0.0
          ) -> tuple[float, int]:
    """A bus's positions along a kilometre of its pattern from `from_m`, the last 2 s
    ago; where it ends (m along the pattern) and the time of its last position."""
    end = now_ms() - 2_000
    items = []
    for i in range(POINTS):
        lat_e6, lon_e6 = pattern.shape.point_at(from_m + i * STEP_M)
        items.append(sent(tj, vehicle, lat_e6 / 1e6, lon_e6 / 1e6,
                          end - (POINTS - 1 - i) * STEP_MS, route=pattern.route_id,
                          trip_id=trip_id))
    publish(tj, items)
    return from_m + (POINTS - 1) * STEP_M, end


def trip_updates(tj: System) -> rt.FeedMessage:
    status, body = tj.http.get("/gtfs-rt/trip-updates")
    assert status == 200 and isinstance(body, bytes), (status, body)
    return rt.FeedMessage.FromString(body)


def update_of(tj: System, vehicle: str, last_ms: int) -> Any:
    """The vehicle's TripUpdate, once the feed has it from its position of `last_ms`
    (the feed's timestamps are whole seconds)."""
    def probe() -> Any:
        feed = trip_updates(tj)
        found = [e.trip_update for e in feed.entity if e.id == vehicle]
        return (feed, found[0]) if found and found[0].timestamp >= last_ms // 1000 \
            else None
    return wait_until(f"{vehicle}'s trip update", probe, timeout=30)


def test_a_bus_along_a_pattern_gets_the_stops_ahead_in_order_with_rising_times(
        tj: System, schedule: Schedule, static: StaticFeed) -> None:
    pattern = pattern_of(schedule, UNTIMED_TRIP)
    at_m, last_ms = drive(tj, "TJ-P1", pattern, UNTIMED_TRIP, from_m=300.0)
    feed, tu = update_of(tj, "TJ-P1", last_ms)
    assert (tu.trip.trip_id, tu.trip.route_id, tu.vehicle.id) == (UNTIMED_TRIP, "1", "TJ-P1")
    assert len(tu.trip.start_date) == 8
    ahead = [s for s in pattern.stops if s.dist_m > at_m]
    assert [u.stop_id for u in tu.stop_time_update] == [s.stop_id for s in ahead]
    assert [u.stop_sequence for u in tu.stop_time_update] == [s.seq for s in ahead]
    times = [u.arrival.time for u in tu.stop_time_update]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[0] >= feed.header.timestamp
    # the whole pattern (~13 km) within the hour; the next stop within minutes
    assert times[-1] - feed.header.timestamp < 3600
    assert times[0] - feed.header.timestamp < 600
    assert not any(u.arrival.HasField("delay") for u in tu.stop_time_update)
    found = check(feed, static, time.time())
    assert errors(found) == [], "\n".join(map(str, errors(found)))

    status, as_json = tj.http.get("/gtfs-rt/trip-updates?format=json")
    assert status == 200 and any(e["id"] == "TJ-P1" for e in as_json["entity"])
    status, bad = tj.http.get("/gtfs-rt/trip-updates?format=xml")
    assert status == 400 and bad["error"]["code"], bad


def test_the_late_trip_starts_on_its_own_day_at_any_hour() -> None:
    zone = ZoneInfo("Asia/Jakarta")
    assert late_start(datetime(2026, 12, 2, 8, 0, tzinfo=zone)) == (date(2026, 12, 2),
                                                                   7 * 3600 + 45 * 60)
    # Just after midnight it left on the day before, 15 minutes before now all the same.
    assert late_start(datetime(2026, 12, 2, 0, 5, tzinfo=zone)) == (date(2026, 12, 1),
                                                                   23 * 3600 + 50 * 60)
    assert late_start(datetime(2026, 12, 2, 0, 15, tzinfo=zone)) == (date(2026, 12, 2), 0)


def test_a_bus_behind_its_timetable_shows_a_positive_delay(
        tj: System, schedule: Schedule, static: StaticFeed,
        timed_start: tuple[date, int]) -> None:
    pattern = pattern_of(schedule, TIMED_TRIP)
    assert schedule.trips[TIMED_TRIP].timed
    _at_m, last_ms = drive(tj, "TJ-LATE", pattern, TIMED_TRIP)
    feed, tu = update_of(tj, "TJ-LATE", last_ms)
    assert tu.trip.trip_id == TIMED_TRIP
    # The trip of the day it left on, also when that was before midnight.
    assert tu.trip.start_date == timed_start[0].strftime("%Y%m%d")
    delays = [u.arrival.delay for u in tu.stop_time_update]
    assert delays and all(u.arrival.HasField("delay") for u in tu.stop_time_update)
    # It left LATE_S behind and drives 1.1 km in 110 s: still ~13 minutes late, give or
    # take how fast the predictions say it goes on from there.
    assert delays[0] > 5 * 60, delays[:5]
    found = check(feed, static, time.time())
    assert errors(found) == [], "\n".join(map(str, errors(found)))


# -- learning, on PostgreSQL -------------------------------------------------------------

def test_the_learner_learns_a_closed_day_once_and_one_gateway_at_a_time(
        pg_url: str, tmp_path: Path, broker: Broker) -> None:
    from sqlalchemy import text

    from ledger.adapters.db import make_engine, session_factory
    from testbed.gateway import transit
    from tests.integration.commands import clean_env, failed, ok
    from tests.support.feeds import SMALL, write_feed
    from tracking.adapters.track_sql import SqlTrack
    from tracking.learn import ADVISORY_KEY, KEEP_DAYS, learn_day
    from tracking.store import VehicleRecord
    from tracking.track import day_of

    env = clean_env(TRANSIT_DATABASE_URL=pg_url)
    ok(transit("db", "upgrade", env=env))
    failed(transit("predictions", "learn", env=env, check=False), "gtfs import")
    ok(transit("gtfs", "import", str(write_feed(tmp_path / "small.zip", SMALL)), env=env))
    engine = make_engine(pg_url)
    sessions = session_factory(engine)
    try:
        with sessions() as session:
            schedule = read_schedule(session)
        (trip,) = [t for t in schedule.trips.values() if t.route_id == "R1"]
        pattern = schedule.patterns[trip.pattern_id]
        # The newest closed service day: a day's trips may run past midnight, so it
        # closes at 01:00 of the next (between 00:00 and 01:00, the day before).
        yesterday = (datetime.now(schedule.zone) - timedelta(hours=1)).date() \
            - timedelta(days=1)
        zero = schedule.day_start_ms(yesterday)
        records = []
        for n, hour in enumerate((7, 8, 17)):  # three buses along the whole pattern
            t0 = zero + hour * 3_600_000
            for k in range(int(pattern.length_m // 50) + 2):
                lat, lon = pattern.shape.point_at(k * 50.0)
                records.append(VehicleRecord(f"B{n}", f"D{n}", "R1", trip.trip_id,
                                             t0 + k * 5_000, lat, lon, 1000, 0, None, None))
        track = SqlTrack(sessions)
        track.prepare({day_of(r.ts) for r in records})
        track.write(records)

        said = ok(transit("predictions", "learn", "--days", "2", env=env)).stdout
        line = next(li for li in said.splitlines() if li.startswith(yesterday.isoformat()))
        assert f"{3 * len(pattern.stops)} stop passages" in line, said
        assert f"{3 * (len(pattern.stops) - 1)} segment times" in line, said
        again = ok(transit("predictions", "learn", "--days", "2", env=env)).stdout
        assert again.startswith("nothing to learn"), again
        with sessions() as session:
            rows = session.execute(text(
                "SELECT from_index, hour, n, sum_ms FROM segment_days WHERE day = :d "
                "ORDER BY from_index, hour"), {"d": yesterday.isoformat()}).all()
        assert [(r[0], r[1], r[2]) for r in rows] == [
            (i, h, 1) for i in range(len(pattern.stops) - 1) for h in (7, 8, 17)]
        for index, _hour, _n, sum_ms in rows:  # 10 m/s along the shape
            metres = pattern.stops[index + 1].dist_m - pattern.stops[index].dist_m
            assert abs(sum_ms / 1000 - metres / 10) < 10, (index, sum_ms, metres)

        # While another gateway learns (it holds the lock), this one does not.
        with engine.connect() as other:
            with other.begin():
                assert other.execute(text("SELECT pg_try_advisory_xact_lock(:k)"),
                                     {"k": ADVISORY_KEY}).scalar()
                assert learn_day(sessions, schedule, yesterday) is None
                busy = ok(transit("predictions", "learn", env=env)).stdout
                assert busy.startswith("another process is learning"), busy
        assert learn_day(sessions, schedule, yesterday) is not None

        # A gateway learns in a child process at start; rows older than those kept go.
        old = (yesterday - timedelta(days=KEEP_DAYS + 1)).isoformat()
        with sessions.begin() as session:
            session.execute(text("DELETE FROM learned_days"))
            session.execute(text(
                "INSERT INTO segment_days VALUES ('p', 0, 8, :d, 1, 1000, 1)"), {"d": old})
            session.execute(text("INSERT INTO learned_days VALUES (:d, 0, 0)"), {"d": old})

        def learned() -> list[str] | None:
            with sessions() as session:
                days = list(session.scalars(text("SELECT day FROM learned_days")))
            return days if days == [yesterday.isoformat()] else None

        with rider_system(pg_url, broker, tmp_path):
            wait_until("the gateway's learner", learned, timeout=60)
            wait_until("its line in the log", lambda: f"learner: {yesterday}" in (
                tmp_path / "gateway.log").read_text(), timeout=10)
        with sessions() as session:
            assert session.execute(text("SELECT count(*) FROM segment_days WHERE day = :d"),
                                   {"d": old}).scalar() == 0
    finally:
        engine.dispose()
    failed(transit("predictions", "learn", env=clean_env(
        TRANSIT_DATABASE_URL="postgresql://postgres@127.0.0.1:1/transit"), check=False),
        "TRANSIT_DATABASE_URL")
    failed(transit("predictions", "learn", "--days", "0", env=env, check=False), "--days")
