"""Cards: issue, show, top up, block and unblock (contract section 3)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from fare_gateway.cards import MAX_TOPUP, CardError, CardOffice
from fare_gateway.http.auth import current_actor, require
from fare_gateway.http.errors import ApiError
from fare_gateway.http.inputs import card_in_path, json_object, known_card
from fare_gateway.http.operations import (
    CARD_TOKEN,
    MONEY,
    Schema,
    json_content,
    operation,
)
from ledger.domain import CardState
from ledger.services import CardExists, IdempotencyConflict

CURRENCY: Schema = {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["IDR"]}
CARD: Schema = {
    "title": "Card",
    "type": "object",
    "required": ["card", "category", "status", "balance", "currency"],
    "properties": {"card": CARD_TOKEN, "category": {"type": "string"},
                   "status": {"enum": ["active", "blocked"]},
                   "balance": MONEY, "currency": CURRENCY},
}
CHECK_CODE_VALUE: Schema = {"type": "string", "pattern": "^[0-9]{8}$",
                            "description": "eight digits printed on the card, shown once: "
                                           "they prove that whoever links it holds it"}
NEW_CARD: Schema = {
    "title": "IssuedCard",
    "allOf": [CARD, {"type": "object", "required": ["check_code"],
                     "properties": {"check_code": CHECK_CODE_VALUE}}],
}
CHECK_CODE: Schema = {
    "title": "CheckCode",
    "type": "object",
    "required": ["card", "check_code"],
    "properties": {"card": CARD_TOKEN, "check_code": CHECK_CODE_VALUE},
}
TOPUP_REQUEST: Schema = {
    "title": "TopupRequest",
    "type": "object",
    "required": ["amount", "reference"],
    "properties": {
        "amount": {"type": "integer", "minimum": 1, "maximum": MAX_TOPUP,
                   "description": "whole rupiah to credit"},
        "reference": {"type": "string", "pattern": "^[A-Za-z0-9._:/-]{1,64}$",
                      "description": "the payment's idempotency key: the same reference "
                                     "again credits nothing more"}},
}
TOPUP: Schema = {
    "title": "Topup",
    "type": "object",
    "required": ["card", "balance", "currency", "amount", "reference", "entry_id"],
    "properties": {"card": CARD_TOKEN, "balance": MONEY, "currency": CURRENCY,
                   "amount": MONEY, "reference": {"type": "string"},
                   "entry_id": {"type": "integer",
                                "description": "the ledger entry that credited it"}},
}


def card_json(info: CardState, currency: str) -> dict[str, Any]:
    """A card as the API shows it."""
    return {"card": info.card, "category": info.category, "status": info.status,
            "balance": info.balance, "currency": currency}


def cards_blueprint(cards: CardOffice) -> Blueprint:
    """The card endpoints, over the card office."""
    bp = Blueprint("cards", __name__)
    policy = cards.policy
    currency = policy.currency
    new_card: Schema = {
        "title": "NewCard",
        "type": "object",
        "required": ["card"],
        "properties": {"card": CARD_TOKEN,
                       "category": {"enum": list(policy.categories),
                                    "description": "the fare category; absent: "
                                                   f"{policy.default_category}"}},
    }
    card_param = {"card": CARD_TOKEN}
    # What a new card's answer feeds: every operation on that card.
    card_links = {name: {"operationId": operation_id,
                         "parameters": {"card": "$response.body#/card"}}
                  for name, operation_id in (("ShowCard", "cards.show"),
                                             ("TopUp", "cards.topup"),
                                             ("Block", "cards.block"),
                                             ("Unblock", "cards.unblock"),
                                             ("NewCheckCode", "cards.check_code"),
                                             ("ListTaps", "taps.of_card"))}

    @bp.post("/api/v1/cards")
    @operation("Issue a card", tag="cards", body=new_card,
               responses={201: json_content(NEW_CARD)}, errors=(409, 422),
               links={201: card_links},
               description="The card starts with a zero balance, so on the deny list. "
                           "A card that exists already is a 409. The answer carries the "
                           "card's check code, shown this once (it is kept only as a slow "
                           "hash): print it on the card.")
    @require("admin")
    def issue() -> tuple[Response, int]:
        body = json_object()
        category = body.get("category", policy.default_category)
        try:
            if category is None:  # a JSON null is a category given wrong, not left out
                raise CardError("bad_category", "category must be a string")
            info = cards.issue(body.get("card"), category, current_actor())
        except CardError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        except CardExists as exc:
            raise ApiError(409, "card_exists", str(exc)) from None
        return jsonify({**card_json(info.state, currency), "check_code": info.check_code}), 201

    @bp.post("/api/v1/cards/<card>/check-code")
    @operation("Give a card a new check code", tag="cards", path=card_param,
               responses={201: json_content(CHECK_CODE)}, errors=(400, 404),
               description="The old code stops working at once; the new one is shown in "
                           "this answer only. A card issued before check codes existed "
                           "gets its first one this way. No body is needed.")
    @require("admin")
    def check_code(card: str) -> tuple[Response, int]:
        card = card_in_path(card)
        with known_card(card):
            code = cards.new_check_code(card, current_actor())
        return jsonify({"card": card, "check_code": code}), 201

    @bp.get("/api/v1/cards/<card>")
    @operation("Show a card", tag="cards", path=card_param,
               responses={200: json_content(CARD)}, errors=(400, 404))
    @require("finance")
    def show(card: str) -> Response:
        card = card_in_path(card)
        with known_card(card):
            info = cards.show(card)
        return jsonify(card_json(info, currency))

    @bp.post("/api/v1/cards/<card>/topups")
    @operation("Top up a card", tag="cards", path=card_param, body=TOPUP_REQUEST,
               responses={200: json_content(TOPUP), 201: json_content(TOPUP)},
               errors=(404, 409, 422),
               description="201 when credited; the same reference again is a 200 with the "
                           "first answer and no second credit; the same reference with "
                           "another amount is a 409.")
    @require("admin")
    def topup(card: str) -> tuple[Response, int]:
        card = card_in_path(card)
        body = json_object()
        try:
            with known_card(card):
                result = cards.topup(card, body.get("amount"), body.get("reference"),
                                      current_actor())
        except CardError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        except IdempotencyConflict as exc:
            raise ApiError(409, "reference_conflict", str(exc)) from None
        return jsonify({"card": card, "balance": result.balance, "currency": currency,
                        "amount": result.amount, "reference": result.reference,
                        "entry_id": result.entry_id}), 201 if result.created else 200

    def set_status(card: str, status: str) -> Response:
        card = card_in_path(card)
        with known_card(card):
            info = cards.set_status(card, status, current_actor())
        return jsonify(card_json(info, currency))

    @bp.post("/api/v1/cards/<card>/block")
    @operation("Block a card", tag="cards", path=card_param,
               responses={200: json_content(CARD)}, errors=(400, 404),
               description="The card goes on the deny list; blocking it again changes "
                           "nothing. No body is needed.")
    @require("admin")
    def block(card: str) -> Response:
        return set_status(card, "blocked")

    @bp.post("/api/v1/cards/<card>/unblock")
    @operation("Unblock a card", tag="cards", path=card_param,
               responses={200: json_content(CARD)}, errors=(400, 404),
               description="The card leaves the deny list unless its balance is below the "
                           "lowest fare. No body is needed.")
    @require("admin")
    def unblock(card: str) -> Response:
        return set_status(card, "active")

    return bp
