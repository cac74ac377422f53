"""The GTFS-Realtime 2.0 feeds (gtfs-realtime-bindings): VehiclePositions and Alerts.

Pure builders over plain records. What a feed may name of the static network (routes,
trips, stops) is handed in, so that a device configured with a route the imported feed
does not have never puts an id in the public feed that its consumers cannot resolve
(the MobilityData validator's E003, E004, E011 and E035).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from google.transit import gtfs_realtime_pb2

from tracking.occupancy import Occupancy
from tracking.store import VehicleRecord

VERSION = "2.0"
# How far ahead of the gateway's clock a position may be and still be shown (the window
# positions are accepted in, transit.window): a bus whose clock runs a little fast stays
# on the feed, dated no later than the header.
MAX_AHEAD_MS = 5 * 60_000


@dataclass(frozen=True)
class StaticIds:
    """The ids of the imported static feed a realtime feed may name."""

    routes: frozenset[str] = frozenset()
    # (a trip id as a vehicle carries it, the vehicle's route) -> the trip's id in the
    # static feed: a trip of another route is no trip of this vehicle's (E035).
    trips: Mapping[tuple[str, str], str] = field(default_factory=dict)
    stops: frozenset[str] = frozenset()
    # (a trip's static id, its route) -> its direction_id, where every trip of that id
    # and route has the same one (a consumer resolves a reused id to any of them: E024).
    directions: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class TripStart:
    """Which run of a trip from frequencies.txt a vehicle is on: its departure from the
    first stop (seconds of the service day; None when it cannot be told) and whether the
    frequency keeps exact times (`exact_times=1`)."""

    start_s: int | None
    exact_times: bool


def gtfs_time(seconds: int) -> str:
    """Seconds of a service day as GTFS writes them, HH:MM:SS (past 24:00:00 for a run
    after midnight)."""
    hours, rest = divmod(max(0, seconds), 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def describe_run(trip: gtfs_realtime_pb2.TripDescriptor, start: TripStart | None) -> None:
    """A trip descriptor's `schedule_relationship` and `start_time`: a run of a
    frequency trip is named by its start_time (the GTFS-Realtime specification), and one
    of `exact_times=0` is UNSCHEDULED (the validator's E013), one of `exact_times=1`
    SCHEDULED at a departure on its headway (E019)."""
    if start is None:
        trip.schedule_relationship = gtfs_realtime_pb2.TripDescriptor.SCHEDULED
        return
    trip.schedule_relationship = gtfs_realtime_pb2.TripDescriptor.SCHEDULED \
        if start.exact_times else gtfs_realtime_pb2.TripDescriptor.UNSCHEDULED
    if start.start_s is not None:
        trip.start_time = gtfs_time(start.start_s)


@dataclass(frozen=True)
class FeedAlert:
    """What the Alerts feed says of one alert: texts as (language, text) pairs,
    Indonesian first; informed entities as (field, id) pairs, the field one of
    `agency_id`, `route_id`, `stop_id`; times in epoch milliseconds."""

    alert_id: str
    header: tuple[tuple[str, str], ...]
    description: tuple[tuple[str, str], ...]
    cause: str
    effect: str
    start_ms: int | None
    end_ms: int | None
    informed: tuple[tuple[str, str], ...]


def _header(feed: gtfs_realtime_pb2.FeedMessage, now_ms: int) -> None:
    feed.header.gtfs_realtime_version = VERSION
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    feed.header.timestamp = now_ms // 1000


def vehicle_feed(records: list[VehicleRecord], now_ms: int | None = None,
                 max_age_s: float = 600.0, known: StaticIds | None = None,
                 occupancy: Callable[[str], Occupancy | None] | None = None,
                 starts: Callable[[VehicleRecord], TripStart | None] | None = None
                 ) -> gtfs_realtime_pb2.FeedMessage:
    """A FULL_DATASET feed of every vehicle heard from in the last `max_age_s` seconds.

    Entity ids are the vehicle ids (unique and stable). The header is dated now, and no
    entity later than it: a position from a clock running ahead is dated now. With
    `known`, a route, trip or stop the static feed does not have is left out, and so is
    a trip of another route than the vehicle's. With `occupancy`, each vehicle carries
    its `occupancy_status` and `occupancy_percentage` where it has an estimate. With
    `starts`, a vehicle on a trip run by frequency carries the run's `start_time` and
    its schedule_relationship (`describe_run`).
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    recent = [r for r in records
              if -MAX_AHEAD_MS <= now_ms - r.ts <= max_age_s * 1000]
    feed = gtfs_realtime_pb2.FeedMessage()
    _header(feed, now_ms)
    for r in sorted(recent, key=lambda r: r.vehicle_id):
        entity = feed.entity.add()
        entity.id = r.vehicle_id
        vp = entity.vehicle
        vp.vehicle.id = r.vehicle_id
        vp.vehicle.label = r.vehicle_id
        route_id, trip_id, stop_id = _named(r, known)
        if route_id:
            vp.trip.route_id = route_id
        if trip_id:
            vp.trip.trip_id = trip_id
            describe_run(vp.trip, None if starts is None else starts(r))
            if r.start_date:
                vp.trip.start_date = r.start_date
            direction = known.directions.get((trip_id, r.route_id)) if known else None
            if direction is not None:
                vp.trip.direction_id = direction
        vp.position.latitude = r.lat_e6 / 1e6
        vp.position.longitude = r.lon_e6 / 1e6
        if r.bearing_deg is not None:
            vp.position.bearing = float(r.bearing_deg % 360)
        if r.speed_cms is not None:
            vp.position.speed = max(0, r.speed_cms) / 100.0
        vp.timestamp = min(r.ts, now_ms) // 1000
        if stop_id:
            vp.stop_id = stop_id
            vp.current_status = gtfs_realtime_pb2.VehiclePosition.IN_TRANSIT_TO
        # How full it is, estimated from its taps (`tracking.occupancy`).
        full = None if occupancy is None else occupancy(r.vehicle_id)
        if full is not None:
            vp.occupancy_status = gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.Value(
                full.status)
            vp.occupancy_percentage = full.percentage
    return feed


def _named(r: VehicleRecord, known: StaticIds | None
           ) -> tuple[str | None, str | None, str | None]:
    """The vehicle's route, trip and next stop, as far as the static feed has them."""
    if known is None:
        # A reused feed id is stored as `ID@n`; the static feed knows it as `ID`.
        return r.route_id, r.trip_id.split("@", 1)[0] if r.trip_id else None, \
            r.next_stop_id
    route_id = r.route_id if r.route_id in known.routes else None
    trip_id = known.trips.get((r.trip_id, r.route_id)) if r.trip_id else None
    stop_id = r.next_stop_id if r.next_stop_id in known.stops else None
    return route_id, trip_id, stop_id


def alert_feed(alerts: Sequence[FeedAlert], now_ms: int | None = None
               ) -> gtfs_realtime_pb2.FeedMessage:
    """A FULL_DATASET feed of `alerts` (the caller's choice: those active now), in the
    order given; an alert informing no entity is left out (the validator's E032)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    feed = gtfs_realtime_pb2.FeedMessage()
    _header(feed, now_ms)
    for a in alerts:
        if not a.informed:
            continue
        entity = feed.entity.add()
        entity.id = a.alert_id
        alert = entity.alert
        if a.start_ms is not None or a.end_ms is not None:
            period = alert.active_period.add()
            if a.start_ms is not None:
                period.start = a.start_ms // 1000
            if a.end_ms is not None:
                # Rounded up: the alert is not over before the instant it was given.
                period.end = -(-a.end_ms // 1000)
        for kind, value in a.informed:
            setattr(alert.informed_entity.add(), kind, value)
        alert.cause = gtfs_realtime_pb2.Alert.Cause.Value(a.cause)
        alert.effect = gtfs_realtime_pb2.Alert.Effect.Value(a.effect)
        _translated(alert.header_text, a.header)
        _translated(alert.description_text, a.description)
    return feed


def _translated(target: gtfs_realtime_pb2.TranslatedString,
                texts: Sequence[tuple[str, str]]) -> None:
    for language, text in texts:
        translation = target.translation.add()
        translation.text = text
        translation.language = language
