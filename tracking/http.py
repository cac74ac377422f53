"""Tracking's HTTP endpoints (contract section 3): the vehicles and their stream, the
validators, the GTFS-Realtime feed, the network for the map, and the map page itself.

The blueprint is built by the wiring, which hands it the token check (`require`) and
the operation declaration (`operation`) of the gateway's HTTP app, and the gateway's
records behind tracking's own Protocols: tracking imports nothing of the gateway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, jsonify, request, send_from_directory
from google.transit import gtfs_realtime_pb2
from werkzeug.exceptions import HTTPException, ServiceUnavailable, TooManyRequests

from tracking.domain import state
from tracking.feed_cache import FeedCache
from tracking.occupancy import STATUSES as OCCUPANCY_STATUSES
from tracking.occupancy import Occupancy
from tracking.realtime import StaticIds, vehicle_feed
from tracking.schedule import Schedule
from tracking.services import (
    DeviceRoster,
    Network,
    ValidatorState,
    VehicleTaps,
    validators_heard,
)
from tracking.store import FIELDS, TrackingStore, VehicleRecord
from tracking.streams import EventHub, Refusal, StreamSlots, stream_lines
from tracking.trip_updates import trip_start

STATIC = Path(__file__).with_name("static")
NPM_LEAFLET = Path(__file__).with_name("web") / "node_modules" / "leaflet" / "dist"
FEED_FORMATS = ("protobuf", "json")

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[View], View]

JSON = "application/json"
NUMBER_OR_NULL = {"type": ["number", "null"]}
STRING_OR_NULL = {"type": ["string", "null"]}
TEXT = {"type": "string"}
BINARY: dict[str, Any] = {}  # bytes: no JSON Schema applies
EVENTS: dict[str, Any] = {}  # a stream of events, described in words below
ID = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
VEHICLE = {
    "title": "Vehicle",
    "type": "object",
    "required": ["vehicle_id", "route_id", "trip_id", "lat", "lon", "bearing", "speed_mps",
                 "ts", "age_s", "state", "device_id", "next_stop_id", "next_stop_name"],
    "properties": {
        "vehicle_id": {"type": "string"}, "route_id": {"type": "string"},
        "trip_id": STRING_OR_NULL, "lat": {"type": "number"}, "lon": {"type": "number"},
        "bearing": {"type": ["integer", "null"],
                    "description": "degrees clockwise from true north"},
        "speed_mps": NUMBER_OR_NULL,
        "ts": {"type": "integer", "description": "of the last position, ms since the epoch"},
        "age_s": {"type": "number", "description": "seconds since that position"},
        "state": {"enum": ["live", "stale", "offline"]},
        "device_id": {"type": "string"}, "next_stop_id": STRING_OR_NULL,
        "next_stop_name": STRING_OR_NULL,
        "start_date": {"type": ["string", "null"],
                       "description": "the service date of its trip, YYYYMMDD"},
        "trip_source": {"enum": ["device", "matched", None],
                        "description": "`device`: the trip its validator named, found "
                                       "on its line; `matched`: assigned from where and "
                                       "when it runs"},
        "pattern_id": {"type": ["string", "null"],
                       "description": "the way of its route it runs (stops along a "
                                      "shape), named by its first trip"},
        "occupancy_status": {"enum": [*OCCUPANCY_STATUSES, None],
                             "description": "how full it is, estimated from its taps "
                                            "(GTFS-Realtime `OccupancyStatus`); null: no "
                                            "estimate yet"},
        "occupancy_percentage": {"type": ["integer", "null"], "minimum": 0,
                                 "description": "riders aboard, estimated, in per cent of "
                                                "its capacity (`transit vehicles "
                                                "capacity`; 80 when not set)"}},
}
VEHICLES = {"title": "Vehicles", "type": "object", "required": ["vehicles"],
            "properties": {"vehicles": {"type": "array", "items": VEHICLE}}}
VEHICLE_DETAIL = {
    "title": "VehicleDetail",
    "allOf": [VEHICLE, {
        "type": "object",
        "required": ["taps_today", "trail", "service_date", "service_day_start_ms"],
        "properties": {
            "taps_today": {"type": "integer", "minimum": 0,
                           "description": "taps on this vehicle in today's service day"},
            "trail": {"type": "array", "description": "its last positions, newest first",
                      "items": {"type": "object", "required": ["ts", "lat", "lon"],
                                "properties": {"ts": {"type": "integer"},
                                               "lat": {"type": "number"},
                                               "lon": {"type": "number"}}}},
            "service_date": {"type": "string", "format": "date"},
            "service_day_start_ms": {"type": "integer",
                                     "description": "when today's service day began"}}}],
}
VALIDATOR_STATES = ("online", "silent", "offline")
VALIDATOR = {
    "title": "Validator",
    "type": "object",
    "required": ["device_id", "vehicle_id", "registration", "state", "online", "last_seen_ms",
                 "last_seen_s", "last_status_ms", "spool_depth", "spool_full",
                 "spool_growing_since_ms", "denylist_version", "software", "route_id"],
    "properties": {
        "device_id": {"type": "string"}, "vehicle_id": {"type": "string"},
        "registration": {"type": "string", "description": "`active` or `revoked`"},
        "state": {"enum": list(VALIDATOR_STATES),
                  "description": "from what the gateways heard of it; see the operation"},
        "online": {"type": "boolean", "description": "`state` is `online`"},
        "last_seen_ms": {"type": ["integer", "null"],
                         "description": "when anything of it (a tap, a position, a status) "
                                        "was last heard, ms since the epoch; null: never"},
        "last_seen_s": {**NUMBER_OR_NULL, "description": "seconds since then"},
        "last_status_ms": {"type": ["integer", "null"],
                           "description": "when its last status message came: the fields "
                                          "it reports (spool, deny list, software, route) "
                                          "are as of then"},
        "spool_depth": {"description": "taps it held without a receipt, as it last reported"},
        "spool_full": {"description": "whether its spool was full, as it last reported"},
        "spool_growing_since_ms": {
            "type": ["integer", "null"],
            "description": "since when its reported spool depth keeps rising (by 5 taps or "
                           "more over 2 minutes or more, never going down): taps are made "
                           "and no receipt comes back; null: it is not"},
        "denylist_version": {"description": "the deny list it enforces, as it reported"},
        "software": {"description": "its software, as it reported"},
        "route_id": {"description": "the route it serves, as it reported"}},
}
VALIDATORS = {"title": "Validators", "type": "object", "required": ["validators"],
              "properties": {"validators": {"type": "array", "items": VALIDATOR}}}
LAT_LON = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
NETWORK = {
    "title": "Network",
    "type": "object",
    "required": ["tile_url", "routes", "stops"],
    "properties": {
        "tile_url": {"type": "string",
                     "description": "the map tile URL template; empty: no tiles"},
        "routes": {"type": "array", "items": {
            "type": "object",
            "required": ["route_id", "agency_id", "short_name", "long_name", "color",
                         "shapes"],
            "properties": {
                "route_id": {"type": "string"}, "agency_id": {"type": "string"},
                "short_name": {"type": "string"}, "long_name": {"type": "string"},
                "color": {"type": "string", "description": "RRGGBB"},
                "shapes": {"type": "array", "items": {"type": "array", "items": LAT_LON},
                           "description": "polylines of [lat, lon]"}}}},
        "stops": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "lat", "lon"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                           "lat": {"type": "number"}, "lon": {"type": "number"}}}}},
}
FEED_JSON = {"title": "FeedMessage", "type": "object", "required": ["header"],
             "description": "the GTFS-Realtime FeedMessage in protobuf's JSON mapping"}
STATIC_FILES = {"text/css": TEXT, "text/javascript": TEXT, "text/html": TEXT,
                "image/png": BINARY, "application/octet-stream": BINARY}
# Set by waitress in each request (with `channel_request_lookahead`): whether the client
# has closed its connection. Without it a stream learns so only at its next write.
CLIENT_GONE = "waitress.client_disconnected"
RECORD_FIELDS = frozenset(FIELDS)
STREAM_RETRY_S = 5  # Retry-After of a refused stream


class TooManyStreams(TooManyRequests):
    """429 `too_many_streams`: the token holds as many streams as it may."""

    name = "Too Many Streams"


class StreamsFull(ServiceUnavailable):
    """503 `streams_full`: the gateway serves as many streams as it can."""

    name = "Streams Full"


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
    """What tracking's endpoints need, handed in by the wiring."""

    network: Callable[[], Network]  # what the map draws (`tracking.services.NetworkMap`)
    store: TrackingStore
    roster: DeviceRoster
    taps: VehicleTaps
    require: Callable[..., Decorator[Any]]  # the gateway's token check, `require(*roles)`
    operation: Callable[..., Decorator[Any]]  # declares a view in the OpenAPI description
    streams: StreamSlots  # the vehicle streams served at once, in all and per token
    holder: Callable[[], str]  # who holds a stream, for the per-token cap: the token's id
    tile_url: str = ""
    # The service day an event time falls in (the fare policy's local day).
    # When the service day of an event time began (ms): by default the UTC day's start.
    service_day_start: Callable[[int], int] = lambda ms: ms - ms % 86_400_000
    service_date: Callable[[int], str] = lambda ms: time.strftime(
        "%Y-%m-%d", time.gmtime(ms / 1000))
    stopping: threading.Event = field(default_factory=threading.Event)
    # The vehicle positions feed is built at most this often (s), however many poll it.
    feed_max_age_s: float = 1.0
    stale_after_s: float = 90
    offline_after_s: float = 600
    silent_after_s: float = 90  # a validator not heard for longer is `silent`
    # The static network's ids the public feed may name (`tracking.feed_ids.FeedIds`).
    known: Callable[[], StaticIds] | None = None
    # A vehicle's occupancy estimated from its taps (`tracking.occupancy_live`).
    occupancy: Callable[[str], Occupancy | None] | None = None
    # The schedule (`tracking.schedule_load.ScheduleSource`): which run of a frequency
    # trip a vehicle is on, for the feed's start_time.
    schedule: Callable[[], Schedule] | None = None


