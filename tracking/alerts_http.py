"""Service alerts: `POST/GET /api/v1/alerts`, `DELETE /api/v1/alerts/{id}` and the
GTFS-Realtime Alerts feed at `/gtfs-rt/alerts`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, abort, jsonify, request
from google.protobuf.json_format import MessageToDict
from werkzeug.exceptions import HTTPException

from ledger.adapters.db import Sessions
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from tracking.alerts import (
    CAUSES,
    DEFAULT_CAUSE,
    DEFAULT_EFFECT,
    EFFECTS,
    MAX_DESCRIPTION,
    MAX_HEADER,
    MAX_IDS,
    STATES,
    Alert,
    AlertConflict,
    AlertError,
    AlertNotFound,
    AlertOffice,
)
from transit.instants import iso_z

View = TypeVar("View", bound=Callable[..., Any])
Decorator = Callable[[View], View]

TAG = "tracking"
JSON = "application/json"
PROTOBUF = "application/x-protobuf"
FEED_FORMATS = ("protobuf", "json")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 200
INSTANT_OUT = {"type": "string", "format": "date-time",
               "description": "ISO-8601 UTC, e.g. 2026-12-01T08:15:02.123Z"}
INSTANT_TEXT = ("epoch milliseconds, or an ISO-8601 instant with Z or an offset "
                "(2026-12-01T08:15:00+07:00)")
INSTANT_IN = {"type": ["integer", "string"], "description": INSTANT_TEXT}
IDS = {"type": "array", "maxItems": MAX_IDS, "items": {"type": "string", "minLength": 1}}


def texts_in(longest: int) -> dict[str, Any]:
    """A text, or an object of language -> text, Indonesian (`id`) among them."""
    return {"oneOf": [
        {"type": "string", "minLength": 1, "maxLength": longest,
         "description": "in Indonesian"},
        {"type": "object", "required": ["id"], "minProperties": 1, "maxProperties": 4,
         "additionalProperties": {"type": "string", "minLength": 1, "maxLength": longest},
         "description": "language (BCP 47) -> text, e.g. {\"id\": \"...\", \"en\": \"...\"}"}]}


TEXTS_OUT = {"type": "object", "additionalProperties": {"type": "string"},
             "description": "language -> text, Indonesian first"}
NEW_ALERT = {
    "title": "NewServiceAlert",
    "type": "object",
    "required": ["header", "description"],
    "additionalProperties": False,
    "properties": {
        "header": texts_in(MAX_HEADER), "description": texts_in(MAX_DESCRIPTION),
        "cause": {"enum": list(CAUSES), "default": DEFAULT_CAUSE},
        "effect": {"enum": list(EFFECTS), "default": DEFAULT_EFFECT},
        "route_ids": {**IDS, "description": "routes of the imported network"},
        "stop_ids": {**IDS, "description": "stops of the imported network; with no "
                                           "route and no stop, the alert is about the "
                                           "whole network"},
        "start": {**INSTANT_IN, "description": "default: now. " + INSTANT_TEXT},
        "end": {**INSTANT_IN, "description": "after start and after now; none: until it "
                                             "is ended. " + INSTANT_TEXT},
        "reference": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$",
                      "description": "the caller's key: the same request again makes no "
                                     "second alert"}},
}
ALERT = {
    "title": "ServiceAlert",
    "type": "object",
    "required": ["alert_id", "header", "description", "cause", "effect", "route_ids",
                 "stop_ids", "network_wide", "start", "end", "state", "created_at",
                 "created_by", "ended_at", "ended_by"],
    "properties": {
        "alert_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "header": TEXTS_OUT, "description": TEXTS_OUT,
        "cause": {"enum": list(CAUSES)}, "effect": {"enum": list(EFFECTS)},
        "route_ids": {"type": "array", "items": {"type": "string"}},
        "stop_ids": {"type": "array", "items": {"type": "string"}},
        "network_wide": {"type": "boolean",
                         "description": "no route and no stop named: the whole network"},
        "start": INSTANT_OUT, "end": {**INSTANT_OUT, "type": ["string", "null"]},
        "state": {"enum": list(STATES),
                  "description": "`upcoming` before its start, `active`, then `ended` "
                                 "(by operations) or `expired` (its end passed)"},
        "created_at": INSTANT_OUT, "created_by": {"type": "string"},
        "ended_at": {**INSTANT_OUT, "type": ["string", "null"]},
        "ended_by": {"type": ["string", "null"]}},
}
ALERTS = {"title": "ServiceAlerts", "type": "object", "required": ["alerts"],
          "properties": {"alerts": {"type": "array", "items": ALERT}}}
FEED_JSON = {"title": "AlertsFeedMessage", "type": "object", "required": ["header"],
             "description": "the GTFS-Realtime FeedMessage in protobuf's JSON mapping"}


class Refused(HTTPException):
    """A refused request, shown in the gateway's one error format: its code is the
    exception's name, as the gateway renders Werkzeug's errors."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.code = status
        self.refusal = code

    @property
    def name(self) -> str:
        return self.refusal.replace("_", " ")


@dataclass(frozen=True)
class AlertsDeps:
    """What the alerts' endpoints need, handed in by the wiring."""

    sessions: Sessions
    fingerprints: Fingerprints  # the audit trail's key
    actor: Callable[[], Actor]  # who is asking (the token's holder), for the audit trail
    require: Callable[..., Decorator[Any]]  # the gateway's token check, `require(*roles)`
    operation: Callable[..., Decorator[Any]]  # declares a view in the OpenAPI description
    # The request's body as a JSON object (the gateway's strict reading: a key given
    # twice is refused); without it, Flask's.
    json_body: Callable[[], dict[str, Any]] | None = None
    clock: Callable[[], int] | None = None  # epoch ms; for tests


