"""Taps as the back office sees them: a card's taps, each with what it costs now."""

from __future__ import annotations

from dataclasses import asdict

from flask import Blueprint, Response, jsonify

from fare_gateway.cards import CardOffice
from fare_gateway.http.auth import require
from fare_gateway.http.inputs import card_in_path, known_card
from fare_gateway.http.operations import (
    CARD_TOKEN,
    IDENTIFIER,
    MONEY,
    Schema,
    json_content,
    operation,
)

TAP: Schema = {
    "title": "CardTap",
    "type": "object",
    "required": ["tap_id", "ts", "device_id", "vehicle_id", "route_id", "kind", "accepted",
                 "fare", "status", "service_date", "reason"],
    "properties": {
        "tap_id": {"type": "string", "description": "`{device_id}:{seq}`"},
        "ts": {"type": "integer", "description": "event time, ms since the epoch (UTC)"},
        "device_id": IDENTIFIER, "vehicle_id": IDENTIFIER, "route_id": IDENTIFIER,
        "kind": {"enum": ["entry", "exit"]},
        "accepted": {"type": "boolean", "description": "the validator's own decision"},
        "fare": {**MONEY, "description": "what the tap costs now, after any later "
                                         "correction (whole rupiah)"},
        "status": {"type": "string",
                   "description": "how the gateway took it: charged, not_charged, ..."},
        "service_date": {"type": "string", "format": "date"},
        "reason": {"type": ["string", "null"],
                   "description": "why the reader refused a denied tap (`denylisted`, "
                                  "`repeat`, `not_authentic`, ...); null otherwise"}},
}
CARD_TAPS: Schema = {
    "title": "CardTaps",
    "type": "object",
    "required": ["card", "taps"],
    "properties": {"card": CARD_TOKEN, "taps": {"type": "array", "items": TAP}},
}


def taps_blueprint(cards: CardOffice) -> Blueprint:
    """The tap endpoints, over the card office."""
    bp = Blueprint("taps", __name__)

    @bp.get("/api/v1/cards/<card>/taps")
    @operation("List a card's taps", tag="taps", path={"card": CARD_TOKEN},
               responses={200: json_content(CARD_TAPS)}, errors=(400, 404),
               description="In event order (`ts`, `device_id`, `seq`), denied and repeat "
                           "taps included (their fare is 0); a denied tap carries the "
                           "reader's `reason`.")
    @require("finance")
    def of_card(card: str) -> Response:
        card = card_in_path(card)
        with known_card(card):
            taps = cards.taps(card)
        return jsonify({"card": card, "taps": [asdict(t) for t in taps]})

    return bp
