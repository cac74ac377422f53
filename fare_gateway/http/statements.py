"""A rider's statement of one of their cards (contract section 7)."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, g, jsonify, request

from fare_gateway.fares.policy import FarePolicy
from fare_gateway.http.auth import require
from fare_gateway.http.errors import ApiError
from fare_gateway.http.inputs import card_in_path, known_card
from fare_gateway.http.operations import CARD_TOKEN, MONEY, Schema, json_content, operation
from fare_gateway.http.settlements import DAY
from fare_gateway.riders.explain import LANGUAGES, language
from fare_gateway.riders.statement import MAX_DAYS, StatementError, Statements
from fare_gateway.tokens import RIDER
from ledger.adapters.db import Sessions
from ledger.services import CardNotFound
from ledger.settlement import SettlementError, parse_day

NULLABLE_TEXT: Schema = {"type": ["string", "null"]}
ITEM: Schema = {
    "title": "StatementItem",
    "type": "object",
    "required": ["ts", "type", "amount", "balance_after", "tap_id", "route_id", "vehicle_id",
                 "reason", "explanation", "stop_id", "stop_name", "service_date"],
    "properties": {
        "ts": {"type": "string", "format": "date-time",
               "description": "a tap's own time, any other line's posting time (ISO-8601 "
                              "UTC)"},
        "type": {"enum": ["tap", "denied", "correction", "topup", "refund", "transfer_in",
                          "transfer_out", "adjustment"]},
        "amount": {**MONEY, "description": "signed: a fare is negative, 0 for a free ride "
                                           "or a denied tap"},
        "balance_after": MONEY,
        "tap_id": NULLABLE_TEXT, "route_id": NULLABLE_TEXT, "vehicle_id": NULLABLE_TEXT,
        "reason": {**NULLABLE_TEXT, "description": "why the reader refused a denied tap"},
        "explanation": {"type": "string", "description": "one sentence, in the language "
                                                         "of `Content-Language`"},
        "stop_id": NULLABLE_TEXT,
        "stop_name": {**NULLABLE_TEXT, "description": "the stop nearest the tap, within "
                                                      "150 m, where the network knows one"},
        "service_date": {"type": "string", "format": "date",
                         "description": "the date the window selects the line by"}},
}
STATEMENT: Schema = {
    "title": "Statement",
    "type": "object",
    "required": ["card", "currency", "from", "to", "opening_balance", "closing_balance",
                 "items"],
    "properties": {
        "card": CARD_TOKEN, "currency": {"type": "string"},
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "opening_balance": MONEY, "closing_balance": MONEY,
        "items": {"type": "array", "items": ITEM}},
}
SERVICE_DATE: Schema = {**DAY, "description": "a service date, YYYY-MM-DD"}


def _day(name: str) -> date | None:
    """The query's date `name`, if given; a malformed one is a 400 `bad_date`."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return parse_day(raw)
    except SettlementError as exc:
        raise ApiError(400, "bad_date", f"{name}: {exc}") from None


def statements_blueprint(sessions: Sessions, policy: FarePolicy) -> Blueprint:
    """The rider's statement endpoint, over a statement service of its own."""
    statements = Statements(sessions, policy)
    bp = Blueprint("statements", __name__)

    @bp.get("/api/v1/rider/cards/<card>/statement")
    @operation("A card's statement", tag="riders", path={"card": CARD_TOKEN},
               query={"from": SERVICE_DATE, "to": SERVICE_DATE},
               responses={200: json_content(STATEMENT)}, errors=(400, 404),
               description="Every tap and every movement of the card's balance, oldest "
                           "first, with the running balance and one sentence saying why, "
                           "for service dates `from`..`to` (default: the 30 days up to "
                           f"today; at most {MAX_DAYS} days). The sentences are in the "
                           f"request's `Accept-Language` ({' or '.join(LANGUAGES)}; "
                           "Indonesian by default), named by `Content-Language`. A card "
                           "not linked to the caller's account is a 404.")
    @require(RIDER)
    def statement(card: str) -> Response:
        card = card_in_path(card)
        first, last = _day("from"), _day("to")
        lang = language(request.headers.get("Accept-Language"))
        account_id = g.principal.account_id
        try:
            with known_card(card):
                if account_id is None:  # a rider token always names its account
                    raise CardNotFound(f"no card {card} on this account")
                found = statements.of_card(card, first, last, lang, account_id=account_id)
        except StatementError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        resp = jsonify(found.as_json())
        resp.headers["Content-Language"] = lang
        resp.vary.add("Accept-Language")
        return resp

    return bp
