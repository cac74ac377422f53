"""Headways for the control room: `GET /api/v1/routes/{route_id}/headways`, the
thresholds an operator sets (`PUT .../headways/thresholds`, kept in
`headway_thresholds`, recorded in the audit trail), and the bunched pairs the operators'
alerts show, with when each pair was first seen bunched kept in Redis (shared by every
gateway).

The rules are tracking.headways'; this module reads the live vehicles, the schedule and
the thresholds, and answers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify
from sqlalchemy import select

from ledger import audit
from ledger.adapters.bulk import bulk_insert
from ledger.adapters.db import READS_ONLY, Sessions
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.services import now_ms
from tracking.adapters.models import HeadwayThreshold
from tracking.alerts_http import JSON, TAG, Refused  # the error format, as the alerts'
from tracking.alerts_http import _flask_body as flask_body  # a body read as the alerts'
from tracking.domain import STALE_AFTER_S
from tracking.headways import (
    DEFAULT_ROUTE,
    MAX_PCT,
    AtTerminal,
    Bunch,
    Direction,
    InLine,
    Live,
    Projections,
    RouteHeadways,
    Thresholds,
    bunches,
    carry_since,
    check_thresholds,
    route_headways,
    thresholds_for,
)
from tracking.predict import ConstantSpeed, TravelTimes
from tracking.schedule import Pattern, Schedule
from tracking.store import TrackingStore, VehicleRecord

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[View], View]

# The live vehicles are read at most this often for the headways' requests (whatever the
# route: the store keeps no index by route): a read of every vehicle costs 0.3-0.5 s of
# CPU at 4,300 buses, and a control room's screens each ask every few seconds. Positions
# come every 5-10 s, so 2 s old readings change no verdict. The operators' alerts hand
# in their own reading (`bunched`), which the headways then share.
FLEET_S = 2.0

# A route id as the contract writes it and the import keeps it (tracking.gtfs): 1-64 of
# A-Z a-z 0-9 . _ -; or `*`, the thresholds' default row.
ROUTE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}|\*")


class HeadwayOffice:
    """The headways of the routes with live vehicles, the thresholds, and the memory of
    bunched pairs."""

    def __init__(self, sessions: Sessions, store: TrackingStore,
                 schedule: Callable[[], Schedule],
                 times: Callable[[], TravelTimes] | None = None,
                 fingerprints: Fingerprints | None = None,
                 clock: Callable[[], int] = now_ms,
                 stale_after_s: float = STALE_AFTER_S, fleet_s: float = FLEET_S) -> None:
        self.sessions = sessions
        self.store = store
        self.schedule = schedule
        # The travel times the gaps in seconds are read with: the learned ones
        # (`tracking.predict.LearnedSource`) when handed in, else a constant speed.
        constant = ConstantSpeed()
        self.times: Callable[[], TravelTimes] = times or (lambda: constant)
        self.fingerprints = fingerprints
        self.clock = clock
        self.stale_after_s = stale_after_s
        self.fleet_s = fleet_s
        self._fleet: tuple[float, list[VehicleRecord]] | None = None
        self._fleet_lock = threading.Lock()  # one reading at a time; others wait for it
        self._lock = threading.Lock()
        self._projections: Projections | None = None
        self._device_trips: tuple[Schedule, dict[tuple[str, str], str]] | None = None

    # -- reads --------------------------------------------------------------------------

    def thresholds(self) -> dict[str, tuple[int, int]]:
        """Every route's thresholds row (`*` the default)."""
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            return {r.route_id: (r.bunched_pct, r.gapped_pct)
                    for r in session.scalars(select(HeadwayThreshold))}

    def route(self, route_id: str, now: int | None = None) -> RouteHeadways | None:
        """The route's headways now; None for a route the schedule does not have."""
        schedule = self.schedule()
        if route_id not in schedule.route_patterns:
            return None
        now = self.clock() if now is None else now
        live = self._live(schedule, now, route_id=route_id).get(route_id, [])
        return route_headways(schedule, route_id, live, now, self.times(),
                              thresholds_for(route_id, self.thresholds()),
                              self._projections_of(schedule))

    def bunched(self, now: int | None = None,
                vehicles: Iterable[VehicleRecord] | None = None
                ) -> list[tuple[Bunch, int]]:
        """Every bunched pair on the routes with live vehicles, with when it was first
        seen bunched (kept across requests and gateways in Redis). `vehicles`: the live
        store's, when the caller has read them already."""
        now = self.clock() if now is None else now
        if vehicles is not None:
            # A reading as fresh as any: the headways asked next are told from it, and
            # agree with the alerts just told.
            vehicles = list(vehicles)
            with self._fleet_lock:
                self._fleet = (time.monotonic(), vehicles)
        schedule = self.schedule()
        rows = self.thresholds()
        projections = self._projections_of(schedule)
        times = self.times()
        found: list[Bunch] = []
        for route_id, live in sorted(self._live(schedule, now, vehicles).items()):
            if route_id in schedule.route_patterns:
                found += bunches(route_headways(schedule, route_id, live, now, times,
                                                thresholds_for(route_id, rows),
                                                projections))
        key = f"{self.store.ns}:bunched"
        known = {_s(k): int(v) for k, v in self.store.redis.hgetall(key).items()}
        since, gone = carry_since(known, [b.key for b in found], now)
        pipe = self.store.redis.pipeline(transaction=False)
        for pair, ms in since.items():
            if pair not in known:
                pipe.hsetnx(key, pair, str(ms))  # another gateway's first sighting wins
        if gone:
            pipe.hdel(key, *gone)
        pipe.execute()
        return [(b, since[b.key]) for b in found]

    # -- the thresholds -----------------------------------------------------------------

    def set_thresholds(self, route_id: str, bunched_pct: int, gapped_pct: int,
                       actor: Actor) -> Thresholds:
        """Set a route's thresholds (`*`: the default), recorded in the audit trail."""
        if self.fingerprints is None:
            raise RuntimeError("this office reads only: it has no audit key")
        now = self.clock()
        holder = (actor.name or f"{actor.kind}:{actor.id}")[:100]
        with self.sessions.begin() as session:
            # Insert first, skipping a row that is there: two first PUTs at once would
            # both find no row to lock and the second insert would fail on the key.
            # Here the second waits for the first's commit, then updates its row.
            made = bulk_insert(session, HeadwayThreshold.__table__, [{
                "route_id": route_id, "bunched_pct": bunched_pct,
                "gapped_pct": gapped_pct, "set_ms": now, "set_by": holder}],
                ignore_conflicts=True, returning=("route_id",))
            was = None
            if not made:
                row = session.get(HeadwayThreshold, route_id, with_for_update=True)
                assert row is not None  # it conflicted: it is there, and rows stay
                was = [row.bunched_pct, row.gapped_pct]
                row.bunched_pct, row.gapped_pct = bunched_pct, gapped_pct
                row.set_ms, row.set_by = now, holder
                session.flush()
            audit.record(session, self.fingerprints, actor, "headway_thresholds.set",
                         route_id, {"bunched_pct": bunched_pct, "gapped_pct": gapped_pct,
                                    "was": was}, at_ms=now)
        return Thresholds(bunched_pct, gapped_pct, route_id)

    # -- the live vehicles --------------------------------------------------------------

    def _live(self, schedule: Schedule, now: int,
              vehicles: Iterable[VehicleRecord] | None = None,
              route_id: str | None = None) -> dict[str, list[Live]]:
        """The live vehicles (stale and offline left out), by route; with `route_id`,
        that route's only (placing a vehicle not matched yet locates it on a shape)."""
        out: dict[str, list[Live]] = {}
        for v in self._vehicles() if vehicles is None else vehicles:
            if now - v.ts >= self.stale_after_s * 1000 or (
                    route_id is not None and v.route_id != route_id):
                continue
            out.setdefault(v.route_id, []).append(self._placed(schedule, v))
        return out

    def _vehicles(self) -> list[VehicleRecord]:
        """The live store's vehicles, read again once `fleet_s` old."""
        with self._fleet_lock:
            if self._fleet is None or time.monotonic() - self._fleet[0] >= self.fleet_s:
                self._fleet = (time.monotonic(), self.store.vehicles())
            return self._fleet[1]

    def _placed(self, schedule: Schedule, v: VehicleRecord) -> Live:
        """The vehicle on the pattern trip assignment gave it; one not assigned yet
        whose device names a trip of the schedule is placed on that trip's pattern."""
        if v.pattern_id is not None and v.dist_m is not None:
            return Live(v.vehicle_id, v.route_id, v.ts, v.pattern_id, float(v.dist_m),
                        v.trip_id)
        pattern = self._device_pattern(schedule, v)
        if pattern is None:
            return Live(v.vehicle_id, v.route_id, v.ts, v.pattern_id, None, v.trip_id)
        where = pattern.shape.locate(v.lat_e6, v.lon_e6)
        return Live(v.vehicle_id, v.route_id, v.ts, pattern.pattern_id, where.dist_m,
                    v.trip_id)

    def _device_pattern(self, schedule: Schedule, v: VehicleRecord) -> Pattern | None:
        if not v.trip_id:
            return None
        with self._lock:
            if self._device_trips is None or self._device_trips[0] is not schedule:
                # A feed id shared by several routes is stored `ID@n`: look it up by
                # (route, the id the device knows).
                self._device_trips = (schedule, {
                    (t.route_id, t.feed_trip_id): t.pattern_id
                    for t in sorted(schedule.trips.values(), key=lambda t: t.trip_id,
                                    reverse=True)})
            pattern_id = self._device_trips[1].get((v.route_id, v.trip_id))
        return None if pattern_id is None else schedule.patterns.get(pattern_id)

    def _projections_of(self, schedule: Schedule) -> Projections:
        with self._lock:
            if self._projections is None or self._projections.schedule is not schedule:
                self._projections = Projections(schedule)
            return self._projections


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- the API -----------------------------------------------------------------------------