def vehicle_json(r: VehicleRecord, now_ms: int, deps: TrackingDeps) -> dict[str, Any]:
    """A vehicle as the API shows it, its state judged from its last position's age."""
    age = max(0.0, (now_ms - r.ts) / 1000)
    # The trip as the static feed names it: a reused feed id is stored as `ID@n`.
    trip_id = r.trip_id.split("@", 1)[0] if r.trip_id else None
    return {"vehicle_id": r.vehicle_id, "route_id": r.route_id, "trip_id": trip_id,
            "lat": r.lat_e6 / 1e6, "lon": r.lon_e6 / 1e6, "bearing": r.bearing_deg,
            "speed_mps": None if r.speed_cms is None else r.speed_cms / 100,
            "ts": r.ts, "age_s": round(age, 1),
            "state": state(age, deps.stale_after_s, deps.offline_after_s),
            "device_id": r.device_id, "next_stop_id": r.next_stop_id,
            "next_stop_name": r.next_stop_name, "start_date": r.start_date,
            "trip_source": r.trip_source, "pattern_id": r.pattern_id,
            **_occupancy_json(r.vehicle_id, deps)}


def _occupancy_json(vehicle_id: str, deps: TrackingDeps) -> dict[str, Any]:
    full = None if deps.occupancy is None else deps.occupancy(vehicle_id)
    return {"occupancy_status": None if full is None else full.status,
            "occupancy_percentage": None if full is None else full.percentage}


