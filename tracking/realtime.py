"""The GTFS-Realtime 2.0 VehiclePositions feed (gtfs-realtime-bindings)."""

from __future__ import annotations

import time

from google.transit import gtfs_realtime_pb2

from tracking.store import VehicleRecord


def vehicle_feed(records: list[VehicleRecord], now_ms: int | None = None,
                 max_age_s: float = 600.0) -> gtfs_realtime_pb2.FeedMessage:
    """A FULL_DATASET feed of every vehicle heard from in the last `max_age_s` seconds.

    Entity ids are the vehicle ids (unique and stable); no entity is newer than the
    header, whose timestamp is the newest position's (or now, with none).
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    recent = [r for r in records if 0 <= now_ms - r.ts <= max_age_s * 1000]
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    newest = max((r.ts for r in recent), default=now_ms)
    feed.header.timestamp = max(newest, now_ms) // 1000
    for r in sorted(recent, key=lambda r: r.vehicle_id):
        entity = feed.entity.add()
        entity.id = r.vehicle_id
        vp = entity.vehicle
        vp.vehicle.id = r.vehicle_id
        vp.vehicle.label = r.vehicle_id
        vp.trip.route_id = r.route_id
        if r.trip_id:
            vp.trip.trip_id = r.trip_id
        vp.position.latitude = r.lat_e6 / 1e6
        vp.position.longitude = r.lon_e6 / 1e6
        if r.bearing_deg is not None:
            vp.position.bearing = float(r.bearing_deg % 360)
        if r.speed_cms is not None:
            vp.position.speed = r.speed_cms / 100.0
        vp.timestamp = r.ts // 1000
        if r.next_stop_id:
            vp.stop_id = r.next_stop_id
            vp.current_status = gtfs_realtime_pb2.VehiclePosition.IN_TRANSIT_TO
    return feed