NUMBER_OR_NULL = {"type": ["number", "null"]}
THRESHOLDS = {
    "title": "HeadwayThresholds",
    "type": "object",
    "required": ["route_id", "bunched_pct", "gapped_pct", "from"],
    "properties": {
        "route_id": {"type": "string", "description": "`*`: the default of every route"},
        "bunched_pct": {"type": "integer", "minimum": 1, "maximum": MAX_PCT - 1},
        "gapped_pct": {"type": "integer", "minimum": 2, "maximum": MAX_PCT},
        "from": {"type": ["string", "null"],
                 "description": "the row they come from: the route, `*`, or null (no "
                                "row: 50 and 150)"}},
}
NEW_THRESHOLDS = {
    "title": "NewHeadwayThresholds",
    "type": "object",
    "required": ["bunched_pct", "gapped_pct"],
    "additionalProperties": False,
    "properties": {
        "bunched_pct": {"type": "integer", "minimum": 1, "maximum": MAX_PCT - 1,
                        "description": "bunched: a gap under this per cent of the "
                                       "headway"},
        "gapped_pct": {"type": "integer", "minimum": 2, "maximum": MAX_PCT,
                       "description": "gapped: over this per cent; above bunched_pct"}},
}
PLACED = {  # what the API says of every vehicle it places
    "vehicle_id": {"type": "string"}, "pattern_id": {"type": "string"},
    "trip_id": {"type": ["string", "null"]},
    "ts": {"type": "integer", "description": "its last position, ms"},
    "dist_m": {"type": "integer", "description": "metres along its own pattern"}}
