"""The TripUpdates feed built from vehicles on trips: the feed's trip id, stops ahead in
order with increasing times, delays on a timed trip, only live vehicles; and it passes
the validator's rules against the static feed it was built from."""

from __future__ import annotations

from datetime import date

from google.transit import gtfs_realtime_pb2 as rt

from tests.support.gtfs_rt_rules import StaticFeed, Trip, check
from tests.unit.tracking.test_learn import LAT, STOP_M, lon_at
from tracking.predict import ConstantSpeed
from tracking.schedule import StopRow, TripRow, build_schedule
from tracking.store import VehicleRecord
from tracking.trip_updates import trip_update_feed

DAY = date(2026, 12, 1)
STOPS = {f"S{i}": StopRow(f"S{i}", f"Halte {i}", LAT, lon_at(m)) for i, m in enumerate(STOP_M)}
SHAPES = {"east": [(LAT, lon_at(0)), (LAT, lon_at(2000))]}
SCHEDULE = build_schedule(
    [TripRow("T1@2", "R1", "daily", 0, "Timur", "east"),
     TripRow("T2", "R1", "daily", 1, "Timur", "east")], STOPS, SHAPES,
    {"T1@2": [(10 * (i + 1), f"S{i}", None) for i in range(4)],
     "T2": [(10 * (i + 1), f"S{i}", 8 * 3600 + i * 60) for i in range(4)]})
STATIC = StaticFeed(
    agency_ids=frozenset({"SBY"}), route_ids=frozenset({"R1"}),
    trips={"T1": (Trip("R1", 0, None),), "T2": (Trip("R1", 1, None),)},
    stops={s: 0 for s in STOPS},
    stop_times={"T1": (tuple((10 * (i + 1), f"S{i}") for i in range(4)),),
                "T2": (tuple((10 * (i + 1), f"S{i}") for i in range(4)),)})
AT_8 = SCHEDULE.day_start_ms(DAY) + 8 * 3_600_000
SPEED = ConstantSpeed(default_mps=5.0)


def bus(vehicle: str, trip: str | None, dist_m: float, ts: int, **extra: object
        ) -> VehicleRecord:
    values: dict[str, object] = {
        "pattern_id": "T1@2", "dist_m": int(dist_m), "start_date": "20261201",
        "trip_source": "matched", "progress": "", **extra}
    return VehicleRecord(vehicle, f"D-{vehicle}", "R1", trip, ts, LAT, lon_at(dist_m),
                         500, 90, None, None, **values)  # type: ignore[arg-type]


def test_a_vehicle_on_a_trip_gets_its_stops_ahead_in_order() -> None:
    now = AT_8 + 5_000
    feed = trip_update_feed([bus("B1", "T1@2", 600, now - 3_000)], SCHEDULE, SPEED, now)
    (entity,) = feed.entity
    tu = entity.trip_update
    assert (entity.id, tu.trip.trip_id, tu.trip.route_id, tu.trip.start_date,
            tu.trip.direction_id, tu.vehicle.id) == ("B1", "T1", "R1", "20261201", 0, "B1")
    assert tu.timestamp == (now - 3_000) // 1000
    assert [(u.stop_sequence, u.stop_id) for u in tu.stop_time_update] == [
        (30, "S2"), (40, "S3")]
    times = [u.arrival.time for u in tu.stop_time_update]
    assert times[0] > now // 1000 and times[1] > times[0]
    assert abs(times[0] - now // 1000 - 400 / 5.0) <= 1.5
    assert not any(u.arrival.HasField("delay") for u in tu.stop_time_update)
    assert check(feed, STATIC, now / 1000) == []


def test_a_late_vehicle_on_a_timed_trip_shows_its_delay() -> None:
    # 5 minutes after the scheduled start it is only at the second stop's 500 m
    now = AT_8 + 300_000
    record = bus("B2", "T2", 500, now - 1_000)
    feed = trip_update_feed([record], SCHEDULE, SPEED, now)
    updates = feed.entity[0].trip_update.stop_time_update
    assert [u.stop_id for u in updates] == ["S2", "S3"]
    # S2 scheduled at 8:02, reached ~100 s after 8:05
    assert updates[0].arrival.delay > 200
    assert all(u.arrival.delay > 0 for u in updates)
    assert check(feed, STATIC, now / 1000) == []


def test_only_live_vehicles_on_trips_of_the_schedule_are_in_it() -> None:
    now = AT_8
    records = [bus("LIVE", "T1@2", 100, now - 10_000),
               bus("STALE", "T1@2", 100, now - 120_000),
               bus("NOTRIP", None, 100, now),
               bus("ODD", "T9", 100, now),
               bus("PAST", "T1@2", 1900, now),  # nothing ahead
               # not matched, and 1 km off the shape
               VehicleRecord("FAR", "D", "R1", "T1@2", now, LAT + 9_000, lon_at(100), None,
                             None, None, None)]
    feed = trip_update_feed(records, SCHEDULE, SPEED, now)
    assert [e.id for e in feed.entity] == ["LIVE"]
    assert feed.header.incrementality == rt.FeedHeader.FULL_DATASET


def test_a_vehicle_without_a_matched_place_is_located_on_its_shape() -> None:
    now = AT_8
    record = VehicleRecord("B3", "D", "R1", "T1@2", now, LAT, lon_at(1200), None, None,
                           None, None)
    feed = trip_update_feed([record], SCHEDULE, SPEED, now)
    assert [u.stop_id for u in feed.entity[0].trip_update.stop_time_update] == ["S3"]


def test_each_trip_carries_its_own_stop_sequence_numbers() -> None:
    # T2 numbers the same stops 1..4: one pattern with T1@2 (10..40), its own numbers
    schedule = build_schedule(
        [TripRow("T1@2", "R1", "daily", 0, "Timur", "east"),
         TripRow("T2", "R1", "daily", 1, "Timur", "east")], STOPS, SHAPES,
        {"T1@2": [(10 * (i + 1), f"S{i}", None) for i in range(4)],
         "T2": [(i + 1, f"S{i}", 8 * 3600 + i * 60) for i in range(4)]})
    assert list(schedule.patterns) == ["T1@2"]
    static = StaticFeed(
        agency_ids=STATIC.agency_ids, route_ids=STATIC.route_ids, trips=STATIC.trips,
        stops=STATIC.stops,
        stop_times={"T1": STATIC.stop_times["T1"],
                    "T2": (tuple((i + 1, f"S{i}") for i in range(4)),)})
    now = AT_8 + 60_000
    feed = trip_update_feed([bus("B1", "T2", 600, now), bus("B2", "T1@2", 600, now)],
                            schedule, SPEED, now)
    seqs = {e.id: [u.stop_sequence for u in e.trip_update.stop_time_update]
            for e in feed.entity}
    assert seqs == {"B1": [3, 4], "B2": [30, 40]}
    assert check(feed, static, now / 1000) == []
