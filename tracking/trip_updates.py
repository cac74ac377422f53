"""The GTFS-Realtime TripUpdates feed: for each live vehicle running a trip of the
schedule, when it will reach every stop still ahead, and its delay where the schedule
has times.

Pure: the vehicles, the schedule and the travel times are handed in. What a consumer
checks of it (the MobilityData validator's TripUpdates rules) shapes it: the feed's own
trip ids (not a reused id's stored `ID@n`), stops in `stop_sequence` order with arrival
times strictly increasing in whole seconds, every stop one of the trip's, no timestamp
after the header's. A run of a trip from frequencies.txt is named by its `start_time`
(`trip_start`), UNSCHEDULED for `exact_times=0`; a vehicle whose service date is not
known gives no delays (a trip past 24:00 would be a day off), and on a frequency trip no
entity at all (its run cannot be named).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from google.transit import gtfs_realtime_pb2

from tracking.predict import (
    TravelTimes,
    arrival_departure,
    delays_s,
    parse_progress,
    predict_arrivals,
    recent_pace,
    scheduled_ms,
)
from tracking.realtime import MAX_AHEAD_MS, VERSION, TripStart, describe_run
from tracking.schedule import Frequency, Pattern, Schedule, ScheduledTrip
from tracking.store import VehicleRecord

LIVE_S = 90.0  # a vehicle not heard from for longer is stale: no predictions from it
OFF_SHAPE_M = 200.0  # a vehicle further from its trip's shape is not running it now


def _start_date(record: VehicleRecord) -> date | None:
    """The service date of the vehicle's trip as matched; None when it has none (the
    local day now would put a trip past 24:00 a day off)."""
    if not (record.start_date and len(record.start_date) == 8
            and record.start_date.isdigit()):
        return None
    try:
        return datetime.strptime(record.start_date, "%Y%m%d").date()
    except ValueError:
        return None


def frequency_start(frequencies: Sequence[Frequency], target_s: float
                    ) -> tuple[Frequency, int] | None:
    """The departure of the frequency windows nearest to `target_s` (seconds of the
    service day), and its window: a window runs at `start_s + k * headway_s` before its
    `end_s` (as `tracking.matching` assigns a frequency trip)."""
    best: tuple[Frequency, int] | None = None
    for f in frequencies:
        if f.headway_s <= 0 or f.end_s <= f.start_s:
            continue
        last_k = max(0, math.ceil((f.end_s - f.start_s) / f.headway_s) - 1)
        k = min(last_k, max(0, round((target_s - f.start_s) / f.headway_s)))
        start = f.start_s + k * f.headway_s
        if best is None or abs(start - target_s) < abs(best[1] - target_s):
            best = (f, start)
    return best


def _template_s(trip: ScheduledTrip, pattern: Pattern, dist_m: float) -> int | None:
    """The trip's template time (s) at `dist_m`, interpolated between its stops."""
    times = trip.times
    if len(times) != len(pattern.stops) or not times or times[0] is None:
        return None
    i = bisect.bisect_right([s.dist_m for s in pattern.stops], dist_m)
    if i == 0:
        return times[0]
    if i >= len(times):
        return times[-1]
    t0, t1 = times[i - 1], times[i]
    if t0 is None or t1 is None:
        return t0 if t0 is not None else t1
    span = pattern.stops[i].dist_m - pattern.stops[i - 1].dist_m
    f = (dist_m - pattern.stops[i - 1].dist_m) / span if span > 0 else 0.0
    return int(round(t0 + f * (t1 - t0)))


def trip_start(record: VehicleRecord, schedule: Schedule) -> TripStart | None:
    """Which run of a frequency trip the vehicle is on (None: its trip is not one): the
    departure of its windows that would be where the vehicle is at its position's time,
    on its service date. The record keeps no departure, and this is the run the matcher
    chose it by."""
    trip = schedule.trips.get(record.trip_id or "")
    if trip is None or not trip.frequencies:
        return None
    exact = trip.frequencies[0].exact_times
    pattern = schedule.patterns.get(trip.pattern_id)
    day = _start_date(record)
    if pattern is None or day is None:
        return TripStart(None, exact)
    dist = _where(record, pattern)
    here = None if dist is None else _template_s(trip, pattern, dist)
    first = trip.times[0] if trip.times else None
    if here is None or first is None:
        return TripStart(None, exact)
    target = (record.ts - schedule.day_start_ms(day)) / 1000 - (here - first)
    found = frequency_start(trip.frequencies, target)
    if found is None:
        return TripStart(None, exact)
    window, start = found
    return TripStart(start, window.exact_times)