VEHICLE = {
    "type": "object",
    "required": [*PLACED, "along_m", "ahead", "gap_m", "gap_s", "bunched", "gapped"],
    "properties": {
        **PLACED,
        "along_m": {"type": "integer",
                    "description": "metres along the direction's reference pattern"},
        "ahead": {"type": ["string", "null"], "description": "the vehicle ahead"},
        "gap_m": {"type": ["integer", "null"],
                  "description": "metres along the shape to the vehicle ahead; null for "
                                 "the lead vehicle"},
        "gap_s": {"type": ["integer", "null"],
                  "description": "seconds to reach where the vehicle ahead is now"},
        "bunched": {"type": "boolean"}, "gapped": {"type": "boolean"}},
}
AT_TERMINAL = {
    "type": "object",
    "required": [*PLACED, "terminal"],
    "properties": {
        **PLACED,
        "terminal": {"enum": ["first", "last"],
                     "description": "before it leaves its first stop, or at or past its "
                                    "last"}},
}
HEADWAYS = {
    "title": "RouteHeadways",
    "type": "object",
    "required": ["route_id", "at", "thresholds", "directions", "unplaced"],
    "properties": {
        "route_id": {"type": "string"},
        "at": {"type": "integer", "description": "ms: when it was worked out"},
        "thresholds": THRESHOLDS,
        "directions": {"type": "array", "items": {
            "type": "object",
            "required": ["direction_id", "reference_pattern_id", "headway_s",
                         "headway_source", "vehicles", "at_terminal"],
            "properties": {
                "direction_id": {"type": ["integer", "null"]},
                "reference_pattern_id": {"type": ["string", "null"],
                                         "description": "its longest pattern, along "
                                                      "which its vehicles are ordered"},
                "headway_s": NUMBER_OR_NULL,
                "headway_source": {"enum": ["frequency", "scheduled", "observed", None],
                                   "description": "frequencies.txt in force; the "
                                                  "timetable's departures within an "
                                                  "hour; else the run time shared among "
                                                  "the live vehicles"},
                "vehicles": {"type": "array", "items": VEHICLE,
                             "description": "the lead vehicle first"},
                "at_terminal": {"type": "array", "items": AT_TERMINAL,
                                "description": "vehicles standing at their pattern's "
                                               "first stop or laid over at its last "
                                               "(within 100 m, or past it): not "
                                               "judged"}}}},
        "unplaced": {"type": "array", "description": "live vehicles of the route on no "
                                                     "pattern of it yet",
                     "items": {"type": "object", "required": ["vehicle_id", "ts"],
                               "properties": {"vehicle_id": {"type": "string"},
                                              "ts": {"type": "integer"}}}}},
}
ROUTE_PATH = {"route_id": {"type": "string", "pattern": r"^([A-Za-z0-9._-]{1,64}|\*)$"}}


