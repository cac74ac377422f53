"""What the command center acts on: `GET /api/v1/exceptions` and `GET /api/v1/ops/alerts`
(contract section 8)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from fare_gateway.http.auth import require
from fare_gateway.http.errors import ApiError
from fare_gateway.http.inputs import INSTANT, instant_arg, whole_arg
from fare_gateway.http.operations import Schema, json_content, operation
from fare_gateway.ops import OpsOffice
from fare_gateway.ops.alerts import KINDS, kinds_of
from fare_gateway.ops.exceptions import (
    CURSOR_PATTERN,
    DAY_MS,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    QUARANTINE,
    REASON,
    TAP,
    parse_cursor,
)

TAG = "operations"
# The reasons the gateway gives today (docs/operations.md says what each means); the
# filter takes any code of their form.
REASONS = ("malformed", "too_large", "bad_version", "missing_field", "wrong_type",
           "out_of_range", "bad_value", "topic_mismatch", "unknown_device",
           "inactive_device", "bad_signature", "conflict", "internal_error", "unknown_card",
           "wrong_vehicle", "ts_out_of_range")
NULLABLE_ID: Schema = {"type": ["string", "null"]}
EXCEPTION: Schema = {
    "title": "OpsException",
    "type": "object",
    "required": ["ts", "device_id", "reason", "tap_id", "card", "tap_ts", "source", "topic",
                 "detail", "vehicle_id", "route_id"],
    "properties": {
        "ts": {"type": "integer", "description": "when the gateway received it (epoch ms)"},
        "device_id": {**NULLABLE_ID, "description": "the device it came from (for a "
                                                    "message on another device's topic, "
                                                    "the topic's); null when unknown"},
        "reason": {"type": "string", "examples": list(REASONS),
                   "description": "a stable code: why it was refused or not charged"},
        "tap_id": {**NULLABLE_ID, "description": "`{device_id}:{seq}`, where known"},
        "card": {"type": ["string", "null"], "pattern": "^[0-9A-F]{8,32}$",
                 "description": "the tap's card; for a quarantined message the card its "
                                "kept bytes name, when they are JSON with a card token"},
        "tap_ts": {"type": ["integer", "null"],
                   "description": "the tap's own time (epoch ms), where known"},
        "source": {"enum": [QUARANTINE, TAP],
                   "description": "`quarantine`: a message refused and kept for inspection; "
                                  "`tap`: a tap in the inbox not charged (an unknown card, "
                                  "or a rule of contract section 10 broken)"},
        "topic": {**NULLABLE_ID, "description": "the MQTT topic of a quarantined message"},
        "detail": {"type": "string", "description": "what was wrong, for people"},
        "vehicle_id": {**NULLABLE_ID, "description": "the vehicle the tap names, where "
                                                     "known"},
        "route_id": {**NULLABLE_ID, "description": "the route the tap names, where known"}},
}
EXCEPTIONS: Schema = {
    "title": "OpsExceptions",
    "type": "object",
    "required": ["exceptions", "counts", "since", "next"],
    "properties": {
        "exceptions": {"type": "array", "items": EXCEPTION},
        "counts": {"type": "object", "additionalProperties": {"type": "integer",
                                                              "minimum": 1},
                   "description": "reason -> how many exceptions of it were received from "
                                  "`since` on: all of them, whatever `reason` and `before` "
                                  "chose, most frequent first"},
        "since": {"type": "integer", "description": "the start of the period (epoch ms)"},
        "next": {"type": ["string", "null"],
                 "description": "pass it as `before` for the next page; null: no more"}},
}
ALERT: Schema = {
    "title": "OpsAlert",
    "type": "object",
    "required": ["kind", "subject", "since", "detail", "detail_id", "data"],
    "properties": {
        "kind": {"enum": list(KINDS)},
        "subject": {"type": "string", "description": "the vehicle id, the device id or the "
                                                     "dispute id it is about"},
        "since": {"type": "integer", "description": "when the condition began (epoch ms)"},
        "detail": {"type": "string", "description": "one sentence in English"},
        "detail_id": {"type": "string", "description": "the same in Indonesian"},
        "data": {"type": "object", "description": "the figures behind the sentence, for a "
                                                  "page to word its own way"}},
}
ALERTS: Schema = {
    "title": "OpsAlerts",
    "type": "object",
    "required": ["alerts", "counts"],
    "properties": {
        "alerts": {"type": "array", "items": ALERT},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                   "description": "kind -> how many alerts of it now (every kind named)"}},
}


MAX_BACK_MS = 7 * DAY_MS  # how far back `since` may reach
MAX_PER_KIND = 100  # alerts listed of each kind; `counts` counts them all


def ops_blueprint(office: OpsOffice) -> Blueprint:
    """The exceptions and the operators' alerts."""
    bp = Blueprint("ops", __name__)

    @bp.get("/api/v1/exceptions")
    @operation("Refused messages and taps not charged, newest first", tag=TAG,
               query={"since": {**INSTANT, "description": "from this instant on (default: "
                                                          "the last 24 hours; at most 7 "
                                                          "days back: an earlier one is "
                                                          "taken as 7 days ago); "
                                                          + INSTANT["description"]},
                      "reason": {"type": "string", "pattern": f"^{REASON.pattern}$",
                                 "examples": list(REASONS),
                                 "description": "only exceptions of this reason"},
                      "before": {"type": "string", "pattern": CURSOR_PATTERN,
                                 "description": "the `next` of the page before"},
                      "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                "description": f"at most this many (default "
                                               f"{DEFAULT_LIMIT})"}},
               responses={200: json_content(EXCEPTIONS)}, errors=(400,),
               description="The messages the gateway refused and kept in its quarantine "
                           "(malformed, from an unknown or revoked device, badly signed, "
                           "a conflicting copy of a tap, ...) and the taps it could not "
                           "charge: of an unknown card, or breaking a rule of contract "
                           "section 10 (`wrong_vehicle`, `ts_out_of_range`; listed once, "
                           "though the quarantine keeps them too). Newest first by when "
                           "the gateway received them; `counts` counts every reason from "
                           "`since` on, not only this page's or the one `reason` asks for. "
                           "A malformed `since` is a 400 `bad_since`, `reason` "
                           "`bad_reason`, `before` `bad_before`, `limit` `bad_limit`.")
    @require("ops")
    def exceptions() -> Response:
        now = office.clock()
        since = instant_arg("since", "bad_since")
        # At most a week back: the counts read every exception since `since`, and a
        # flood of refused messages must not make each of the maps' polls read months.
        since = now - DAY_MS if since is None else max(since, now - MAX_BACK_MS)
        reason = request.args.get("reason")
        if reason is not None and not REASON.fullmatch(reason):
            raise ApiError(400, "bad_reason", "reason must be a reason code: lower-case "
                                              "letters, digits and _, up to 64")
        raw = request.args.get("before")
        before = None if raw is None else parse_cursor(raw)
        if raw is not None and before is None:
            raise ApiError(400, "bad_before", "before must be the next of an earlier page")
        limit = whole_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        page = office.exceptions(since, reason, before, limit)
        return jsonify({"exceptions": [e.as_json() for e in page.exceptions],
                        "counts": page.counts, "since": since,
                        "next": None if page.next is None else page.next.text()})

    @bp.get("/api/v1/ops/alerts")
    @operation("What needs an operator now", tag=TAG,
               responses={200: json_content(ALERTS)},
               description="Vehicles without a position for 90 s to 10 minutes "
                           "(`vehicle_stale`), active validators whose status says online "
                           "but that have not been heard from (`validator_silent`) or "
                           "whose spool keeps growing (`spool_growing`), disputes "
                           "unanswered for 24 hours (`dispute_escalated`) and past their "
                           "48-hour deadline (`dispute_overdue`), and two buses of a route's "
                           "direction closer than its bunched threshold (`bunching`, "
                           "`/api/v1/routes/{route_id}/headways`). `since` is when the "
                           "condition began; newest "
                           "first, at most 100 of each kind (`counts` counts them all). "
                           "Without Redis only the disputes' alerts are told.")
    @require("ops")
    def alerts() -> Response:
        found = office.alerts()
        shown: dict[str, int] = {}
        listed = []
        for a in found:  # newest first: the newest of each kind are the ones listed
            shown[a.kind] = shown.get(a.kind, 0) + 1
            if shown[a.kind] <= MAX_PER_KIND:
                listed.append(a.as_json())
        return jsonify({"alerts": listed, "counts": kinds_of(found)})

    return bp

