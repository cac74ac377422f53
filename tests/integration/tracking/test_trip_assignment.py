"""Trip assignment from outside, on the real Transjakarta feed: buses driven along the
lines of its trips over MQTT into a running gateway (SQLite, Redis, Mosquitto) are
given those trips in `/api/v1/vehicles` and the VehiclePositions feed, keep them over
successive positions, get the other direction's trip driven the other way, and have
their validator's trip believed only where it fits. One route of the feed is given a
timetable of two trips of one pattern (`tests.support.feeds.timed_copy`), to show that
the trip nearest in time is chosen between them."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.transit import gtfs_realtime_pb2 as rt
from sqlalchemy import create_engine, text

from testbed.broker import Broker
from testbed.environment import transjakarta_feed
from tests.conftest import System
from tests.integration.tracking.test_positions import (
    along,
    distance_along,
    now_ms,
    sent,
    vehicles,
    wait_until,
)
from tests.support.feeds import timed_copy
from tests.support.gtfs_rt_rules import StaticFeed, check, errors, metres_to_shape, static_feed
from tests.support.realtime_feeds import fresh_positions
from tests.support.tj_gateway import publish as publish_items
from tests.support.tj_gateway import tj_gateway

ZONE = ZoneInfo("Asia/Jakarta")  # agency_timezone of the feed
TIMED_ROUTE, OUT, BACK = "6N", "6N.001", "6N.002"  # a route run both ways, 27 stops each
LATER = f"{OUT}-2"  # the second timed trip of OUT's pattern
SHARED_ROUTE, SHARED_TRIP = "10D", "a-b"  # an id many routes' trips carry (stored a-b@n)
STEP_M, STEP_MS = 100.0, 10_000
POINTS = 12  # 1.1 km a bus, in two halves of 6
STOP_S = 120  # the timetable: two minutes from stop to stop
FAR_START = 80  # the late-running bus starts 8 km along the line


def feed_rows(path: Path, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(path) as z:
        return list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8-sig"),
                                               newline="")))


def line_of(static: StaticFeed, path: Path, trip_id: str, route_id: str
            ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The line the trip of `route_id` carrying `trip_id` runs (of its shape id's lines,
    the one its stops lie along) and its stops, read from the feed itself."""
    nth = [t.route_id for t in static.trips[trip_id]].index(route_id)
    trip = static.trips[trip_id][nth]
    coords = {r["stop_id"]: (float(r["stop_lat"]), float(r["stop_lon"]))
              for r in feed_rows(path, "stops.txt")}
    stops = [coords[s] for _seq, s in static.stop_times[trip_id][nth]]

    def fit(line: list[tuple[float, float]]) -> float:
        offsets = sorted(metres_to_shape(lat, lon, line) for lat, lon in stops[::3])
        return offsets[len(offsets) // 2]

    return min(static.shapes[trip.shape_id or ""], key=fit), stops


def service_clock() -> tuple[str, int]:
    """The service date of a trip running now and the seconds of that day now (a
    trip before 02:00 is one of yesterday's, past 24:00:00)."""
    here = datetime.now(ZONE)
    day = here.date()
    seconds = here.hour * 3600 + here.minute * 60 + here.second
    if seconds < 2 * 3600:
        day -= timedelta(days=1)
        seconds += 86_400
    return day.strftime("%Y%m%d"), seconds


def untimed_date() -> str:
    """The service date of a trip without times running now: the local date, or the
    day before until 03:00 (the contract's default service_day_start)."""
    return (datetime.now(ZONE) - timedelta(hours=3)).strftime("%Y%m%d")


class Network:
    """The timed copy of the feed and what the tests drive along."""

    def __init__(self, folder: Path) -> None:
        real = transjakarta_feed()
        static = static_feed(real)
        self.out, out_stops = line_of(static, real, OUT, TIMED_ROUTE)
        self.back, _ = line_of(static, real, BACK, TIMED_ROUTE)
        self.shared, _ = line_of(static, real, SHARED_TRIP, SHARED_ROUTE)
        path = along(self.out, STEP_M)
        self.near = path[:POINTS]
        self.far = path[FAR_START:FAR_START + POINTS]

        def stops_passed(point: tuple[float, float]) -> int:
            at = distance_along(self.out, point)
            return sum(1 for s in out_stops if distance_along(self.out, s) <= at)

        self.near_k, self.far_k = stops_passed(self.near[-1]), stops_passed(self.far[-1])
        assert self.far_k - self.near_k >= 12, (self.near_k, self.far_k)
        self.start_date, now_s = service_clock()
        # OUT is where the far bus is now, LATER where the near bus is now: each bus is
        # half an hour or more from the other trip.
        departures = [now_s - self.far_k * STOP_S, now_s - self.near_k * STOP_S]
        self.path = timed_copy(real, folder / "timed.zip", OUT, departures, STOP_S)
        self.static = static_feed(self.path)


@pytest.fixture(scope="module")
def tj(broker: Broker, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[tuple[System, Network]]:
    """A gateway on the timed copy of the Transjakarta network (SQLite, as the GTFS-RT
    conformance tests: the same rows either way, imported in a third of the time)."""
    folder = tmp_path_factory.mktemp("assign")
    network = Network(folder)
    with tj_gateway(broker, folder, network.path) as system:
        yield system, network


def publish(system: System, runs: dict[str, tuple[list[tuple[float, float]], dict[str, Any]]],
            t0: int) -> dict[str, int]:
    """Each bus's positions along its points, STEP_MS apart from `t0`; their last ts."""
    items, last = [], {}
    for vehicle, (points, extra) in runs.items():
        for i, (lat, lon) in enumerate(points):
            items.append(sent(system, vehicle, lat, lon, t0 + i * STEP_MS, **extra))
        last[vehicle] = t0 + (len(points) - 1) * STEP_MS
    publish_items(system, items)
    return last


def arrived(system: System, token: str, last: dict[str, int]) -> dict[str, dict[str, Any]]:
    def probe() -> dict[str, dict[str, Any]] | None:
        seen = vehicles(system, token)
        return seen if all(seen.get(v, {}).get("ts") == ts for v, ts in last.items()) \
            else None
    got: dict[str, dict[str, Any]] = wait_until("every bus's last position", probe)
    return got


def trips_in_feed(system: System) -> dict[str, rt.VehiclePosition]:
    return {e.id: e.vehicle for e in fresh_positions(system.http).entity}


def test_buses_are_given_the_trips_they_run_and_keep_them(
        tj: tuple[System, Network]) -> None:
    system, net = tj
    ops = system.token("ops")
    half = POINTS // 2
    route = {"route": TIMED_ROUTE}
    runs = {
        "TJ-NEAR": (net.near, route),        # where LATER is now
        "TJ-FAR": (net.far, route),          # where OUT is now
        "TJ-BACK": (along(net.back, STEP_M)[:POINTS], route),  # the other way
        "TJ-SHARED": (along(net.shared, STEP_M)[:POINTS], {"route": SHARED_ROUTE}),
        # Its validator names the trip it runs; or the trip of another route.
        "TJ-SAYS": (net.near, {**route, "trip_id": OUT}),
        "TJ-WRONG": (net.near, {**route, "trip_id": SHARED_TRIP}),
    }
    t0 = now_ms() - POINTS * STEP_MS - 2_000
    first = {v: (pts[:half], extra) for v, (pts, extra) in runs.items()}
    seen = arrived(system, ops, publish(system, first, t0))
    rest = {v: (pts[half:], extra) for v, (pts, extra) in runs.items()}
    later = arrived(system, ops, publish(system, rest, t0 + half * STEP_MS))

    expected = {"TJ-NEAR": (LATER, "matched"), "TJ-FAR": (OUT, "matched"),
                "TJ-BACK": (BACK, "matched"), "TJ-SHARED": (SHARED_TRIP, "matched"),
                "TJ-SAYS": (OUT, "device"), "TJ-WRONG": (LATER, "matched")}
    for got in (seen, later):  # after the first positions and after the rest
        assert {v: (got[v]["trip_id"], got[v]["trip_source"]) for v in expected
                } == expected, {v: got[v] for v in expected}
    near = later["TJ-NEAR"]
    assert near["start_date"] == net.start_date
    assert near["pattern_id"] == OUT  # the pattern is named by its first trip
    assert later["TJ-SHARED"]["pattern_id"].startswith(f"{SHARED_TRIP}@")  # as stored
    assert near["next_stop_id"] is not None

    feed = trips_in_feed(system)
    for vehicle, (trip_id, _source) in expected.items():
        trip = feed[vehicle].trip
        assert (trip.trip_id, trip.route_id, trip.schedule_relationship) == (
            trip_id, runs[vehicle][1]["route"], rt.TripDescriptor.SCHEDULED), vehicle
        timed = trip_id in (OUT, LATER)
        assert trip.start_date == (net.start_date if timed else untimed_date()), vehicle
    assert feed["TJ-NEAR"].trip.direction_id == 0 and feed["TJ-BACK"].trip.direction_id == 1
    message = fresh_positions(system.http)
    found = check(message, net.static, now_ms() / 1000)
    assert errors(found) == [], "\n".join(map(str, errors(found)))


def test_every_trip_is_stored_with_the_line_its_stops_lie_along(
        tj: tuple[System, Network]) -> None:
    """The feed shares shape ids among many routes' lines; each trip's line as
    imported (what the map draws and the patterns run along) passes its stops."""
    system, _net = tj
    engine = create_engine(system.env["TRANSIT_DATABASE_URL"])
    try:
        with engine.connect() as db:
            stops = {s: (lat / 1e6, lon / 1e6) for s, lat, lon in db.execute(
                text("SELECT stop_id, lat_e6, lon_e6 FROM stops"))}
            lines: dict[str, list[tuple[float, float]]] = {}
            for shape, lat, lon in db.execute(text(
                    "SELECT shape_id, lat_e6, lon_e6 FROM shape_points ORDER BY shape_id, seq")):
                lines.setdefault(shape, []).append((lat / 1e6, lon / 1e6))
            of_trip: dict[str, list[str]] = {}
            for trip, stop in db.execute(text(
                    "SELECT trip_id, stop_id FROM trip_stops ORDER BY trip_id, seq")):
                of_trip.setdefault(trip, []).append(stop)
            trips = list(db.execute(text("SELECT trip_id, shape_id FROM trips")))
    finally:
        engine.dispose()
    off: dict[str, float] = {}
    for trip, shape in trips:
        if shape is None or shape not in lines or len(of_trip.get(trip, ())) < 2:
            continue
        offsets = sorted(metres_to_shape(*stops[s], lines[shape]) for s in of_trip[trip])
        off[trip] = offsets[len(offsets) // 2]
    assert len(off) >= 530, len(off)
    far = {t: round(m) for t, m in off.items() if m > 150}
    assert far == {}, far