def thresholds_json(t: Thresholds, route_id: str) -> dict[str, Any]:
    """Thresholds as the API shows them."""
    return {"route_id": route_id, "bunched_pct": t.bunched_pct,
            "gapped_pct": t.gapped_pct, "from": t.route_id}


def _int(value: float | None) -> int | None:
    return None if value is None else int(round(value))


def vehicle_json(v: InLine) -> dict[str, Any]:
    """A vehicle in line as the API shows it."""
    return {"vehicle_id": v.vehicle_id, "pattern_id": v.pattern_id, "trip_id": v.trip_id,
            "ts": v.ts, "dist_m": int(round(v.dist_m)), "along_m": int(round(v.along_m)),
            "ahead": v.ahead, "gap_m": _int(v.gap_m), "gap_s": _int(v.gap_s),
            "bunched": v.bunched, "gapped": v.gapped}


def at_terminal_json(a: AtTerminal) -> dict[str, Any]:
    """A vehicle at a terminal as the API shows it."""
    return {"vehicle_id": a.vehicle_id, "pattern_id": a.pattern_id, "trip_id": a.trip_id,
            "ts": a.ts, "dist_m": int(round(a.dist_m)), "terminal": a.terminal}


def direction_json(d: Direction) -> dict[str, Any]:
    """A direction as the API shows it."""
    seconds = d.headway.seconds
    return {"direction_id": d.direction_id, "reference_pattern_id": d.reference,
            "headway_s": None if seconds is None else round(seconds, 1),
            "headway_source": d.headway.source,
            "vehicles": [vehicle_json(v) for v in d.vehicles],
            "at_terminal": [at_terminal_json(a) for a in d.at_terminal]}


def headways_json(r: RouteHeadways, at: int) -> dict[str, Any]:
    """A route's headways as the API shows them."""
    return {"route_id": r.route_id, "at": at,
            "thresholds": thresholds_json(r.thresholds, r.route_id),
            "directions": [direction_json(d) for d in r.directions],
            "unplaced": [{"vehicle_id": v.vehicle_id, "ts": v.ts} for v in r.unplaced]}


