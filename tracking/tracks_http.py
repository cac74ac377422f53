"""`GET /api/v1/vehicles/{vehicle_id}/track`: a vehicle's positions as kept on disk.

Read from the table, not from Redis: the track survives a restart of the gateway and of
Redis, for `TRANSIT_TRACK_DAYS` days (tracking/track.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest

from ledger.adapters.db import Sessions
from tracking.adapters.track_sql import SqlTrack
from tracking.track import TrackPoint
from transit.instants import AS_OF, AS_OF_PATTERN, parse_instant

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[View], View]

HOUR_MS = 3_600_000
DEFAULT_SPAN_MS = 24 * HOUR_MS  # without `from`: the last day
MAX_SPAN_MS = 48 * HOUR_MS
MAX_POINTS = 20_000  # a bus reporting every 5 s sends 17,280 a day

JSON = "application/json"
INSTANT = {"type": "string", "pattern": AS_OF_PATTERN,
           "description": "an ISO-8601 instant with `Z` or an offset "
                          "(2026-12-01T08:15:02.123Z), or epoch milliseconds"}
NULLABLE_NUMBER = {"type": ["number", "null"]}
TRACK = {
    "title": "Track",
    "type": "object",
    "required": ["vehicle_id", "from", "to", "positions", "truncated", "next_from"],
    "properties": {
        "vehicle_id": {"type": "string"},
        "from": {"type": "integer", "description": "the interval's start, ms (inclusive)"},
        "to": {"type": "integer", "description": "its end, ms (exclusive)"},
        "positions": {"type": "array", "description": "oldest first", "items": {
            "type": "object",
            "required": ["ts", "lat", "lon", "speed_mps", "bearing", "route_id", "trip_id"],
            "properties": {
                "ts": {"type": "integer", "description": "ms since the epoch"},
                "lat": {"type": "number"}, "lon": {"type": "number"},
                "speed_mps": NULLABLE_NUMBER,
                "bearing": {"type": ["integer", "null"],
                            "description": "degrees clockwise from true north"},
                "route_id": {"type": "string"},
                "trip_id": {"type": ["string", "null"]}}}},
        "truncated": {"type": "boolean",
                      "description": "more positions follow in the interval than `limit`"},
        "next_from": {"type": ["integer", "null"],
                      "description": "when truncated: pass it as `from` for the rest"}},
}


class BadTime(BadRequest):
    """400 `bad_time`: an instant that is not one."""

    name = "Bad Time"


class BadRange(BadRequest):
    """400 `bad_range`: an interval backwards or too long."""

    name = "Bad Range"


class BadVehicle(BadRequest):
    """400 `bad_vehicle`: not a vehicle id (contract section 1)."""

    name = "Bad Vehicle"


VEHICLE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BadLimit(BadRequest):
    """400 `bad_limit`."""

    name = "Bad Limit"


@dataclass(frozen=True)
class TracksDeps:
    """What the track endpoint needs, handed in by the wiring."""

    sessions: Sessions
    require: Callable[..., Decorator[Any]]  # the gateway's token check, `require(*roles)`
    operation: Callable[..., Decorator[Any]]  # declares a view in the OpenAPI description
    clock: Callable[[], float] = time.time


def _instant(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    ms = parse_instant(raw) if AS_OF.fullmatch(raw) else None
    if ms is None:
        raise BadTime(f"{name} must be an ISO-8601 instant with Z or an offset, or epoch "
                      "milliseconds")
    return ms


def interval(now_ms: int) -> tuple[int, int]:
    """The request's `from` and `to`, with their defaults; 400 when they cannot be."""
    start, end = _instant("from"), _instant("to")
    if end is None:
        end = now_ms if start is None else min(now_ms, start + MAX_SPAN_MS)
    if start is None:
        start = end - DEFAULT_SPAN_MS
    if start > end:
        raise BadRange("from must not be after to")
    if end - start > MAX_SPAN_MS:
        raise BadRange(f"from and to may be at most {MAX_SPAN_MS // HOUR_MS} hours apart")
    return start, end


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return MAX_POINTS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_POINTS:
        raise BadLimit(f"limit must be a whole number from 1 to {MAX_POINTS}")
    return int(raw)


def page(points: list[TrackPoint], limit: int) -> tuple[list[TrackPoint], int | None]:
    """The first `limit` of `limit + 1` points read, and where the next page starts.

    A page never ends inside a millisecond (two validators on one bus may report the
    same instant): the positions of its last millisecond all go to the next page,
    unless the page would hold nothing else.
    """
    if len(points) <= limit:
        return points, None
    next_from = points[limit].ts
    shown = [p for p in points[:limit] if p.ts < next_from]
    if not shown:
        return points[:limit], next_from + 1
    return shown, next_from


def point_json(p: TrackPoint) -> dict[str, Any]:
    """A kept position as the API shows it."""
    return {"ts": p.ts, "lat": p.lat_e6 / 1e6, "lon": p.lon_e6 / 1e6,
            "speed_mps": None if p.speed_cms is None else p.speed_cms / 100,
            "bearing": p.bearing_deg, "route_id": p.route_id, "trip_id": p.trip_id}


def tracks_blueprint(deps: TracksDeps) -> Blueprint:
    """The track endpoint."""
    bp = Blueprint("tracks", __name__)
    table = SqlTrack(deps.sessions)

    @bp.get("/api/v1/vehicles/<vehicle_id>/track")
    @deps.operation(
        "A vehicle's track: its positions as kept on disk", tag="tracking",
        path={"vehicle_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$",
                             "description": "as the validators report it"}},
        query={"from": {**INSTANT, "description": f"the interval's start (inclusive), "
                                                  f"{INSTANT['description']}; default: "
                                                  f"24 hours before `to`"},
               "to": {**INSTANT, "description": "its end (exclusive), likewise; default: "
                                                "now, or 48 hours after `from` if sooner"},
               "limit": {"type": "integer", "minimum": 1, "maximum": MAX_POINTS,
                         "description": f"at most this many positions (default and "
                                        f"most: {MAX_POINTS:,})"}},
        responses={200: {JSON: TRACK}}, errors=(400,),
        description="The accepted positions of the vehicle from `from` to `to`, oldest "
                    "first, as kept on disk for `TRANSIT_TRACK_DAYS` days (30 unless the "
                    "site set another; 0 keeps none): they survive a restart of the "
                    "gateway and of Redis. The interval spans at most 48 hours "
                    "(400 `bad_range`, also when `from` is after `to`); an instant "
                    "that is not one is a 400 `bad_time`, a vehicle id that is not one a "
                    "400 `bad_vehicle`. When more positions lie in "
                    "the interval than `limit`, `truncated` is true and `next_from` "
                    "says where the next page begins.")
    @deps.require("ops")
    def track(vehicle_id: str) -> Response:
        if not VEHICLE_ID.fullmatch(vehicle_id):
            raise BadVehicle("vehicle_id must be 1-64 of A-Z a-z 0-9 . _ -")
        start, end = interval(int(deps.clock() * 1000))
        limit = _limit()
        points, next_from = page(table.read(vehicle_id, start, end, limit + 1), limit)
        return jsonify({"vehicle_id": vehicle_id, "from": start, "to": end,
                        "positions": [point_json(p) for p in points],
                        "truncated": next_from is not None, "next_from": next_from})

    return bp