def now_ms() -> int:
    return int(time.time() * 1000)


def validators_now(deps: TrackingDeps) -> list[ValidatorState]:
    """Every registered validator's state now, from what the gateways heard."""
    return validators_heard(deps.roster.registered(), deps.store, now_ms(),
                            deps.silent_after_s, deps.offline_after_s)


def tracking_blueprint(deps: TrackingDeps) -> Blueprint:
    """Tracking's endpoints over its store and network, guarded by the gateway's roles."""
    bp = Blueprint("tracking", __name__)
    require, operation = deps.require, deps.operation

    def render(batch: list[dict[str, Any]]) -> str:
        """A batch of position events as the streams send it, rendered once for all."""
        now = now_ms()
        out = []
        for raw in batch:
            # Fields a newer gateway's events may add are not this version's to show.
            record = VehicleRecord(**{k: v for k, v in raw.items() if k in RECORD_FIELDS})
            out.append(f"event: position\nid: {record.vehicle_id}:{record.ts}\n"
                       f"data: {json.dumps(vehicle_json(record, now, deps))}\n\n")
        return "".join(out)

    hub = EventHub(deps.store.events, render, deps.stopping)

    def build_positions_feed() -> gtfs_realtime_pb2.FeedMessage:
        # Cached by the source: only a gateway's very first read waits on the database.
        schedule = None if deps.schedule is None else deps.schedule()
        return vehicle_feed(deps.store.vehicles(), max_age_s=deps.offline_after_s,
                            known=None if deps.known is None else deps.known(),
                            occupancy=deps.occupancy,
                            starts=None if schedule is None
                            else lambda r: trip_start(r, schedule))

    positions_feed = FeedCache(build_positions_feed, deps.feed_max_age_s)

    @bp.get("/api/v1/vehicles")
    @operation("The fleet's last positions", tag="tracking",
               responses={200: {JSON: VEHICLES}},
               links={200: {"FirstVehicle": {
                   "operationId": "tracking.vehicle",
                   "parameters": {"vehicle_id": "$response.body#/vehicles/0/vehicle_id"}}}},
               description="`state`: `live`, `stale` after 90 s without a position, "
                           "`offline` after 10 minutes.")
    @require("ops")
    def vehicles() -> Response:
        now = now_ms()
        return jsonify({"vehicles": [vehicle_json(r, now, deps)
                                     for r in deps.store.vehicles()]})

    @bp.get("/api/v1/vehicles/<vehicle_id>")
    @operation("One vehicle: its position, trail and taps today", tag="tracking",
               path={"vehicle_id": {**ID, "description": "as the validators report it"}},
               responses={200: {JSON: VEHICLE_DETAIL}},
               errors=(404,))
    @require("ops")
    def vehicle(vehicle_id: str) -> Response:
        found = deps.store.last([vehicle_id]).get(vehicle_id)
        if found is None:
            abort(404, f"no vehicle {vehicle_id}")
        now = now_ms()
        out = vehicle_json(found, now, deps)
        today = deps.service_date(now)
        out["taps_today"] = deps.taps.count(vehicle_id, today)
        out["trail"] = [{"ts": ts, "lat": lat / 1e6, "lon": lon / 1e6}
                        for ts, lat, lon in deps.store.trail(vehicle_id)]
        out["service_date"] = today
        out["service_day_start_ms"] = deps.service_day_start(now)
        return jsonify(out)

    @bp.get("/api/v1/vehicles/stream")
    @operation("Position changes as Server-Sent Events", tag="tracking",
               responses={200: {"text/event-stream": EVENTS}},
               description="First an `event: snapshot` with every vehicle (as in "
                           "`/api/v1/vehicles`), then an `event: position` per change, and "
                           "a `: keep-alive` comment after 15 quiet seconds. The stream "
                           "stays open until the client or the gateway closes it. A token "
                           "holds at most `TRANSIT_STREAMS_PER_TOKEN` streams at once "
                           "(429 `too_many_streams` beyond), a gateway serves at most "
                           "`TRANSIT_HTTP_STREAMS` (503 `streams_full`).",
               errors=(503,))
    @require("ops")
    def stream() -> Response:
        holder = deps.holder()
        refusal = deps.streams.take(holder)
        if refusal is not None:
            raise _refused(refusal, deps.streams)
        ending = _StreamEnd(deps.stopping, request.environ.get(CLIENT_GONE, _never))
        # Subscribed before the snapshot is read: no position falls between them.
        sub = hub.subscribe()
        try:
            now = now_ms()
            snapshot = [vehicle_json(r, now, deps) for r in deps.store.vehicles()]
        except BaseException:
            sub.close()
            deps.streams.release(holder)
            raise
        resp = Response(stream_lines(sub, f"event: snapshot\ndata: {json.dumps(snapshot)}\n\n",
                                     ending), mimetype="text/event-stream",
                        headers={"X-Accel-Buffering": "no"})
        # The server closes the response when the stream ends, however it ends (the
        # client left, the gateway stops, an error): the slot is given back then.
        resp.call_on_close(lambda: deps.streams.release(holder))
        return resp

    @bp.get("/api/v1/validators")
    @operation("Every registered validator: its state, last heard, spool depth",
               tag="tracking", responses={200: {JSON: VALIDATORS}},
               description="`state`: `online`: heard (a tap, a position or a status) "
                           "within the last 90 s; `silent`: nothing heard for longer, though "
                           "its last status still says online (a tunnel, a dead link or "
                           "power); `offline`: its last will or an offline status came after "
                           "the last thing heard of it, or nothing heard for 10 minutes, or "
                           "never heard from. The 90 s are `TRANSIT_VALIDATOR_SILENT_S`. "
                           "What it reports (spool depth, deny list, software) is as of its "
                           "last status, `last_status_ms`.")
    @require("ops")
    def validators() -> Response:
        states = validators_now(deps)
        return jsonify({"validators": [asdict(s) for s in states]})

    @bp.get("/gtfs-rt/vehicle-positions")
    @operation("GTFS-Realtime vehicle positions", tag="tracking",
               query={"format": {"enum": list(FEED_FORMATS),
                                 "description": "`json` for people; protobuf by default"}},
               responses={200: {"application/x-protobuf": BINARY, JSON: FEED_JSON}},
               errors=(400,),
               description="A GTFS-Realtime 2.0 FeedMessage of every vehicle heard from in "
                           "the last 10 minutes. A vehicle on a run of a trip from "
                           "frequencies.txt carries the run's start_time, and is "
                           "UNSCHEDULED where the frequency has exact_times=0. Built at "
                           "most once a second, however many poll it.")
    def gtfs_rt() -> Response:
        wanted = request.args.get("format", "protobuf")
        if wanted not in FEED_FORMATS:
            abort(400, f"format must be one of {', '.join(FEED_FORMATS)}")
        if wanted == "json":
            return jsonify(positions_feed.as_json())
        return Response(positions_feed.body(), mimetype="application/x-protobuf")

    @bp.get("/api/v1/network")
    @operation("Routes with their colours and shapes, and stops: what the map draws",
               tag="tracking", responses={200: {JSON: NETWORK}})
    @require("ops")
    def network() -> Response:
        return jsonify({"tile_url": deps.tile_url, **deps.network()})

    @bp.get("/")
    @operation("The operations map", tag="map", responses={200: {"text/html": TEXT}},
               description="Sign in with an `ops` token typed into the page; it is kept "
                           "in session storage and sent only in the Authorization header.")
    def map_page() -> Response:
        resp = send_from_directory(STATIC, "map.html")
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data: " + (_origin(deps.tile_url) or "")
            + "; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    @bp.get("/static/map/<path:name>")
    @operation("The map page's own files", tag="map",
               path={"name": {**TEXT, "description": "`map.js`, `map.css`"}},
               responses={200: STATIC_FILES}, errors=(404,))
    def map_static(name: str) -> Response:
        return send_from_directory(STATIC, name)

    @bp.get("/static/leaflet/<path:name>")
    @operation("Leaflet, served by the gateway (nothing from a CDN)", tag="map",
               path={"name": {**TEXT, "description": "`leaflet.js`, `leaflet.css`, "
                                                     "`images/...`"}},
               responses={200: STATIC_FILES}, errors=(404,))
    def leaflet_static(name: str) -> Response:
        folder = leaflet_dir()
        if folder is None:
            abort(404, "Leaflet is not installed: run npm ci --prefix tracking/web")
        return send_from_directory(folder, name)

    return bp


def _refused(refusal: Refusal, slots: StreamSlots) -> HTTPException:
    if refusal is Refusal.HOLDER_FULL:
        return TooManyStreams(f"this token holds {slots.per_holder} streams, as many as "
                              "one token may: close one first", retry_after=STREAM_RETRY_S)
    return StreamsFull(f"this gateway serves {slots.total} streams, as many as it can: "
                       "try again later or another gateway", retry_after=STREAM_RETRY_S)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class _StreamEnd:
    """What ends one stream, polled by `TrackingStore.events` each second: the gateway
    stopping, or the stream's client gone."""

    stopping: threading.Event
    client_gone: Callable[[], bool]

    def is_set(self) -> bool:
        return self.stopping.is_set() or self.client_gone()


def _origin(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        return ""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}://{host.replace('{s}', '*')}"
