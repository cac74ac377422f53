"""Tracking endpoints of contract section 3: vehicles, their stream, validators, the
GTFS-Realtime feed, the network for the map, and the map page itself."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request, send_from_directory
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import Device, TapRecord
from tracking.adapters.models import Route, ShapePoint, Stop, Trip
from tracking.domain import state
from tracking.realtime import vehicle_feed
from tracking.store import TrackingStore, VehicleRecord

STATIC = Path(__file__).with_name("static")
NPM_LEAFLET = Path(__file__).with_name("web") / "node_modules" / "leaflet" / "dist"


def leaflet_dir() -> Path | None:
    """Leaflet from npm (tracking/web), else from the XStatic-Leaflet package."""
    if (NPM_LEAFLET / "leaflet.js").exists():
        return NPM_LEAFLET
    try:
        import xstatic.pkg.leaflet as xs

        return Path(xs.BASE_DIR)
    except ImportError:
        return None


@dataclass
class TrackingDeps:
    sessions: sessionmaker[Session]
    store: TrackingStore
    require: Callable[..., Callable[..., Any]]
    tile_url: str = ""
    # The service day an event time falls in (the fare policy's local day).
    service_date: Callable[[int], str] = lambda ms: time.strftime(
        "%Y-%m-%d", time.gmtime(ms / 1000))
    stopping: threading.Event = field(default_factory=threading.Event)
    stale_after_s: float = 90
    offline_after_s: float = 600


def vehicle_json(r: VehicleRecord, now_ms: int, deps: TrackingDeps) -> dict[str, Any]:
    age = max(0.0, (now_ms - r.ts) / 1000)
    return {"vehicle_id": r.vehicle_id, "route_id": r.route_id, "trip_id": r.trip_id,
            "lat": r.lat_e6 / 1e6, "lon": r.lon_e6 / 1e6, "bearing": r.bearing_deg,
            "speed_mps": None if r.speed_cms is None else r.speed_cms / 100,
            "ts": r.ts, "age_s": round(age, 1),
            "state": state(age, deps.stale_after_s, deps.offline_after_s),
            "device_id": r.device_id, "next_stop_id": r.next_stop_id,
            "next_stop_name": r.next_stop_name}


def tracking_blueprint(deps: TrackingDeps) -> Blueprint:
    bp = Blueprint("tracking", __name__)
    require = deps.require

    @bp.get("/api/v1/vehicles")
    @require("ops")
    def vehicles() -> Response:
        now = int(time.time() * 1000)
        return jsonify({"vehicles": [vehicle_json(r, now, deps)
                                     for r in deps.store.vehicles()]})

    @bp.get("/api/v1/vehicles/<vehicle_id>")
    @require("ops")
    def vehicle(vehicle_id: str) -> Response:
        found = deps.store.last([vehicle_id]).get(vehicle_id)
        if found is None:
            abort(404, f"no vehicle {vehicle_id}")
        now = int(time.time() * 1000)
        out = vehicle_json(found, now, deps)
        today = deps.service_date(now)
        with deps.sessions() as session:
            out["taps_today"] = int(session.scalar(
                select(func.count()).select_from(TapRecord).where(
                    TapRecord.vehicle_id == vehicle_id,
                    TapRecord.service_date == today)) or 0)
        out["trail"] = [{"ts": ts, "lat": lat / 1e6, "lon": lon / 1e6}
                        for ts, lat, lon in deps.store.trail(vehicle_id)]
        out["service_date"] = today
        return jsonify(out)

    @bp.get("/api/v1/vehicles/stream")
    @require("ops")
    def stream() -> Response:
        def events() -> Iterator[str]:
            now = int(time.time() * 1000)
            snapshot = [vehicle_json(r, now, deps) for r in deps.store.vehicles()]
            yield f"event: snapshot\ndata: {json.dumps(snapshot)}\n\n"
            for batch in deps.store.events(deps.stopping):
                if batch is None:
                    yield ": keep-alive\n\n"
                    continue
                now = int(time.time() * 1000)
                for raw in batch:
                    record = VehicleRecord(**raw)
                    yield (f"event: position\nid: {record.vehicle_id}:{record.ts}\n"
                           f"data: {json.dumps(vehicle_json(record, now, deps))}\n\n")

        return Response(events(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @bp.get("/api/v1/validators")
    @require("ops")
    def validators() -> Response:
        now = int(time.time() * 1000)
        statuses = deps.store.statuses()
        with deps.sessions() as session:
            devices = session.execute(select(Device.device_id, Device.vehicle_id,
                                             Device.status).order_by(Device.device_id)).all()
        out = []
        for device_id, vehicle_id, status in devices:
            reported, received = statuses.get(device_id, ({}, None))
            online = bool(reported.get("online")) and received is not None and (
                now - received) / 1000 < deps.offline_after_s
            out.append({"device_id": device_id, "vehicle_id": vehicle_id,
                        "registration": status, "online": online,
                        "last_seen_ms": received,
                        "last_seen_s": None if received is None else round(
                            (now - received) / 1000, 1),
                        "spool_depth": reported.get("spool_depth"),
                        "spool_full": reported.get("spool_full", False),
                        "denylist_version": reported.get("denylist_version"),
                        "software": reported.get("software"),
                        "route_id": reported.get("route_id")})
        return jsonify({"validators": out})

    @bp.get("/gtfs-rt/vehicle-positions")
    def gtfs_rt() -> Response:
        feed = vehicle_feed(deps.store.vehicles(), max_age_s=deps.offline_after_s)
        if request.args.get("format") == "json":
            from google.protobuf.json_format import MessageToDict

            return jsonify(MessageToDict(feed))
        return Response(feed.SerializeToString(), mimetype="application/x-protobuf")

    @bp.get("/api/v1/network")
    @require("ops")
    def network() -> Response:
        """Routes with their colours and shapes, and stops: what the map draws."""
        with deps.sessions() as session:
            routes = session.scalars(select(Route).order_by(Route.route_id)).all()
            shape_of: dict[str, set[str]] = {}
            for route_id, shape_id in session.execute(
                    select(Trip.route_id, Trip.shape_id).where(Trip.shape_id.is_not(None))
                    .distinct()).all():
                shape_of.setdefault(route_id, set()).add(shape_id)
            points: dict[str, list[list[float]]] = {}
            for shape_id, lat, lon in session.execute(
                    select(ShapePoint.shape_id, ShapePoint.lat_e6, ShapePoint.lon_e6)
                    .order_by(ShapePoint.shape_id, ShapePoint.seq)).all():
                points.setdefault(shape_id, []).append([lat / 1e6, lon / 1e6])
            stops = [{"id": s.stop_id, "name": s.name, "lat": s.lat_e6 / 1e6,
                      "lon": s.lon_e6 / 1e6} for s in session.scalars(select(Stop))]
        return jsonify({
            "tile_url": deps.tile_url,
            "routes": [{"route_id": r.route_id, "agency_id": r.agency_id,
                        "short_name": r.short_name, "long_name": r.long_name,
                        "color": r.color or "3366CC",
                        "shapes": [points[s] for s in sorted(shape_of.get(r.route_id, ()))
                                   if s in points]} for r in routes],
            "stops": stops})

    @bp.get("/")
    def map_page() -> Response:
        resp = send_from_directory(STATIC, "map.html")
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: " + (_origin(deps.tile_url) or "")
            + "; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    @bp.get("/static/map/<path:name>")
    def map_static(name: str) -> Response:
        return send_from_directory(STATIC, name)

    @bp.get("/static/leaflet/<path:name>")
    def leaflet_static(name: str) -> Response:
        folder = leaflet_dir()
        if folder is None:
            abort(404, "Leaflet is not installed: run npm ci --prefix tracking/web")
        return send_from_directory(folder, name)

    return bp


def _origin(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        return ""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host.replace('{s}', '*')}"
