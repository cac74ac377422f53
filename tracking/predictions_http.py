"""`GET /gtfs-rt/trip-updates`: the arrival predictions as GTFS-Realtime TripUpdates.

Public, like the other feeds. Built at most once every `CACHE_S` seconds and served
from memory in between: a feed consumer polls every few seconds, and one build for a
fleet of 500 buses walks every stop ahead of each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, jsonify, request
from google.protobuf.json_format import MessageToDict
from sqlalchemy.exc import SQLAlchemyError

from tracking.predict import TravelTimes
from tracking.schedule import Schedule
from tracking.store import TrackingStore
from tracking.trip_updates import LIVE_S, trip_update_feed

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[View], View]

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
FEED_FORMATS = ("protobuf", "json")
FEED_JSON = {"title": "FeedMessage", "type": "object", "required": ["header"],
             "description": "the GTFS-Realtime FeedMessage in protobuf's JSON mapping"}
CACHE_S = 5.0


@dataclass
class PredictionsDeps:
    """What the feed needs, handed in by the wiring."""

    store: TrackingStore
    schedule: Callable[[], Schedule]  # `tracking.schedule_load.ScheduleSource`
    times: Callable[[], TravelTimes]  # `tracking.predict.LearnedSource`
    operation: Callable[..., Decorator[Any]]  # declares a view in the OpenAPI description
    live_s: float = LIVE_S
    cache_s: float = CACHE_S
    clock: Callable[[], float] = time.time
    _cached: tuple[float, bytes, dict[str, Any]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def feed(self) -> tuple[bytes, dict[str, Any]]:
        """The feed as protobuf and as JSON, built again once `cache_s` old."""
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                message = trip_update_feed(self.store.vehicles(), self.schedule(),
                                           self.times(), int(self.clock() * 1000),
                                           self.live_s)
                self._cached = (now, message.SerializeToString(), MessageToDict(message))
            return self._cached[1], self._cached[2]


def predictions_blueprint(deps: PredictionsDeps) -> Blueprint:
    """The TripUpdates feed."""
    bp = Blueprint("predictions", __name__)

    @bp.get("/gtfs-rt/trip-updates")
    @deps.operation(
        "GTFS-Realtime trip updates: predicted arrivals at the stops ahead",
        tag="tracking",
        query={"format": {"enum": list(FEED_FORMATS),
                          "description": "`json` for people; protobuf by default"}},
        responses={200: {PROTOBUF: {}, JSON: FEED_JSON}}, errors=(400, 503),
        description="A GTFS-Realtime 2.0 FeedMessage (FULL_DATASET): for each vehicle "
                    "heard from in the last 90 s running a trip of the imported "
                    "schedule, its trip (the feed's trip_id, route, start date, "
                    "direction), the vehicle, and a stop_time_update per stop still "
                    "ahead in stop_sequence order, with the predicted arrival (POSIX "
                    "seconds) and, where the schedule has times, the delay (seconds, "
                    "late > 0). Predictions rest on the travel times learned from the "
                    "recorded tracks, by hour of the day, and the vehicle's own recent "
                    "pace. Built at most every 5 seconds.")
    def trip_updates() -> Response:
        wanted = request.args.get("format", "protobuf")
        if wanted not in FEED_FORMATS:
            abort(400, f"format must be one of {', '.join(FEED_FORMATS)}")
        try:
            body, as_json = deps.feed()
        except SQLAlchemyError:
            abort(503, "the schedule cannot be read now: try again shortly")
        if wanted == "json":
            return jsonify(as_json)
        return Response(body, mimetype=PROTOBUF)

    return bp
