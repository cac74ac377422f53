"""The TripUpdates feed built from vehicles on trips: the feed's trip id, stops ahead in
order with increasing times, delays on a timed trip, only live vehicles, the run of a
frequency trip named by its start_time; and it passes the validator's rules against the
static feed it was built from."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from google.transit import gtfs_realtime_pb2 as rt

from tests.support.gtfs_rt_rules import StaticFeed, Trip, check
from tests.unit.tracking.test_learn import LAT, STOP_M, lon_at
from tracking.predict import ConstantSpeed
from tracking.realtime import TripStart
from tracking.schedule import Frequency, StopRow, TripRow, build_schedule
from tracking.store import VehicleRecord
from tracking.trip_updates import frequency_start, trip_start, trip_update_feed

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

# Two trips run by frequencies.txt along the same stops: F0 every 10 minutes as it comes
# (exact_times=0) from 06:00 to 25:00, F1 at 06:00, 06:15 ... 08:45 (exact_times=1); each
# takes a minute from stop to stop.
F0_WINDOWS = (Frequency(6 * 3600, 25 * 3600, 600, exact_times=False),)
F1_WINDOWS = (Frequency(6 * 3600, 9 * 3600, 900, exact_times=True),)
FREQUENT = build_schedule(
    [TripRow("F0", "R1", "daily", 0, "Timur", "east"),
     TripRow("F1", "R1", "daily", 0, "Timur", "east")], STOPS, SHAPES,
    {t: [(i + 1, f"S{i}", 6 * 3600 + i * 60) for i in range(4)] for t in ("F0", "F1")},
    frequencies={"F0": F0_WINDOWS, "F1": F1_WINDOWS})
FREQUENT_STATIC = StaticFeed(
    agency_ids=frozenset({"SBY"}), route_ids=frozenset({"R1"}),
    trips={t: (Trip("R1", 0, "east"),) for t in ("F0", "F1")},
    stops={s: 0 for s in STOPS},
    shapes={"east": ([(lat / 1e6, lon / 1e6) for lat, lon in SHAPES["east"]],)},
    stop_times={t: (tuple((i + 1, f"S{i}") for i in range(4)),) for t in ("F0", "F1")},
    frequencies={"F0": ((6 * 3600, 25 * 3600, 600, False),),
                 "F1": ((6 * 3600, 9 * 3600, 900, True),)})
ZERO = FREQUENT.day_start_ms(DAY)


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
    # 400 m at 5 m/s: it leaves S2 in 80 s, and is there a dwell (15 s) before.
    first, last = tu.stop_time_update
    assert abs(first.departure.time - now // 1000 - 400 / 5.0) <= 1.5
    assert first.departure.time - first.arrival.time == 15
    # At the last stop the passage is the arrival, and nothing leaves from it.
    assert last.arrival.time > first.departure.time
    assert not last.HasField("departure")
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


def on(trip: str, dist_m: float, ts: int, start_date: str | None = "20261201"
       ) -> VehicleRecord:
    return bus(f"B-{trip}", trip, dist_m, ts, pattern_id="F0", start_date=start_date)


def test_the_nearest_departure_of_the_windows_is_found() -> None:
    windows = (Frequency(6 * 3600, 9 * 3600, 900), Frequency(9 * 3600, 10 * 3600, 1200))
    at = [frequency_start(windows, s) for s in (
        5 * 3600, 7 * 3600 + 7 * 60, 7 * 3600 + 8 * 60, 8 * 3600 + 55 * 60, 11 * 3600)]
    assert [start for _, start in at] == [  # type: ignore[misc]
        6 * 3600, 7 * 3600, 7 * 3600 + 900, 9 * 3600, 9 * 3600 + 2400]
    assert frequency_start((Frequency(0, 0, 600), Frequency(0, 60, 0)), 30) is None


def test_the_run_of_a_frequency_trip_is_the_departure_that_would_be_there_now() -> None:
    # at S1 (a minute into the trip) at 07:33: the 07:30 run of F1, 07:30 of F0
    ts = ZERO + (7 * 3600 + 33 * 60) * 1000
    assert trip_start(on("F1", 500, ts), FREQUENT) == TripStart(7 * 3600 + 1800, True)
    assert trip_start(on("F0", 500, ts), FREQUENT) == TripStart(7 * 3600 + 1800, False)
    # 8 minutes late for the 07:30 run is nearer the 07:45 one
    late = ZERO + (7 * 3600 + 39 * 60) * 1000
    assert trip_start(on("F1", 500, late), FREQUENT) == TripStart(7 * 3600 + 2700, True)
    assert trip_start(on("F1", 500, ts, start_date=None), FREQUENT) == TripStart(None, True)
    assert trip_start(bus("B", "T2", 500, ts), SCHEDULE) is None  # no frequencies


def test_a_frequency_trip_is_named_by_its_run_in_the_trip_updates() -> None:
    now = ZERO + (7 * 3600 + 33 * 60) * 1000
    feed = trip_update_feed([on("F0", 500, now - 2_000), on("F1", 520, now - 1_000)],
                            FREQUENT, SPEED, now)
    trips = {e.id: e.trip_update.trip for e in feed.entity}
    assert {v: (t.start_time, t.start_date, t.schedule_relationship)
            for v, t in trips.items()} == {
        "B-F0": ("07:30:00", "20261201", rt.TripDescriptor.UNSCHEDULED),
        "B-F1": ("07:30:00", "20261201", rt.TripDescriptor.SCHEDULED)}
    # no delay: a run's times are not the template's
    assert not any(u.arrival.HasField("delay") for e in feed.entity
                   for u in e.trip_update.stop_time_update)
    assert check(feed, FREQUENT_STATIC, now / 1000) == []
    # as it was sent before (SCHEDULED, no start_time), the rules fail it
    for e in feed.entity:
        e.trip_update.trip.ClearField("start_time")
        e.trip_update.trip.schedule_relationship = rt.TripDescriptor.SCHEDULED
    assert {f.code for f in check(feed, FREQUENT_STATIC, now / 1000)} == {"E013"}
    feed.entity[1].trip_update.trip.start_time = "07:35:00"
    assert "E019" in {f.code for f in check(feed, FREQUENT_STATIC, now / 1000)}


def test_a_run_after_midnight_keeps_its_service_day() -> None:
    # 00:33 on the 2nd, on the 1st's service: the 24:30:00 run
    now = ZERO + (24 * 3600 + 33 * 60) * 1000
    feed = trip_update_feed([on("F0", 500, now)], FREQUENT, SPEED, now)
    trip = feed.entity[0].trip_update.trip
    assert (trip.start_time, trip.start_date) == ("24:30:00", "20261201")
    assert check(feed, FREQUENT_STATIC, now / 1000) == []


def test_without_a_service_date_no_delay_is_guessed_and_no_run_is_named() -> None:
    # 5 minutes late on T2 (as in the delay test), its start date lost: arrivals, no
    # delay, no start_date; a frequency trip's run cannot be named, so it is left out
    now = AT_8 + 300_000
    lost = replace(bus("B2", "T2", 500, now - 1_000), start_date=None)
    feed = trip_update_feed([lost], SCHEDULE, SPEED, now)
    tu = feed.entity[0].trip_update
    assert [u.stop_id for u in tu.stop_time_update] == ["S2", "S3"]
    assert not tu.trip.HasField("start_date")
    assert not any(u.arrival.HasField("delay") for u in tu.stop_time_update)
    assert check(feed, STATIC, now / 1000) == []
    later = ZERO + (7 * 3600 + 33 * 60) * 1000
    assert len(trip_update_feed([on("F0", 500, later, start_date=None)], FREQUENT, SPEED,
                                later).entity) == 0
