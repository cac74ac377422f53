"""Disputes (contract section 7): riders open and follow theirs; ops and finance list
them as of any time, read one with its evidence, and answer it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from fare_gateway.cards import CardError
from fare_gateway.http.auth import current_actor, require
from fare_gateway.http.errors import ApiError
from fare_gateway.http.inputs import json_object
from fare_gateway.http.operations import CARD_TOKEN, MONEY, Schema, json_content, operation
from fare_gateway.riders import explain
from fare_gateway.riders.dispute_office import TAP_ID, DisputeOffice, auto_answer
from fare_gateway.riders.disputes import (
    AS_OF,
    AS_OF_PATTERN,
    AUTO,
    CATEGORIES,
    DATE_PATTERN,
    DECISIONS,
    MAX_AGE_DAYS,
    MAX_MESSAGE,
    MAX_PENDING,
    STATES,
    DisputeConflict,
    DisputeError,
    DisputeNotFound,
    DisputeRecord,
    NotAllowed,
    dispute_json,
)
from fare_gateway.riders.times import parse_instant
from fare_gateway.tokens import RIDER
from ledger.services import CardNotFound

TAG = "disputes"
MAX_ID = 2**63 - 1
INSTANT: Schema = {"type": "string", "format": "date-time",
                   "description": "ISO-8601 UTC, e.g. 2026-12-01T08:15:02.123Z"}
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE,
                "pattern": r"\S"}
DISPUTE: Schema = {
    "title": "Dispute",
    "type": "object",
    "required": ["dispute_id", "card", "tap_id", "service_date", "category", "message",
                 "status", "created_at", "escalate_at", "due_at", "answered_at", "decision",
                 "amount", "answer"],
    "properties": {
        "dispute_id": {"type": "integer"},
        "card": CARD_TOKEN,
        "tap_id": {"type": ["string", "null"], "description": "the tap in question; null "
                                                              "for a service day"},
        "service_date": {"type": "string", "format": "date",
                         "description": "the tap's service day, or the day in question"},
        "category": {"enum": list(CATEGORIES)},
        "message": {"type": "string"},
        "status": {"enum": list(STATES), "description": "as of the request's time (staff: "
                                                         "its `as_of`)"},
        "created_at": INSTANT,
        "escalate_at": {**INSTANT, "description": "created_at + 24 h"},
        "due_at": {**INSTANT, "description": "created_at + 48 h"},
        "answered_at": {"type": ["string", "null"], "format": "date-time"},
        "decision": {"enum": [*DECISIONS, None]},
        "amount": {"type": ["integer", "null"],
                   "description": "what the answer refunded (0 for a rejection)"},
        "answer": {"type": ["string", "null"]}},
}
DISPUTES: Schema = {
    "title": "Disputes",
    "type": "object",
    "required": ["disputes"],
    "properties": {"disputes": {"type": "array", "items": DISPUTE}},
}
NULLABLE_OBJECT: Schema = {"type": ["object", "null"]}
EVIDENCE: Schema = {
    "title": "DisputeEvidence",
    "type": "object",
    "required": ["tap", "receipt", "positions", "validator", "explanation"],
    "properties": {
        "tap": {**NULLABLE_OBJECT, "description": "the signed tap as received "
                "(`message`, `canonical`) and whether its signature still verifies with "
                "the device's key (`signature_valid`, `signed_with`)"},
        "receipt": {**NULLABLE_OBJECT, "description": "what the gateway answered, as "
                    "recorded; not signed again"},
        "positions": {"type": ["array", "null"], "items": {"type": "object"},
                      "description": "the vehicle's positions 10 minutes either side"},
        "validator": {**NULLABLE_OBJECT, "description": "the device at the tap's time: "
                      "its vehicle then, its status, its taps just before and after"},
        "explanation": {"type": "string"}},
}
DISPUTE_WITH_EVIDENCE: Schema = {
    "title": "DisputeWithEvidence",
    "allOf": [DISPUTE, {"type": "object", "required": ["evidence"],
                        "properties": {"evidence": EVIDENCE}}],
}
OPEN_REQUEST: Schema = {
    "title": "OpenDispute",
    "type": "object",
    "required": ["card", "category", "message"],
    "properties": {
        "card": CARD_TOKEN,
        "tap_id": {"type": "string", "pattern": f"^{TAP_ID.pattern}$",
                   "description": "the tap in question, as the statement shows it"},
        "date": {"type": "string", "pattern": f"^{DATE_PATTERN}$",
                 "description": "a service day in question (YYYY-MM-DD) when no tap is "
                                "named; neither: today's. Not before the card was issued "
                                f"nor more than {MAX_AGE_DAYS} days ago"},
        "category": {"enum": list(CATEGORIES)},
        "message": TEXT},
}
ANSWER_REQUEST: Schema = {
    "title": "AnswerDispute",
    "type": "object",
    "required": ["decision", "message"],
    "properties": {
        "decision": {"enum": list(DECISIONS)},
        "amount": {**MONEY, "type": ["integer", "null"], "minimum": 0,
                   "description": "a refund's amount; a rejection names none (or 0)"},
        "message": TEXT},
    "anyOf": [{"properties": {"decision": {"const": "refund"},
                              "amount": {"type": "integer", "minimum": 1}},
               "required": ["amount"]},
              {"properties": {"decision": {"const": "reject"},
                              "amount": {"enum": [None, 0]}}}],
}
DISPUTE_ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def language() -> str:
    """The request's language: Indonesian unless it asks for English."""
    return explain.language(request.headers.get("Accept-Language"))