def _where(record: VehicleRecord, pattern: Pattern) -> float | None:
    """How far along the pattern the vehicle is: as matched, else located on the shape
    now (None when it is off the shape)."""
    if record.dist_m is not None and record.pattern_id == pattern.pattern_id:
        return float(record.dist_m)
    located = pattern.shape.locate(record.lat_e6, record.lon_e6)
    return located.dist_m if located.offset_m <= OFF_SHAPE_M else None


def assigned(records: Iterable[VehicleRecord], schedule: Schedule, now_ms: int,
             live_s: float = LIVE_S
             ) -> list[tuple[VehicleRecord, ScheduledTrip, Pattern, float]]:
    """The live vehicles on a trip of the schedule, with where they are on its pattern,
    in vehicle id order."""
    out = []
    for r in sorted(records, key=lambda r: r.vehicle_id):
        if not r.trip_id or not -MAX_AHEAD_MS <= now_ms - r.ts <= live_s * 1000:
            continue
        trip = schedule.trips.get(r.trip_id)
        if trip is None or trip.route_id != r.route_id:
            continue
        pattern = schedule.patterns.get(trip.pattern_id)
        if pattern is None:
            continue
        dist = _where(r, pattern)
        if dist is None:
            continue
        out.append((r, trip, pattern, dist))
    return out


def trip_update_feed(records: Iterable[VehicleRecord], schedule: Schedule,
                     times: TravelTimes, now_ms: int | None = None,
                     live_s: float = LIVE_S) -> gtfs_realtime_pb2.FeedMessage:
    """A FULL_DATASET TripUpdates feed: one entity per live vehicle on a trip of the
    schedule (its id the vehicle's), with a stop_time_update per stop ahead. A vehicle
    past its trip's last stop has nothing ahead and is left out."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = VERSION
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    feed.header.timestamp = now_ms // 1000
    for r, trip, pattern, dist in assigned(records, schedule, now_ms, live_s):
        pace = recent_pace(pattern, parse_progress(r.progress), times) \
            if r.pattern_id == pattern.pattern_id else 1.0
        arrivals = predict_arrivals(pattern, dist, now_ms, times, pace)
        if not arrivals:
            continue
        start = _start_date(r)
        run = trip_start(r, schedule)
        if run is not None and (start is None or run.start_s is None):
            continue  # a run of a frequency trip that cannot be named (E006)
        # A passage is learned as the bus leaves a stop: the rider sees it a dwell
        # earlier (arrival), and it leaves at the passage (departure). At the last stop
        # the passage is the arrival itself (learned as the bus gets in).
        stops = arrival_departure(arrivals, now_ms)
        last = len(pattern.stops) - 1
        stops = [(i, ms if i == last else arrive, None if i == last else leave)
                 for (i, arrive, leave), (_, ms) in zip(stops, arrivals, strict=True)]
        delays = [None] * len(stops) if start is None else delays_s(
            [(i, arrive) for i, arrive, _ in stops], scheduled_ms(schedule, trip, start))
        entity = feed.entity.add()
        entity.id = r.vehicle_id
        tu = entity.trip_update
        tu.trip.trip_id = trip.feed_trip_id
        tu.trip.route_id = trip.route_id
        if start is not None:
            tu.trip.start_date = start.strftime("%Y%m%d")
        if trip.direction_id is not None:
            tu.trip.direction_id = trip.direction_id
        describe_run(tu.trip, run)
        tu.vehicle.id = r.vehicle_id
        tu.vehicle.label = r.vehicle_id
        tu.timestamp = min(r.ts, now_ms) // 1000
        for (index, arrive, leave), delay in zip(stops, delays, strict=True):
            stop = pattern.stops[index]
            update = tu.stop_time_update.add()
            update.stop_sequence = trip.stop_sequence(pattern, index)
            update.stop_id = stop.stop_id
            update.arrival.time = arrive // 1000
            if delay is not None:
                update.arrival.delay = delay
            if leave is not None:
                update.departure.time = leave // 1000
            update.schedule_relationship = \
                gtfs_realtime_pb2.TripUpdate.StopTimeUpdate.SCHEDULED
    return feed