def alert_json(a: Alert, now_ms: int) -> dict[str, Any]:
    """An alert as the API shows it, its state judged at `now_ms`."""
    return {"alert_id": a.alert_id, "header": dict(a.header),
            "description": dict(a.description), "cause": a.cause, "effect": a.effect,
            "route_ids": list(a.route_ids), "stop_ids": list(a.stop_ids),
            "network_wide": a.network_wide, "start": iso_z(a.start_ms),
            "end": None if a.end_ms is None else iso_z(a.end_ms),
            "state": a.state(now_ms), "created_at": iso_z(a.created_ms),
            "created_by": a.created_by,
            "ended_at": None if a.ended_ms is None else iso_z(a.ended_ms),
            "ended_by": a.ended_by}


def _flask_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise Refused(400, "malformed_json", "the body must be a JSON object")
    return body


def _flag(name: str) -> bool:
    raw = request.args.get(name, "0")
    if raw not in ("0", "1"):
        raise Refused(400, f"bad_{name}", f"{name} must be 1 or 0")
    return raw == "1"


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Refused(400, "bad_limit", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def alerts_blueprint(deps: AlertsDeps) -> Blueprint:
    """The alerts' endpoints."""
    bp = Blueprint("alerts", __name__)
    require, operation = deps.require, deps.operation
    office = (AlertOffice(deps.sessions, deps.fingerprints) if deps.clock is None
              else AlertOffice(deps.sessions, deps.fingerprints, deps.clock))
    body_of = deps.json_body or _flask_body

    @bp.post("/api/v1/alerts")
    @operation("Tell riders of a disruption: a service alert", tag=TAG, body=NEW_ALERT,
               responses={200: {JSON: ALERT}, 201: {JSON: ALERT}}, errors=(409, 422),
               description="201 with the alert made. With a `reference` given before "
                           "with the same alert: 200 and that alert; with another: 409 "
                           "`reference_conflict`. Refused with a 422 naming the field: "
                           "`unknown_field`, `bad_header`, `bad_description` (Indonesian "
                           "text missing, too long, a header on more than one line), "
                           "`bad_cause`, `bad_effect`, `bad_route_ids`, `bad_stop_ids`, "
                           "`unknown_routes` / `unknown_stops` (not in the imported "
                           "network; the message names them), `bad_start`, `bad_end`, "
                           "`bad_period` (end not after start), `end_passed`, "
                           "`bad_reference`, `no_network` (no network imported for an "
                           "alert about all of it). Recorded in the audit trail "
                           "(`alert.created`).")
    @require("ops")
    def create() -> tuple[Response, int]:
        body = body_of()
        try:
            alert, made = office.create(body, deps.actor())
        except AlertConflict as exc:
            raise Refused(409, exc.code, exc.message) from None
        except AlertError as exc:
            raise Refused(422, exc.code, exc.message) from None
        return jsonify(alert_json(alert, office.clock())), 201 if made else 200

    @bp.get("/api/v1/alerts")
    @operation("The service alerts", tag=TAG,
               query={"all": {"enum": ["0", "1"],
                              "description": "1: every alert, ended and expired too, "
                                             "newest first"},
                      "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                "description": f"with all=1, at most this many (default "
                                               f"{DEFAULT_LIMIT})"}},
               responses={200: {JSON: ALERTS}}, errors=(400,),
               description="The alerts active and upcoming, soonest first; with `all=1` "
                           "every alert on record, newest first.")
    @require("ops")
    def listed() -> Response:
        everything = _flag("all")
        alerts = office.listed(everything, _limit())
        now = office.clock()
        return jsonify({"alerts": [alert_json(a, now) for a in alerts]})

    @bp.delete("/api/v1/alerts/<alert_id>")
    @operation("End a service alert now", tag=TAG,
               path={"alert_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
               responses={200: {JSON: ALERT}}, errors=(404,),
               description="The alert stays on record, `ended` (with `ended_at` and "
                           "`ended_by`), and leaves the feed and the riders' page at "
                           "once. One ended or expired already is answered as it is. "
                           "Recorded in the audit trail (`alert.ended`).")
    @require("ops")
    def end(alert_id: str) -> Response:
        try:
            alert = office.end(alert_id, deps.actor())
        except AlertNotFound:
            abort(404, f"no alert {alert_id[:40]}")
        return jsonify(alert_json(alert, office.clock()))

    @bp.get("/gtfs-rt/alerts")
    @operation("GTFS-Realtime service alerts", tag=TAG,
               query={"format": {"enum": list(FEED_FORMATS),
                                 "description": "`json` for people; protobuf by default"}},
               responses={200: {PROTOBUF: {}, JSON: FEED_JSON}}, errors=(400,),
               description="A GTFS-Realtime 2.0 FeedMessage (FULL_DATASET) of the alerts "
                           "active now: active period, informed entities (the routes "
                           "and stops named; the agencies for an alert about the whole "
                           "network), cause, effect, and header and description texts "
                           "with their languages, Indonesian first.")
    def feed() -> Response:
        wanted = request.args.get("format", "protobuf")
        if wanted not in FEED_FORMATS:
            abort(400, f"format must be one of {', '.join(FEED_FORMATS)}")
        message = office.feed()
        if wanted == "json":
            return jsonify(MessageToDict(message))
        return Response(message.SerializeToString(), mimetype=PROTOBUF)

    return bp