@contextmanager
def refusals() -> Iterator[None]:
    """Turn the dispute office's errors into the API's."""
    try:
        yield
    except (DisputeError, CardError) as exc:
        raise ApiError(422, exc.code, str(exc)) from None
    except (DisputeNotFound, CardNotFound) as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except DisputeConflict as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    except NotAllowed as exc:
        raise ApiError(403, "forbidden", str(exc)) from None


def disputes_blueprint(office: DisputeOffice) -> Blueprint:
    """The dispute endpoints, over the dispute office."""
    bp = Blueprint("disputes", __name__)

    def shown(record: DisputeRecord, as_of: int) -> dict[str, Any]:
        answer = None
        if record.answered_by == AUTO and record.amount:
            answer = auto_answer(record.amount, language())
        return dispute_json(record, as_of, answer)

    def account_id() -> int:
        account = g.principal.account_id
        if account is None:  # a rider token is always made for an account
            raise ApiError(403, "forbidden", "this token belongs to no rider account")
        return int(account)

    @bp.post("/api/v1/rider/disputes")
    @operation("Open a dispute", tag=TAG, body=OPEN_REQUEST,
               responses={201: json_content(DISPUTE)}, errors=(404, 409, 422),
               description="On a tap of one of the account's cards, or on one of its "
                           "service days (`date`; with neither, today's). Another account's "
                           "card, or a tap that is not the card's, is a 404; a second "
                           "dispute on a tap (or a day) while one is unanswered, a 409 "
                           "(`dispute_pending`), and so is one more while the account holds "
                           f"{MAX_PENDING} unanswered (`too_many_disputes`). A day (named, or "
                           f"the tap's) more than {MAX_AGE_DAYS} days ago, or a named day "
                           "before the card was issued, is a 422 (`bad_date`). A "
                           "`charged_twice` dispute the ledger proves (it holds more for the "
                           "tap than the fare rules charge) is refunded at once and comes "
                           "back answered, unless an earlier answer refunded anything for "
                           "that tap or day: then a person answers it.")
    @require(RIDER)
    def open_dispute() -> tuple[Response, int]:
        body = json_object()
        with refusals():
            record = office.open(account_id(), body.get("card"), body.get("tap_id"),
                                 body.get("date"), body.get("category"), body.get("message"),
                                 current_actor())
        return jsonify(shown(record, office.clock())), 201

    @bp.get("/api/v1/rider/disputes")
    @operation("The account's disputes", tag=TAG, responses={200: json_content(DISPUTES)},
               description="Newest first, each with its answer once given.")
    @require(RIDER)
    def own_disputes() -> Response:
        now = office.clock()
        return jsonify({"disputes": [shown(r, now) for r in office.of_account(account_id())]})

    @bp.get("/api/v1/disputes")
    @operation("Disputes in a state as of a time", tag=TAG,
               query={"status": {"enum": list(STATES)},
                      "as_of": {"type": "string", "pattern": AS_OF_PATTERN,
                                "description": "epoch milliseconds or an ISO-8601 instant "
                                               "(`Z` or an offset); default now"}},
               responses={200: json_content(DISPUTES)}, errors=(400,),
               description="Those opened by `as_of` that were in `status` then, oldest "
                           "first, each with its status as of then; without `status`, every "
                           "one opened by then.")
    @require("ops", "finance")
    def in_state() -> Response:
        status = request.args.get("status")
        if status is not None and status not in STATES:
            raise ApiError(400, "bad_status", f"status must be one of {', '.join(STATES)}")
        raw = request.args.get("as_of")
        as_of = office.clock() if raw is None else (
            parse_instant(raw) if AS_OF.fullmatch(raw) else None)
        if as_of is None:
            raise ApiError(400, "bad_as_of", "as_of must be epoch milliseconds or an "
                                             "ISO-8601 instant with Z or an offset")
        return jsonify({"disputes": [shown(r, as_of) for r in office.in_state(status, as_of)]})

    @bp.get("/api/v1/disputes/<int:dispute_id>")
    @operation("A dispute with its evidence", tag=TAG, path={"dispute_id": DISPUTE_ID},
               responses={200: json_content(DISPUTE_WITH_EVIDENCE)},
               description="The explanation is in the request's `Accept-Language` "
                           "(Indonesian by default, or English).")
    @require("ops", "finance")
    def show(dispute_id: int) -> Response:
        with refusals():
            if dispute_id > MAX_ID:
                raise DisputeNotFound(f"no dispute {dispute_id}")
            found = office.show(dispute_id, language())
        return jsonify({**shown(found.record, office.clock()), "evidence": found.evidence})

    @bp.post("/api/v1/disputes/<int:dispute_id>/answer")
    @operation("Answer a dispute", tag=TAG, path={"dispute_id": DISPUTE_ID},
               body=ANSWER_REQUEST, responses={200: json_content(DISPUTE)},
               errors=(403, 409, 422),
               description="Once: a second answer is a 409. Ops may only reject (a refund "
                           "by ops is a 403); finance refunds or rejects. A refund posts one "
                           "ledger entry crediting the card, of more than 0 and at most "
                           "what the card was charged for the tap (or the day) less what "
                           "earlier answers refunded for it: beyond, a 422 naming the bound.")
    @require("ops", "finance")
    def answer(dispute_id: int) -> Response:
        body = json_object()
        with refusals():
            if dispute_id > MAX_ID:
                raise DisputeNotFound(f"no dispute {dispute_id}")
            record = office.answer(dispute_id, g.principal.role, str(g.principal.token_id),
                                   body.get("decision"), body.get("amount"),
                                   body.get("message"), current_actor())
        return jsonify(shown(record, office.clock()))

    return bp
