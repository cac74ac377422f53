"""Riders' accounts and cards (contract section 7): sign up, log in and out, delete the
account, link a card, list the cards, report one lost and replace it; and the service
alerts on the rider's routes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from fare_gateway.http.auth import current_actor, require
from fare_gateway.http.cards import CHECK_CODE_VALUE, CURRENCY
from fare_gateway.http.errors import ApiError
from fare_gateway.http.headers import no_store
from fare_gateway.http.inputs import card_in_path, json_object, known_card
from fare_gateway.http.operations import CARD_TOKEN, MONEY, Schema, json_content, operation
from fare_gateway.riders.accounts import (
    EMAIL_PATTERN,
    MAX_EMAIL,
    SIGN_UPS,
    BadInput,
    Refused,
    RiderCardView,
    RiderError,
    RiderOffice,
    TooManyFailures,
    WrongCode,
    WrongLogin,
)
from fare_gateway.riders.explain import language
from fare_gateway.riders.passwords import MAX_PASSWORD, MIN_PASSWORD
from fare_gateway.riders.rider_alerts import RIDDEN_DAYS, RiderAlertDesk
from fare_gateway.riders.times import iso_z
from fare_gateway.tokens import RIDER
from tracking.alerts import Alert, in_language

TAG = "riders"
STATUSES: dict[type[RiderError], int] = {BadInput: 422, WrongLogin: 401, WrongCode: 403,
                                         Refused: 409, TooManyFailures: 429}
EMAIL: Schema = {"type": "string", "maxLength": MAX_EMAIL, "pattern": f"^{EMAIL_PATTERN}$",
                 "description": "an e-mail address; compared lower-cased",
                 "examples": ["nama@contoh.id"]}
INSTANT: Schema = {"type": "string", "format": "date-time",
                   "description": "ISO-8601 UTC, e.g. 2026-12-01T08:15:02.123Z"}
CREDENTIALS: Schema = {
    "title": "RiderCredentials",
    "type": "object",
    "required": ["email", "password"],
    "properties": {"email": EMAIL,
                   "password": {"type": "string", "minLength": MIN_PASSWORD,
                                "maxLength": MAX_PASSWORD}},
}
LOGIN: Schema = {
    "title": "RiderLogin",
    "type": "object",
    "required": ["email", "password"],
    "properties": {"email": {"type": "string"}, "password": {"type": "string"}},
}
ACCOUNT: Schema = {
    "title": "RiderAccount",
    "type": "object",
    "required": ["account_id", "email"],
    "properties": {"account_id": {"type": "integer"}, "email": {"type": "string"}},
}
SESSION: Schema = {
    "title": "RiderSession",
    "type": "object",
    "required": ["token", "expires_at"],
    "properties": {"token": {"type": "string",
                             "description": "the bearer token of the rider endpoints"},
                   "expires_at": {**INSTANT, "description": "when the token stops working"}},
}
LINK: Schema = {
    "title": "LinkCard",
    "type": "object",
    "required": ["card", "check_code"],
    "properties": {"card": CARD_TOKEN, "check_code": CHECK_CODE_VALUE},
}
REPLACE: Schema = {
    "title": "ReplaceCard",
    "type": "object",
    "required": ["new_card", "check_code"],
    "properties": {"new_card": CARD_TOKEN,
                   "check_code": {**CHECK_CODE_VALUE,
                                  "description": "the new card's check code"}},
}
RIDER_CARD: Schema = {
    "title": "RiderCard",
    "type": "object",
    "required": ["card", "category", "status", "balance", "currency", "replaced_by"],
    "properties": {"card": CARD_TOKEN, "category": {"type": "string"},
                   "status": {"enum": ["active", "blocked"]}, "balance": MONEY,
                   "currency": CURRENCY,
                   "replaced_by": {"type": ["string", "null"],
                                   "description": "the card that took its balance, once "
                                                  "it was replaced"}},
}
RIDER_CARDS: Schema = {
    "title": "RiderCards",
    "type": "object",
    "required": ["cards"],
    "properties": {"cards": {"type": "array", "items": RIDER_CARD}},
}
REPLACEMENT: Schema = {
    "title": "Replacement",
    "type": "object",
    "required": ["card", "balance", "moved", "currency", "replaced"],
    "properties": {"card": {**CARD_TOKEN, "description": "the new card"},
                   "balance": {**MONEY, "description": "the new card's balance now"},
                   "moved": {**MONEY, "description": "what the transfers moved in all (0 "
                                                     "when the lost card held nothing)"},
                   "currency": CURRENCY, "replaced": {**CARD_TOKEN,
                                                      "description": "the lost card"}},
}
LOGGED_OUT: Schema = {
    "title": "RiderLoggedOut",
    "type": "object",
    "required": ["revoked_at"],
    "properties": {"revoked_at": {**INSTANT, "description": "when the token stopped working"}},
}
RIDER_ALERT: Schema = {
    "title": "RiderServiceAlert",
    "type": "object",
    "required": ["alert_id", "language", "header", "description", "cause", "effect",
                 "route_ids", "stops", "network_wide", "start", "end"],
    "properties": {
        "alert_id": {"type": "string"},
        "language": {"type": "string", "description": "of header and description"},
        "header": {"type": "string"}, "description": {"type": "string"},
        "cause": {"type": "string", "description": "the GTFS-Realtime cause"},
        "effect": {"type": "string", "description": "the GTFS-Realtime effect"},
        "route_ids": {"type": "array", "items": {"type": "string"}},
        "stops": {"type": "array", "items": {
            "type": "object", "required": ["stop_id", "name"],
            "properties": {"stop_id": {"type": "string"}, "name": {"type": "string"}}}},
        "network_wide": {"type": "boolean",
                         "description": "about the whole network, not some routes"},
        "start": INSTANT, "end": {**INSTANT, "type": ["string", "null"]}},
}
RIDER_ALERTS: Schema = {
    "title": "RiderServiceAlerts",
    "type": "object",
    "required": ["alerts", "routes"],
    "properties": {"alerts": {"type": "array", "items": RIDER_ALERT},
                   "routes": {"type": "array", "items": {"type": "string"},
                              "description": "the routes the account's cards rode, by "
                                             "which the alerts were chosen"}},
}
DELETED: Schema = {
    "title": "RiderAccountDeleted",
    "type": "object",
    "required": ["account_id", "deleted_at"],
    "properties": {"account_id": {"type": "integer"}, "deleted_at": INSTANT},
}


@contextmanager
def refusals() -> Iterator[None]:
    """Turn the riders' errors into the API's, by kind."""
    try:
        yield
    except RiderError as exc:
        raise ApiError(STATUSES[type(exc)], exc.code, exc.message) from None


def riders_blueprint(riders: RiderOffice) -> Blueprint:
    """The riders' account and card endpoints, over the rider office."""
    bp = Blueprint("riders", __name__)
    currency = riders.policy.currency
    alert_desk = RiderAlertDesk(riders.sessions, riders.policy)
    card_param = {"card": CARD_TOKEN}

    def account_id() -> int:
        account = g.principal.account_id
        if account is None:  # a rider token is always made for an account
            raise ApiError(403, "forbidden", "this token belongs to no rider account")
        return int(account)

    def address() -> str:
        return request.remote_addr or "?"

    def card_json(view: RiderCardView) -> dict[str, Any]:
        return {"card": view.card, "category": view.category, "status": view.status,
                "balance": view.balance, "currency": currency,
                "replaced_by": view.replaced_by}

    @bp.post("/api/v1/rider/accounts")
    @operation("Sign up", tag=TAG, body=CREDENTIALS, responses={201: json_content(ACCOUNT)},
               errors=(409, 422, 429),
               description="409 when the e-mail has an account; 422 for a malformed "
                           f"e-mail or a password under {MIN_PASSWORD} characters; 429 "
                           f"past {SIGN_UPS} sign-ups from one address in the window of "
                           "`TRANSIT_RIDER_FAILURES`.")
    @no_store
    def sign_up() -> tuple[Response, int]:
        body = json_object()
        with refusals():
            account = riders.sign_up(body.get("email"), body.get("password"), address())
        return jsonify({"account_id": account.account_id, "email": account.email}), 201

    @bp.post("/api/v1/rider/login")
    @operation("Log in", tag=TAG, body=LOGIN, responses={200: json_content(SESSION)},
               errors=(401, 422, 429),
               description="A wrong password and an e-mail nobody uses get the same 401. "
                           "After repeated failures for one e-mail or from one address, "
                           "logins are refused with a 429 for a while "
                           "(`TRANSIT_RIDER_FAILURES`). The token lasts "
                           "`TRANSIT_RIDER_TOKEN_HOURS` and opens the rider endpoints "
                           "only.")
    @no_store
    def login() -> Response:
        body = json_object()
        with refusals():
            session = riders.login(body.get("email"), body.get("password"), address())
        return jsonify({"token": session.token, "expires_at": iso_z(session.expires_ms)})

    @bp.post("/api/v1/rider/logout")
    @operation("Log out", tag=TAG, responses={200: json_content(LOGGED_OUT)},
               description="The token presented stops working. No body is needed.")
    @require(RIDER)
    def logout() -> Response:
        return jsonify({"revoked_at": iso_z(riders.logout(g.principal.token_id))})

    @bp.delete("/api/v1/rider/account")
    @operation("Delete the account", tag=TAG, responses={200: json_content(DELETED)},
               description="The e-mail and the password are erased, the cards unlinked "
                           "and every token of the account revoked; the ledger and the "
                           "disputes keep their records. The e-mail may sign up again.")
    @require(RIDER)
    def delete_account() -> Response:
        account = account_id()
        deleted = riders.delete(account, current_actor())
        return jsonify({"account_id": account, "deleted_at": iso_z(deleted)})

    @bp.post("/api/v1/rider/cards")
    @operation("Link a card", tag=TAG, body=LINK,
               responses={200: json_content(RIDER_CARD), 201: json_content(RIDER_CARD)},
               errors=(403, 409, 422),
               description="201 when linked, 200 when it was this account's already. A "
                           "wrong check code and a card that does not exist are the same "
                           "403; a card of another account is a 409. After repeated wrong "
                           "codes for one card, one account or from one address: 429.")
    @require(RIDER)
    def link() -> tuple[Response, int]:
        body = json_object()
        with refusals():
            view, created = riders.link(account_id(), body.get("card"),
                                        body.get("check_code"), address(), current_actor())
        return jsonify(card_json(view)), 201 if created else 200

    @bp.get("/api/v1/rider/cards")
    @operation("The account's cards", tag=TAG, responses={200: json_content(RIDER_CARDS)})
    @require(RIDER)
    def cards() -> Response:
        return jsonify({"cards": [card_json(v) for v in riders.cards(account_id())]})

    @bp.post("/api/v1/rider/cards/<card>/lost")
    @operation("Report a card lost", tag=TAG, path=card_param,
               responses={200: json_content(RIDER_CARD)}, errors=(400, 404),
               description="The card is blocked at once and on the deny list validators "
                           "get within seconds; asking again changes nothing. Another "
                           "account's card is a 404. No body is needed.")
    @require(RIDER)
    def lost(card: str) -> Response:
        card = card_in_path(card)
        with known_card(card):
            view = riders.report_lost(account_id(), card, current_actor())
        return jsonify(card_json(view))

    @bp.post("/api/v1/rider/cards/<card>/replace")
    @operation("Replace a lost card", tag=TAG, path=card_param, body=REPLACE,
               responses={200: json_content(REPLACEMENT), 201: json_content(REPLACEMENT)},
               errors=(400, 403, 404, 409, 422),
               description="The lost card (reported lost by its rider first, else 409 "
                           "`not_blocked`, or `not_reported_lost` for a card blocked by "
                           "staff) gives its whole balance to the new card in one ledger "
                           "entry, and the new card is linked to the account: 201. The "
                           "same request again is a 200: what reached the lost card since "
                           "(a late correction, a refund, a top-up) moves in one more "
                           "entry, nothing moves twice, and `moved` is the total; another "
                           "new card for a card replaced already, or a new card of another "
                           "account, is a 409; a wrong check code a 403.")
    @require(RIDER)
    def replace(card: str) -> tuple[Response, int]:
        card = card_in_path(card)
        body = json_object()
        with known_card(card), refusals():
            done, created = riders.replace(account_id(), card, body.get("new_card"),
                                           body.get("check_code"), address(),
                                           current_actor())
        return jsonify({"card": done.card, "balance": done.balance, "moved": done.moved,
                        "currency": currency, "replaced": done.replaced}), (
            201 if created else 200)

    @bp.get("/api/v1/rider/alerts")
    @operation("Service alerts on the rider's routes", tag=TAG,
               responses={200: json_content(RIDER_ALERTS)},
               description="The service alerts active now on the routes the account's "
                           f"cards rode in the last {RIDDEN_DAYS} days (or at a stop those "
                           "routes serve), and those about the whole network, with their "
                           "texts in the request's `Accept-Language` (Indonesian or "
                           "English; Indonesian when the alert has no text in it), named "
                           "by each alert's `language`.")
    @require(RIDER)
    def alerts() -> Response:
        lang = language(request.headers.get("Accept-Language"))
        seen = alert_desk.for_account(account_id())
        resp = jsonify({"alerts": [rider_alert_json(a, lang, seen.stop_names)
                                   for a in seen.alerts], "routes": seen.routes})
        resp.headers["Content-Language"] = lang
        resp.vary.add("Accept-Language")
        return resp

    return bp


def rider_alert_json(a: Alert, lang: str, stop_names: dict[str, str]) -> dict[str, Any]:
    """An alert as a rider reads it, in `lang` where it has a text in it."""
    header_lang, header = in_language(a.header, lang)
    _, description = in_language(a.description, header_lang)
    return {"alert_id": a.alert_id, "language": header_lang, "header": header,
            "description": description, "cause": a.cause, "effect": a.effect,
            "route_ids": list(a.route_ids),
            "stops": [{"stop_id": s, "name": stop_names.get(s, s)} for s in a.stop_ids],
            "network_wide": a.network_wide, "start": iso_z(a.start_ms),
            "end": None if a.end_ms is None else iso_z(a.end_ms)}
