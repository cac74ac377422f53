"""`GET /gtfs-rt/trip-updates`: the arrival predictions as GTFS-Realtime TripUpdates.

Public, like the other feeds. Built at most once every `CACHE_S` seconds and served
from memory in between: a feed consumer polls every few seconds, and one build for a
fleet of 500 buses walks every stop ahead of each. `?vehicle_id=V` serves that vehicle's
entity only, cut from the same build: the map's popup asks for one bus, and the whole
fleet's feed is ~1.6 MB of protobuf for 4,300 buses. The JSON form is made only when a
build is asked for as JSON: made at every build, it doubled the build's CPU for the feed
consumers, who read protobuf (docs/benchmarks.md, "The gateway's background work").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from flask import Blueprint, Response, abort, jsonify, request
from google.protobuf.json_format import MessageToDict
from google.transit import gtfs_realtime_pb2
from sqlalchemy.exc import SQLAlchemyError

from tracking.alerts_http import FEED_FORMATS, JSON, PROTOBUF
from tracking.feed_cache import FeedCache
from tracking.http import FEED_JSON
from tracking.predict import TravelTimes
from tracking.schedule import Schedule
from tracking.store import VehicleRecord
from tracking.tracks_http import VEHICLE_ID
from tracking.trip_updates import LIVE_S, trip_update_feed

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[View], View]

CACHE_S = 5.0


class Fleet(Protocol):
    """The live vehicles' records (`tracking.store.TrackingStore`)."""

    def vehicles(self) -> list[VehicleRecord]: ...


@dataclass
class PredictionsDeps:
    """What the feed needs, handed in by the wiring."""

    store: Fleet
    schedule: Callable[[], Schedule]  # `tracking.schedule_load.ScheduleSource`
    times: Callable[[], TravelTimes]  # `tracking.predict.LearnedSource`
    operation: Callable[..., Decorator[Any]]  # declares a view in the OpenAPI description
    live_s: float = LIVE_S
    cache_s: float = CACHE_S
    clock: Callable[[], float] = time.time
    _cache: FeedCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._cache = FeedCache(lambda: trip_update_feed(
            self.store.vehicles(), self.schedule(), self.times(),
            int(self.clock() * 1000), self.live_s), self.cache_s)

    def feed(self, vehicle_id: str | None = None, as_json: bool = False
             ) -> bytes | dict[str, Any]:
        """The feed as protobuf (`as_json`: as JSON), built again once `cache_s` old;
        with `vehicle_id`, only that vehicle's entity (none if it has no trip update)."""
        if vehicle_id is not None:
            cut = one_vehicle(self._cache.message(), vehicle_id)
            if as_json:
                return dict(MessageToDict(cut))
            return bytes(cut.SerializeToString())
        return self._cache.as_json() if as_json else self._cache.body()


def one_vehicle(message: gtfs_realtime_pb2.FeedMessage, vehicle_id: str
                ) -> gtfs_realtime_pb2.FeedMessage:
    """The feed cut to the entity of one vehicle (its id the vehicle's), same header."""
    cut = gtfs_realtime_pb2.FeedMessage()
    cut.header.CopyFrom(message.header)
    for entity in message.entity:
        if entity.id == vehicle_id:
            cut.entity.add().CopyFrom(entity)
    return cut


def predictions_blueprint(deps: PredictionsDeps) -> Blueprint:
    """The TripUpdates feed."""
    bp = Blueprint("predictions", __name__)

    @bp.get("/gtfs-rt/trip-updates")
    @deps.operation(
        "GTFS-Realtime trip updates: predicted arrivals at the stops ahead",
        tag="tracking",
        query={"format": {"enum": list(FEED_FORMATS),
                          "description": "`json` for people; protobuf by default"},
               "vehicle_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$",
                              "description": "only this vehicle's entity (none when it "
                                             "has no prediction now)"}},
        responses={200: {PROTOBUF: {}, JSON: FEED_JSON}}, errors=(400, 503),
        description="A GTFS-Realtime 2.0 FeedMessage (FULL_DATASET): for each vehicle "
                    "heard from in the last 90 s running a trip of the imported "
                    "schedule, its trip (the feed's trip_id, route, start date, "
                    "direction), the vehicle, and a stop_time_update per stop still "
                    "ahead in stop_sequence order, with the predicted arrival (POSIX "
                    "seconds) and, where the schedule has times, the delay (seconds, "
                    "late > 0). Predictions rest on the travel times learned from the "
                    "recorded tracks, by hour of the day, and the vehicle's own recent "
                    "pace. Built at most every 5 seconds. A run of a trip from "
                    "frequencies.txt carries its start_time (the run's departure, "
                    "HH:MM:SS of the service day) and is UNSCHEDULED where the "
                    "frequency has exact_times=0. With `vehicle_id`, the feed holds "
                    "that vehicle's entity only (the map asks so for a bus's popup); "
                    "400 when it is not 1-64 of A-Z a-z 0-9 . _ -.")
    def trip_updates() -> Response:
        wanted = request.args.get("format", "protobuf")
        if wanted not in FEED_FORMATS:
            abort(400, f"format must be one of {', '.join(FEED_FORMATS)}")
        vehicle_id = request.args.get("vehicle_id")
        if vehicle_id is not None and not VEHICLE_ID.fullmatch(vehicle_id):
            abort(400, "vehicle_id must be 1-64 of A-Z a-z 0-9 . _ -")
        try:
            found = deps.feed(vehicle_id, as_json=wanted == "json")
        except SQLAlchemyError:
            abort(503, "the schedule cannot be read now: try again shortly")
        if isinstance(found, dict):
            return jsonify(found)
        return Response(found, mimetype=PROTOBUF)

    return bp
