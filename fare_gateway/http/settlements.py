"""Settlements for finance: a business day's manifest and its CSV (contract section 6)."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from flask import Blueprint, Response, g, request

from fare_gateway.http.auth import require
from fare_gateway.http.errors import ApiError
from fare_gateway.http.operations import MONEY, Schema, json_content, operation
from ledger.audit import Actor
from ledger.settlement import Settlement, SettlementError, parse_day

SHA256: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
# The years the business calendar covers, 2000 to 9998 (ledger.settlement.MIN_DAY, MAX_DAY):
# a date outside them is refused with a 400, so the description does not admit it.
YEARS = "(?:[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
DAY: Schema = {"type": "string", "format": "date", "pattern": f"^{YEARS}-[0-9]{{2}}-[0-9]{{2}}$",
               "description": "the business date, YYYY-MM-DD, from 2000-01-01 to 9998-12-31"}
MANIFEST: Schema = {
    "title": "SettlementManifest",
    "type": "object",
    "required": ["settlement_date", "currency", "lines", "totals", "entries", "sha256",
                 "previous_sha256", "entries_sha256", "chain_sha256", "business_day",
                 "status"],
    "properties": {
        "settlement_date": {"type": "string", "format": "date"},
        "currency": {"type": "string"},
        "lines": {"type": "integer", "minimum": 0},
        "totals": {"type": "object", "additionalProperties": MONEY,
                   "description": "sum of `amount` per line type"},
        "entries": {"type": "integer", "minimum": 0},
        "sha256": {**SHA256, "description": "of the CSV file"},
        "previous_sha256": {"type": ["string", "null"]},
        "entries_sha256": {**SHA256, "description": "over every entry and posting"},
        "chain_sha256": {**SHA256, "description": "links this day to every day before"},
        "business_day": {"type": "object", "required": ["from_ms", "to_ms"],
                         "properties": {"from_ms": {"type": "integer"},
                                        "to_ms": {"type": "integer"}}},
        "status": {"enum": ["final", "provisional"],
                   "description": "provisional while the day is still open"}},
}
CSV_LINES: Schema = {"type": "string", "description":
                     "settlement_date,line_type,service_date,operator_id,route_id,category,"
                     "count,amount,currency; a text field beginning with `=`, `+`, `-` or "
                     "`@` is written with a leading `'` (no spreadsheet runs it)"}


class Settle(Protocol):
    """Settle a business day (`ledger.settlement.settle_day` over the gateway's
    sessions and settler); `actor` is who asked, for the audit trail."""

    def __call__(self, day: date, *, actor: Actor) -> Settlement: ...


def caller() -> Actor:
    """The holder of the request's token, as the audit trail names them."""
    principal = g.principal
    return Actor("token", principal.token_id, principal.name, principal.role,
                 request.remote_addr or "")


def settlements_blueprint(settle: Settle) -> Blueprint:
    """The settlement endpoints over `settle`; a closed day is recorded in the chain
    when first asked, and the audit trail names the token that asked."""
    bp = Blueprint("settlements", __name__)

    def settlement(day: str) -> Settlement:
        try:
            business_day = parse_day(day)
        except SettlementError as exc:
            raise ApiError(400, "bad_date", str(exc)) from None
        try:
            return settle(business_day, actor=caller())
        except SettlementError as exc:
            raise ApiError(409, "not_settleable", str(exc)) from None

    @bp.get("/api/v1/settlements/<day>")
    @operation("A business day's settlement manifest", tag="settlements",
               path={"day": DAY}, responses={200: json_content(MANIFEST)}, errors=(400, 409),
               description="409 for a day that has not begun or whose entries no longer "
                           "match its recorded settlement.")
    @require("finance")
    def manifest(day: str) -> Response:
        return Response(settlement(day).manifest_bytes, mimetype="application/json")

    @bp.get("/api/v1/settlements/<day>/lines.csv")
    @operation("A business day's settlement lines", tag="settlements", path={"day": DAY},
               responses={200: {"text/csv": CSV_LINES}}, errors=(400, 409))
    @require("finance")
    def lines(day: str) -> Response:
        result = settlement(day)
        return Response(result.csv, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="settlement-{day}.csv"'})

    return bp
