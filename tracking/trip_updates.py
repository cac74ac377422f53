"""The GTFS-Realtime TripUpdates feed: for each live vehicle running a trip of the
schedule, when it will reach every stop still ahead, and its delay where the schedule
has times.

Pure: the vehicles, the schedule and the travel times are handed in. What a consumer
checks of it (the MobilityData validator's TripUpdates rules) shapes it: the feed's own
trip ids (not a reused id's stored `ID@n`), stops in `stop_sequence` order with arrival
times strictly increasing in whole seconds, every stop one of the trip's, no timestamp
after the header's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date, datetime

from google.transit import gtfs_realtime_pb2

from tracking.predict import (
    TravelTimes,
    delays_s,
    parse_progress,
    predict_arrivals,
    recent_pace,
    scheduled_ms,
)
from tracking.realtime import MAX_AHEAD_MS, VERSION
from tracking.schedule import Pattern, Schedule, ScheduledTrip
from tracking.store import VehicleRecord

LIVE_S = 90.0  # a vehicle not heard from for longer is stale: no predictions from it
OFF_SHAPE_M = 200.0  # a vehicle further from its trip's shape is not running it now


def _start_date(record: VehicleRecord, schedule: Schedule, now_ms: int) -> date:
    """The service date of the vehicle's trip: as matched, else the local day now."""
    if record.start_date and len(record.start_date) == 8 and record.start_date.isdigit():
        try:
            return datetime.strptime(record.start_date, "%Y%m%d").date()
        except ValueError:
            pass
    return datetime.fromtimestamp(now_ms / 1000, schedule.zone).date()


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
        start = _start_date(r, schedule, now_ms)
        delays = delays_s(arrivals, scheduled_ms(schedule, trip, start))
        entity = feed.entity.add()
        entity.id = r.vehicle_id
        tu = entity.trip_update
        tu.trip.trip_id = trip.feed_trip_id
        tu.trip.route_id = trip.route_id
        tu.trip.start_date = start.strftime("%Y%m%d")
        if trip.direction_id is not None:
            tu.trip.direction_id = trip.direction_id
        tu.trip.schedule_relationship = gtfs_realtime_pb2.TripDescriptor.SCHEDULED
        tu.vehicle.id = r.vehicle_id
        tu.vehicle.label = r.vehicle_id
        tu.timestamp = min(r.ts, now_ms) // 1000
        for (index, ms), delay in zip(arrivals, delays, strict=True):
            stop = pattern.stops[index]
            update = tu.stop_time_update.add()
            update.stop_sequence = trip.stop_sequence(pattern, index)
            update.stop_id = stop.stop_id
            update.arrival.time = ms // 1000
            if delay is not None:
                update.arrival.delay = delay
            update.schedule_relationship = \
                gtfs_realtime_pb2.TripUpdate.StopTimeUpdate.SCHEDULED
    return feed