@dataclass(frozen=True)
class HeadwaysDeps:
    """What the headways' endpoints need, handed in by the wiring."""

    office: HeadwayOffice
    actor: Callable[[], Actor]  # who is asking, for the audit trail
    require: Callable[..., Decorator[Any]]  # the gateway's token check, `require(*roles)`
    operation: Callable[..., Decorator[Any]]  # declares a view in the OpenAPI description
    json_body: Callable[[], dict[str, Any]] | None = None  # the gateway's strict reading


def _route_id(route_id: str) -> str:
    if not ROUTE_ID.fullmatch(route_id):
        raise Refused(400, "bad_route_id", "a route id is 1-64 of A-Z a-z 0-9 . _ - "
                                           "(or * for the default thresholds)")
    return route_id


def headways_blueprint(deps: HeadwaysDeps) -> Blueprint:
    """The headways' endpoints."""
    bp = Blueprint("headways", __name__)
    office, require, operation = deps.office, deps.require, deps.operation
    body_of = deps.json_body or flask_body

    @bp.get("/api/v1/routes/<route_id>/headways")
    @operation("A route's vehicles in order, their gaps and headway", tag=TAG,
               path=ROUTE_PATH, responses={200: {JSON: HEADWAYS}}, errors=(400, 404),
               description="Per direction of the route (each the schedule gives, with "
                           "vehicles or not), its live vehicles (stale and offline left "
                           "out) in order along its longest pattern, the lead vehicle "
                           "first, each with the gap to the one ahead in metres and "
                           "seconds, and `bunched` (gap under `bunched_pct` of the "
                           "headway) / `gapped` (over `gapped_pct`). The headway is "
                           "the schedule's where it gives one (frequencies.txt, or the "
                           "spacing of the timetable's departures), else the run time "
                           "shared among the live vehicles (`observed`). Vehicles "
                           "standing at their pattern's first stop or laid over at its "
                           "last are listed apart in `at_terminal` and not judged. 400 "
                           "`bad_route_id`; 404 a route the schedule does not have.")
    @require("ops")
    def headways(route_id: str) -> Response:
        _route_id(route_id)
        at = office.clock()
        found = office.route(route_id, at)
        if found is None:
            raise Refused(404, "unknown_route", f"no route {route_id[:100]!r} in the "
                                                "schedule")
        return jsonify(headways_json(found, at))

    @bp.put("/api/v1/routes/<route_id>/headways/thresholds")
    @operation("Set when a route's buses count as bunched or gapped", tag=TAG,
               path=ROUTE_PATH, body=NEW_THRESHOLDS, responses={200: {JSON: THRESHOLDS}},
               errors=(400, 404),
               description="Per cent of the headway: bunched under `bunched_pct`, gapped "
                           "over `gapped_pct` (whole numbers, 1 <= bunched_pct < "
                           "gapped_pct <= 1000). Route `*` sets the default of every "
                           "route without its own; with no row at all, 50 and 150. 400 "
                           "`bad_thresholds`, `unknown_field`, `bad_route_id`; 404 a route "
                           "the schedule does not have. Recorded in the audit trail "
                           "(`headway_thresholds.set`).")
    @require("ops")
    def set_thresholds(route_id: str) -> Response:
        _route_id(route_id)
        body = body_of()
        extra = sorted(set(body) - {"bunched_pct", "gapped_pct"})
        if extra:
            raise Refused(400, "unknown_field", f"unknown field {extra[0][:64]!r}")
        bunched, gapped = body.get("bunched_pct"), body.get("gapped_pct")
        why = check_thresholds(bunched, gapped)
        if why is not None:
            raise Refused(400, "bad_thresholds", why)
        if route_id != DEFAULT_ROUTE and route_id not in office.schedule().route_patterns:
            raise Refused(404, "unknown_route", f"no route {route_id[:100]!r} in the "
                                                "schedule")
        assert isinstance(bunched, int) and isinstance(gapped, int)
        saved = office.set_thresholds(route_id, bunched, gapped, deps.actor())
        return jsonify(thresholds_json(saved, route_id))

    return bp
