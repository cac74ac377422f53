"""The demo network's timetable as its GTFS feed writes it, and the rosters its buses
drive it by."""

from __future__ import annotations

import csv
import io
import zipfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hardware_sim.surabaya import (
    CORRIDORS,
    DEPARTURES_S,
    HEADWAY_S,
    LAYOVER_S,
    TIMEZONE,
    roster,
    runs,
    write_feed,
)
from tracking.schedule import ServiceCalendar, StopRow, TripRow, build_schedule

NOW_MS = 1_764_660_000_000  # 2025-12-02 14:20 WIB


def seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    assert 0 <= m < 60 and 0 <= s < 60 and len(hms.split(":")[0]) >= 2
    return h * 3600 + m * 60 + s


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, str]]]:
    path = write_feed(tmp_path_factory.mktemp("feed") / "demo.zip")
    with zipfile.ZipFile(path) as z:
        return {name: list(csv.DictReader(io.StringIO(z.read(name).decode())))
                for name in z.namelist()}


def test_every_trip_has_times_that_increase_along_it(feed: dict[str, list[dict[str, str]]]
                                                     ) -> None:
    by_trip: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in feed["stop_times.txt"]:
        by_trip[row["trip_id"]].append(row)
    trips = {t["trip_id"]: t for t in feed["trips.txt"]}
    assert set(by_trip) == set(trips)
    assert len(trips) == len(CORRIDORS) * 2 * len(DEPARTURES_S)
    for trip_id, rows in by_trip.items():
        rows.sort(key=lambda r: int(r["stop_sequence"]))
        times = [t for r in rows for t in (seconds(r["arrival_time"]),
                                           seconds(r["departure_time"]))]
        assert all(a <= b for a, b in zip(times, times[1:], strict=False)), trip_id
        arrivals = [seconds(r["arrival_time"]) for r in rows]
        assert all(a < b for a, b in zip(arrivals, arrivals[1:], strict=False)), trip_id
        dist = [float(r["shape_dist_traveled"]) for r in rows]
        assert dist == sorted(dist) and dist[0] == 0
        # Its id says when it leaves, and it leaves on the day it belongs to.
        assert trip_id.endswith(f"{arrivals[0] // 3600:02d}{arrivals[0] % 3600 // 60:02d}")
        assert arrivals[0] < 24 * 3600 and trips[trip_id]["service_id"] == "daily"


def test_every_corridor_and_direction_leaves_every_ten_minutes_all_day(
        feed: dict[str, list[dict[str, str]]]) -> None:
    firsts: dict[str, list[int]] = defaultdict(list)
    trips = {t["trip_id"]: t for t in feed["trips.txt"]}
    for row in feed["stop_times.txt"]:
        if row["stop_sequence"] == "1":
            firsts[trips[row["trip_id"]]["shape_id"]].append(seconds(row["departure_time"]))
    assert set(firsts) == set(runs())
    for starts in firsts.values():
        assert sorted(starts) == list(range(0, 24 * 3600, HEADWAY_S))
    calendar = feed["calendar.txt"]
    assert [(c["service_id"], [c[d] for d in ("monday", "tuesday", "wednesday", "thursday",
                                              "friday", "saturday", "sunday")])
            for c in calendar] == [("daily", ["1"] * 7)]
    assert {a["agency_timezone"] for a in feed["agency.txt"]} == {TIMEZONE}


def test_the_schedule_reads_the_feed_as_timed_trips_on_six_patterns(
        feed: dict[str, list[dict[str, str]]]) -> None:
    stops = {s["stop_id"]: StopRow(s["stop_id"], s["stop_name"],
                                   round(float(s["stop_lat"]) * 1e6),
                                   round(float(s["stop_lon"]) * 1e6))
             for s in feed["stops.txt"]}
    shapes: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for p in sorted(feed["shapes.txt"], key=lambda p: int(p["shape_pt_sequence"])):
        shapes[p["shape_id"]].append((round(float(p["shape_pt_lat"]) * 1e6),
                                      round(float(p["shape_pt_lon"]) * 1e6)))
    times: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
    for r in sorted(feed["stop_times.txt"], key=lambda r: int(r["stop_sequence"])):
        times[r["trip_id"]].append((int(r["stop_sequence"]), r["stop_id"],
                                    seconds(r["arrival_time"])))
    trips = [TripRow(t["trip_id"], t["route_id"], t["service_id"], int(t["direction_id"]),
                     t["trip_headsign"], t["shape_id"]) for t in feed["trips.txt"]]
    schedule = build_schedule(trips, stops, shapes, times, ServiceCalendar(
        {"daily": ("1111111", "20250101", "20301231")}))
    assert len(schedule.patterns) == 6
    assert all(t.timed for t in schedule.trips.values())
    for pattern in schedule.patterns.values():
        run = runs()[f"{pattern.route_id}-{pattern.direction_id}"]
        # The stops lie where the plans' GPS has them, to within a few metres.
        assert [s.dist_m for s in pattern.stops] == pytest.approx(run.stops_m, abs=15)


def test_a_roster_goes_back_and_forth_leaving_after_each_layover() -> None:
    zone = ZoneInfo(TIMEZONE)
    legs = roster("R1", 0, NOW_MS, NOW_MS + 30 * 3600 * 1000)  # past midnight too
    assert len(legs) > 20
    every = runs()
    for (trip, shape, start), (_trip2, shape2, start2) in zip(legs, legs[1:], strict=False):
        assert shape != shape2  # back and forth
        assert start2 >= start + (every[shape].duration_s + LAYOVER_S) * 1000
        local = datetime.fromtimestamp(start / 1000, zone)
        assert trip == f"{shape}-{local.hour:02d}{local.minute:02d}"
        assert local.minute % 10 == 0 and local.second == 0  # a departure of the timetable
    # It begins with the trip it is on, or the next, at the start.
    assert legs[0][2] <= NOW_MS + 2 * 3600 * 1000
    assert legs[0][2] + every[legs[0][1]].duration_s * 1000 >= NOW_MS


def test_the_buses_of_a_corridor_follow_each_other_a_headway_apart() -> None:
    first = roster("R2", 0, NOW_MS, NOW_MS + 6 * 3600 * 1000)
    second = roster("R2", 1, NOW_MS, NOW_MS + 6 * 3600 * 1000)
    pairs = {(shape, start) for _t, shape, start in first}
    assert all((shape, start - HEADWAY_S * 1000) in pairs
               for _t, shape, start in second[1:-1])


def test_the_feed_is_written_where_asked(tmp_path: Path) -> None:
    path = write_feed(tmp_path / "deep" / "feed.zip")
    with zipfile.ZipFile(path) as z:
        assert {"agency.txt", "calendar.txt", "stop_times.txt", "shapes.txt"} <= set(
            z.namelist())
