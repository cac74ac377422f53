"""The finance back office over HTTP (contract section 9): the float, the detail behind
the settlement's lines, card search and the staff statement, adjustments under four
eyes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from flask import Blueprint, Response, jsonify, request

from fare_gateway.finance import adjustments as rules
from fare_gateway.finance.detail import HEADER, parse_filter
from fare_gateway.finance.errors import (
    BadQuery,
    BadValue,
    Conflict,
    FinanceError,
    NotFound,
    SameHolder,
    UnnamedHolder,
)
from fare_gateway.finance.office import FinanceOffice
from fare_gateway.finance.search import MAX_EMAIL, MAX_RESULTS, MAX_TOKEN, MIN_PREFIX
from fare_gateway.finance.text import has_control
from fare_gateway.http.auth import current_actor, require
from fare_gateway.http.cards import CARD, card_json
from fare_gateway.http.errors import ApiError
from fare_gateway.http.inputs import card_in_path, json_object, known_card
from fare_gateway.http.operations import (
    CARD_TOKEN,
    IDENTIFIER,
    MONEY,
    Schema,
    json_content,
    operation,
)
from fare_gateway.http.settlements import DAY
from fare_gateway.http.statements import ITEM, SERVICE_DATE, STATEMENT
from fare_gateway.riders.explain import LANGUAGES, language
from fare_gateway.riders.statement import MAX_DAYS, StatementError
from ledger.settlement import SettlementError, parse_day

MAX_ID = 2**63 - 1  # a BIGINT key: a larger one names nothing
STATUS_OF = {BadQuery: 400, BadValue: 422, NotFound: 404, Conflict: 409, SameHolder: 403,
             UnnamedHolder: 403}

FLOAT: Schema = {
    "title": "Float",
    "type": "object",
    "required": ["date", "currency", "status", "opening", "topups", "fares", "corrections",
                 "refunds", "transfers", "adjustments", "closing", "cards_total",
                 "business_day"],
    "properties": {
        "date": {"type": "string", "format": "date"},
        "currency": {"type": "string"},
        "status": {"enum": ["open", "closed"],
                   "description": "open while entries may still be posted in the day"},
        "opening": {**MONEY, "description": "what cards held when the day began"},
        "topups": {**MONEY, "description": "the day's top-ups (positive)"},
        "fares": {**MONEY, "description": "the day's fares (negative)"},
        "corrections": {**MONEY, "description": "the day's corrections, as they moved cards"},
        "refunds": {**MONEY, "description": "the day's refunds to riders (positive)"},
        "transfers": {**MONEY, "description": "balances moved between cards (0 in sum)"},
        "adjustments": {**MONEY, "description": "approved adjustments, signed"},
        "closing": {**MONEY, "description": "opening + the movements"},
        "cards_total": {**MONEY, "description": "the sum of every card's balance at the "
                                                "day's end, from the balances: equals "
                                                "`closing`"},
        "business_day": {"type": "object", "required": ["from_ms", "to_ms"],
                         "properties": {"from_ms": {"type": "integer"},
                                        "to_ms": {"type": "integer"}}}},
}
DETAIL_CSV: Schema = {"type": "string", "description": HEADER + "; one line per entry, "
                      "keyed as the settlement's lines are, a text field beginning with "
                      "`=`, `+`, `-` or `@` written with a leading `'`"}
CARD_QUERY: Schema = {
    "type": "string",
    "anyOf": [{"pattern": f"^[0-9A-Fa-f]{{{MIN_PREFIX},{MAX_TOKEN}}}$"},
              {"pattern": "@", "maxLength": MAX_EMAIL}],
    "description": f"a card token prefix ({MIN_PREFIX}-{MAX_TOKEN} hex digits) or a rider's "
                   "e-mail (exact, any case)",
}
FOUND_CARDS: Schema = {
    "title": "FoundCards",
    "type": "object",
    "required": ["cards", "truncated"],
    "properties": {"cards": {"type": "array", "items": CARD, "maxItems": MAX_RESULTS},
                   "truncated": {"type": "boolean",
                                 "description": f"more than {MAX_RESULTS} cards matched"}},
}
STAFF_ITEM: Schema = {
    "title": "StaffStatementItem",
    "allOf": [ITEM, {"type": "object", "required": ["entry_id", "reference"],
                     "properties": {
                         "entry_id": {"type": ["integer", "null"],
                                      "description": "the ledger entry behind the line"},
                         "reference": {"type": ["string", "null"],
                                       "description": "that entry's reference: a top-up's "
                                                      "or an adjustment's, `dispute:N`, "
                                                      "the replacement card"}}}],
}
# The rider's statement, its items naming their entries.
STAFF_STATEMENT: Schema = {
    **STATEMENT, "title": "StaffStatement",
    "properties": {**STATEMENT["properties"],
                   "items": {"type": "array", "items": STAFF_ITEM}},
}
REFERENCE: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,64}$",
                     "description": "names the adjustment for good: the same reference "
                                    "again asks for nothing more"}
HOLDER: Schema = {"type": "object", "required": ["token_id", "name"],
                  "properties": {"token_id": {"type": "string"}, "name": {"type": "string"}}}
ADJUSTMENT_REQUEST: Schema = {
    "title": "AdjustmentRequest",
    "type": "object",
    "required": ["card", "amount", "reason", "reference"],
    "properties": {
        "card": CARD_TOKEN,
        "amount": {"type": "integer", "minimum": -rules.MAX_AMOUNT,
                   "maximum": rules.MAX_AMOUNT, "not": {"const": 0},
                   "description": "what the card gains, whole rupiah; negative: a debit"},
        "reason": {"type": "string", "minLength": 1, "maxLength": rules.MAX_REASON,
                   "pattern": r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*\S"
                              r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$",
                   "description": "why, one line of text (no control characters)"},
        "reference": REFERENCE},
}
ADJUSTMENT: Schema = {
    "title": "Adjustment",
    "type": "object",
    "required": ["adjustment_id", "status", "card", "amount", "currency", "reason",
                 "reference", "requested_by", "requested_at", "decided_by", "decided_at",
                 "entry_id"],
    "properties": {
        "adjustment_id": {"type": "integer", "minimum": 1},
        "status": {"enum": list(rules.STATUSES)},
        "card": CARD_TOKEN, "amount": MONEY, "currency": {"type": "string"},
        "reason": {"type": "string"}, "reference": {"type": "string"},
        "requested_by": HOLDER,
        "requested_at": {"type": "string", "format": "date-time"},
        "decided_by": {"anyOf": [HOLDER, {"type": "null"}],
                       "description": "who approved or rejected it"},
        "decided_at": {"type": ["string", "null"], "format": "date-time"},
        "entry_id": {"type": ["integer", "null"],
                     "description": "the ledger entry that posted it"}},
}
ADJUSTMENTS: Schema = {
    "title": "Adjustments",
    "type": "object",
    "required": ["adjustments", "truncated"],
    "properties": {"adjustments": {"type": "array", "items": ADJUSTMENT},
                   "truncated": {"type": "boolean"}},
}
REJECT_REQUEST: Schema = {
    "title": "AdjustmentRejection",
    "type": "object",
    "properties": {"note": {"type": "string", "maxLength": rules.MAX_REASON,
                            "description": "why, for the audit trail"}},
}
ADJUSTMENT_ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


@contextmanager
def refusals() -> Iterator[None]:
    """Turn the finance use cases' refusals into the API's errors."""
    try:
        yield
    except FinanceError as exc:
        raise ApiError(STATUS_OF.get(type(exc), 400), exc.code, str(exc)) from None


def _day(value: str | None, name: str) -> date:
    """A date given in the path or the query; missing or malformed, a 400 `bad_date`."""
    if value is None:
        raise ApiError(400, "bad_date", f"{name} is required (YYYY-MM-DD)")
    try:
        return parse_day(value)
    except SettlementError as exc:
        raise ApiError(400, "bad_date", f"{name}: {exc}") from None


def _optional_day(name: str) -> date | None:
    raw = request.args.get(name)
    return None if raw is None else _day(raw, name)


def _adjustment_id(value: int) -> int:
    if value > MAX_ID:
        raise ApiError(404, "not_found", f"no adjustment {value}")
    return value


def finance_blueprint(office: FinanceOffice) -> Blueprint:
    """The finance endpoints, over the finance office."""
    bp = Blueprint("finance", __name__)
    currency = office.currency

    @bp.get("/api/v1/finance/float/<day>")
    @operation("A business day's float", tag="finance", path={"day": DAY},
               responses={200: json_content(FLOAT)}, errors=(400, 409),
               description="The stored value owed to riders over business day `day`, "
                           "rolled forward: `closing` = `opening` + the movements, each "
                           "signed as it changes what riders hold; `cards_total`, the sum "
                           "of the cards' balances at the day's end, equals it. Read in one "
                           "snapshot. A day that has not begun is a 409 (`day_not_begun`).")
    @require("finance")
    def day_float(day: str) -> Response:
        business_day = _day(day, "date")
        with refusals():
            return jsonify(office.float_of(business_day).as_json())

    @bp.get("/api/v1/finance/taps")
    @operation("The entries behind a day's settlement", tag="finance",
               query={"date": DAY, "route_id": IDENTIFIER, "operator_id": IDENTIFIER},
               required_query=("date",),
               responses={200: {"text/csv": DETAIL_CSV}}, errors=(400, 409),
               description="One CSV line per ledger entry posted in business day `date` "
                           "(required), keyed as the settlement's lines: the sum of "
                           "`amount` over the lines of one (line_type, service_date, "
                           "operator_id, route_id, category) is that settlement line's "
                           "amount. `route_id` and `operator_id` keep the lines with that "
                           "keyed value (so no top-up or transfer). Streamed, in entry "
                           "order. A day that has not begun is a 409 (`day_not_begun`).")
    @require("finance")
    def detail() -> Response:
        business_day = _day(request.args.get("date"), "date")
        with refusals():
            wanted = parse_filter(request.args.get("route_id"),
                                  request.args.get("operator_id"))
            chunks = office.detail(business_day, wanted)
        name = f"entries-{business_day.isoformat()}.csv"
        return Response(chunks, mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @bp.get("/api/v1/cards")
    @operation("Find cards", tag="cards", query={"query": CARD_QUERY}, required_query=("query",),
               responses={200: json_content(FOUND_CARDS)}, errors=(400,),
               description="A query holding `@` finds the cards linked to that rider "
                           "e-mail (exact, in any case); any other, the cards whose token "
                           f"starts with it ({MIN_PREFIX} to {MAX_TOKEN} hex digits, in any "
                           f"case). At most {MAX_RESULTS}, in token order; `truncated` says "
                           "when more matched. A missing or malformed query is a 400.")
    @require("finance")
    def search() -> Response:
        with refusals():
            found = office.search(request.args.get("query"))
        return jsonify({"cards": [card_json(c, currency) for c in found.cards],
                        "truncated": found.truncated})

    @bp.get("/api/v1/cards/<card>/statement")
    @operation("A card's statement, for staff", tag="cards", path={"card": CARD_TOKEN},
               query={"from": SERVICE_DATE, "to": SERVICE_DATE},
               responses={200: json_content(STAFF_STATEMENT)}, errors=(400,),
               description="The rider's statement of any card (contract section 7: service "
                           "dates `from`..`to`, by default the 30 days up to today, at most "
                           f"{MAX_DAYS}; sentences in the request's `Accept-Language`, "
                           f"{' or '.join(LANGUAGES)}), each item also naming its ledger "
                           "entry (`entry_id`) and that entry's `reference` (a top-up's "
                           "payment reference, an adjustment's, `dispute:N`, the "
                           "replacement card).")
    @require("finance")
    def statement(card: str) -> Response:
        card = card_in_path(card)
        first, last = _optional_day("from"), _optional_day("to")
        lang = language(request.headers.get("Accept-Language"))
        try:
            with known_card(card):
                found = office.statement(card, first, last, lang)
        except StatementError as exc:
            raise ApiError(400, exc.code, str(exc)) from None
        resp = jsonify(found.as_json(staff=True))
        resp.headers["Content-Language"] = lang
        resp.vary.add("Accept-Language")
        return resp

    @bp.post("/api/v1/adjustments")
    @operation("Ask for an adjustment of a card's balance", tag="finance",
               body=ADJUSTMENT_REQUEST,
               responses={200: json_content(ADJUSTMENT), 201: json_content(ADJUSTMENT)},
               errors=(403, 404, 409, 422),
               description="201 with the adjustment, `pending`: nothing is posted until "
                           "another finance holder approves it. The same reference again "
                           "with the same card, amount and reason is a 200 with that "
                           "adjustment; with anything else, a 409 (`reference_conflict`). "
                           "An unknown card is a 404; a card lost and replaced a 409 "
                           "(`card_replaced`, naming the card that holds its balance now). "
                           "A token made without a holder's name is a 403 "
                           "(`unnamed_holder`).")
    @require("finance")
    def ask() -> tuple[Response, int]:
        body = json_object()
        with refusals():
            record, created = office.adjustments.ask(
                current_actor(), body.get("card"), body.get("amount"), body.get("reason"),
                body.get("reference"))
        return jsonify(record.as_json(currency)), 201 if created else 200

    @bp.get("/api/v1/adjustments")
    @operation("Adjustments, by state", tag="finance",
               query={"status": {"enum": list(rules.STATUSES)}},
               responses={200: json_content(ADJUSTMENTS)}, errors=(400,),
               description=f"Oldest first, at most {rules.MAX_LISTED} (`truncated` says when "
                           "there are more); `status=pending` is what waits for a second "
                           "holder.")
    @require("finance")
    def listed() -> Response:
        status = request.args.get("status")
        if status is not None and status not in rules.STATUSES:
            raise ApiError(400, "bad_status",
                           f"status must be one of {', '.join(rules.STATUSES)}")
        records, truncated = office.adjustments.listed(status)
        return jsonify({"adjustments": [r.as_json(currency) for r in records],
                        "truncated": truncated})

    @bp.get("/api/v1/adjustments/<int:adjustment_id>")
    @operation("An adjustment", tag="finance", path={"adjustment_id": ADJUSTMENT_ID},
               responses={200: json_content(ADJUSTMENT)})
    @require("finance")
    def show(adjustment_id: int) -> Response:
        with refusals():
            record = office.adjustments.show(_adjustment_id(adjustment_id))
        return jsonify(record.as_json(currency))

    @bp.post("/api/v1/adjustments/<int:adjustment_id>/approve")
    @operation("Approve an adjustment: post it", tag="finance",
               path={"adjustment_id": ADJUSTMENT_ID},
               responses={200: json_content(ADJUSTMENT)}, errors=(403, 409),
               description="By a finance holder other than the one who asked (the same "
                           "token, or a token naming the same holder, is a 403 "
                           "`same_holder`; a token without a name, a 403 "
                           "`unnamed_holder`). The ledger entry is posted once, keyed by the "
                           "reference: approving again, or twice at once, answers the same "
                           "`posted` adjustment. A debit larger than the card's balance is a "
                           "409 (`insufficient_balance`) and the adjustment stays pending; "
                           "a rejected one is a 409 (`already_rejected`); one of a card "
                           "since lost and replaced, a 409 (`card_replaced`); a row that "
                           "does not match its fingerprint, a 409 (`adjustment_tampered`). "
                           "No body is needed.")
    @require("finance")
    def approve(adjustment_id: int) -> Response:
        with refusals():
            record, _ = office.adjustments.approve(current_actor(),
                                                   _adjustment_id(adjustment_id))
        return jsonify(record.as_json(currency))

    @bp.post("/api/v1/adjustments/<int:adjustment_id>/reject")
    @operation("Reject an adjustment", tag="finance", path={"adjustment_id": ADJUSTMENT_ID},
               body=REJECT_REQUEST, body_required=False,
               responses={200: json_content(ADJUSTMENT)}, errors=(403, 409, 422),
               description="By a named finance holder other than the one who asked (else a "
                           "403 `same_holder` or `unnamed_holder`); nothing is posted. "
                           "Rejecting again answers the same; a posted adjustment is a 409 "
                           "(`already_posted`), a row that does not match its fingerprint "
                           "a 409 (`adjustment_tampered`). The body is optional: a `note` "
                           "for the audit trail, one line of text.")
    @require("finance")
    def reject(adjustment_id: int) -> Response:
        body = json_object() if request.get_data(cache=True) else {}
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > rules.MAX_REASON or has_control(note):
            raise ApiError(422, "bad_note", f"note must be one line of text of at most "
                                            f"{rules.MAX_REASON} characters")
        with refusals():
            record, _ = office.adjustments.reject(current_actor(),
                                                  _adjustment_id(adjustment_id), note)
        return jsonify(record.as_json(currency))

    return bp
