"""The HTTP API of contract section 3 (Flask application factory)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Flask, Response, g, jsonify, request
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from fare_gateway.adapters.models import TapRecord
from fare_gateway.cards import CardError, issue_card, set_card_status, topup_card
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.metrics import Metrics
from fare_gateway.tokens import authenticate
from ledger.adapters.models import Card, Entry
from ledger.services import (
    CardExists,
    CardNotFound,
    IdempotencyConflict,
    Ledger,
    TopupResult,
    retry_once_on_race,
)
from ledger.settlement import (
    BusinessCalendar,
    Settlement,
    SettlementError,
    Settler,
    parse_day,
)
from transit.wire import CARD_PATTERN

REFERENCE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
MAX_TOPUP = 10_000_000  # one top-up; a registered e-money account in Indonesia holds at most this
MAX_BODY_BYTES = 64 * 1024


class ApiError(Exception):
    """An error the client can act on, rendered as `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ApiDeps:
    """What the API needs, built once by the entry point."""

    sessions: sessionmaker[Session]
    ledger: Ledger
    policy: FarePolicy
    metrics: Metrics
    broker_ok: Callable[[], bool]
    tracking: Any = None  # a TrackingStore: adds the vehicles, validators and map endpoints
    tile_url: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)  # ends open streams
    auth_failures: AuthFailures | None = None


def _error(status: int, code: str, message: str) -> Response:
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="transit"'
    return resp


def _body() -> dict[str, Any]:
    try:
        data = request.get_json(silent=True, force=True)
    except RecursionError:
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return data


def _card_token(card: str) -> str:
    if not CARD_PATTERN.fullmatch(card):
        raise ApiError(400, "bad_card", "card must be 8-32 upper-case hex digits")
    return card


class AuthFailures:
    """Too many failed authentications from one address: refuse it for a while (429)."""

    def __init__(self, limit: int = 20, window_s: float = 60.0, block_s: float = 300.0
                 ) -> None:
        self.limit, self.window_s, self.block_s = limit, window_s, block_s
        self._failures: dict[str, list[float]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked(self, who: str) -> bool:
        with self._lock:
            until = self._blocked.get(who)
            if until is not None and until > time.monotonic():
                return True
            self._blocked.pop(who, None)
            return False

    def failed(self, who: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(who, []) if now - t < self.window_s]
            recent.append(now)
            self._failures[who] = recent
            if len(recent) >= self.limit:
                self._blocked[who] = now + self.block_s
                self._failures.pop(who, None)
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.clear()


def create_app(deps: ApiDeps) -> Flask:
    """Build the Flask application around already-wired services."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    currency = deps.policy.currency

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return _error(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        if exc.code == 413:  # bad input is a 400 (contract section 3)
            return _error(400, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        return _error(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        app.logger.exception("unhandled error")
        return _error(500, "internal", "internal error; it has been logged")

    failures = deps.auth_failures or AuthFailures()

    def require(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def inner(*args: Any, **kwargs: Any) -> Any:
                who = request.remote_addr or "?"
                if failures.blocked(who):
                    raise ApiError(429, "too_many_failures",
                                   "too many failed sign-ins from this address; wait")
                header = request.headers.get("Authorization", "")
                scheme, _, token = header.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise ApiError(401, "unauthorized", "a bearer token is required")
                with deps.sessions() as session:
                    principal = authenticate(session, token.strip())
                if principal is None:
                    failures.failed(who)
                    raise ApiError(401, "unauthorized", "the token is unknown, expired or revoked")
                if not principal.may(*roles):
                    raise ApiError(403, "forbidden",
                                   f"the {principal.role} role may not do this")
                g.principal = principal
                return view(*args, **kwargs)
            return inner
        return wrap

    def card_json(row: Card) -> dict[str, Any]:
        return {"card": row.card, "category": row.category, "status": row.status,
                "balance": row.balance, "currency": currency}

    @app.get("/healthz")
    def healthz() -> Response:
        checks = {"database": "ok", "broker": "ok" if deps.broker_ok() else "unreachable"}
        try:
            with deps.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:  # any failure to reach the database is "unhealthy"
            checks["database"] = f"unreachable: {exc.__class__.__name__}"
        ok = all(v == "ok" for v in checks.values())
        resp = jsonify({"status": "ok" if ok else "unavailable", **checks})
        resp.status_code = 200 if ok else 503
        return resp

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(deps.metrics.render(),
                        mimetype="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/api/v1/cards")
    @require("admin")
    def post_card() -> tuple[Response, int]:
        body = _body()
        card = body.get("card")
        if not isinstance(card, str) or not CARD_PATTERN.fullmatch(card):
            raise ApiError(422, "bad_card", "card must be 8-32 upper-case hex digits")
        category = body.get("category", deps.policy.default_category)
        if not isinstance(category, str):
            raise ApiError(422, "bad_category", "category must be a string")
        try:
            with deps.sessions.begin() as session:
                row = issue_card(session, deps.ledger, deps.policy, card, category)
        except CardError as exc:
            raise ApiError(422, exc.code, str(exc)) from None
        except (CardExists, IntegrityError):  # IntegrityError: issued at this very moment
            raise ApiError(409, "card_exists", f"card {card} already exists") from None
        return jsonify(card_json(row)), 201

    @app.get("/api/v1/cards/<card>")
    @require("finance")
    def show_card(card: str) -> Response:
        _card_token(card)
        with deps.sessions() as session:
            row = session.get(Card, card)
            if row is None:
                raise ApiError(404, "not_found", f"no card {card}")
            return jsonify(card_json(row))

    @app.post("/api/v1/cards/<card>/topups")
    @require("admin")
    def post_topup(card: str) -> tuple[Response, int]:
        _card_token(card)
        body = _body()
        amount = body.get("amount")
        reference = body.get("reference")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise ApiError(422, "bad_amount", "amount must be a whole number of rupiah")
        if not 0 < amount <= MAX_TOPUP:
            raise ApiError(422, "bad_amount", f"amount must be between 1 and {MAX_TOPUP}")
        if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
            raise ApiError(422, "bad_reference",
                           "reference must be 1-64 characters of A-Z a-z 0-9 . _ : / -")
        try:
            result = retry_once_on_race(lambda: _topup(card, amount, reference))
        except CardNotFound:
            raise ApiError(404, "not_found", f"no card {card}") from None
        except IdempotencyConflict as exc:
            raise ApiError(409, "reference_conflict", str(exc)) from None
        return jsonify({"card": card, "balance": result.balance, "currency": currency,
                        "amount": result.amount, "reference": result.reference,
                        "entry_id": result.entry_id}), 201 if result.created else 200

    def _topup(card: str, amount: int, reference: str) -> TopupResult:
        with deps.sessions.begin() as session:
            return topup_card(session, deps.ledger, deps.policy, card, amount, reference)

    def set_status(card: str, status: str) -> Response:
        _card_token(card)
        try:
            with deps.sessions.begin() as session:
                out = card_json(set_card_status(session, deps.policy, card, status))
        except CardNotFound:
            raise ApiError(404, "not_found", f"no card {card}") from None
        return jsonify(out)

    @app.post("/api/v1/cards/<card>/block")
    @require("admin")
    def block(card: str) -> Response:
        return set_status(card, "blocked")

    @app.post("/api/v1/cards/<card>/unblock")
    @require("admin")
    def unblock(card: str) -> Response:
        return set_status(card, "active")

    @app.get("/api/v1/cards/<card>/taps")
    @require("finance")
    def card_taps(card: str) -> Response:
        _card_token(card)
        with deps.sessions() as session:
            if session.get(Card, card) is None:
                raise ApiError(404, "not_found", f"no card {card}")
            charged = (select(Entry.tap_id, func.sum(Entry.amount).label("fare"))
                       .where(Entry.card == card, Entry.tap_id.is_not(None))
                       .group_by(Entry.tap_id).subquery())
            rows = session.execute(
                select(TapRecord, func.coalesce(charged.c.fare, 0))
                .outerjoin(charged, charged.c.tap_id == TapRecord.tap_id)
                .where(TapRecord.card == card)
                .order_by(TapRecord.ts, TapRecord.device_id, TapRecord.seq)).all()
            taps = [{"tap_id": t.tap_id, "ts": t.ts, "device_id": t.device_id,
                     "vehicle_id": t.vehicle_id, "route_id": t.route_id, "kind": t.kind,
                     "accepted": t.accepted, "fare": int(fare), "status": t.status,
                     "service_date": t.service_date} for t, fare in rows]
        return jsonify({"card": card, "taps": taps})

    if deps.tracking is not None:
        from tracking.api import TrackingDeps, tracking_blueprint

        app.register_blueprint(tracking_blueprint(TrackingDeps(
            deps.sessions, deps.tracking, require, tile_url=deps.tile_url,
            service_date=lambda ms: deps.policy.service_date(ms).isoformat(),
            stopping=deps.stopping)))

    settler = Settler(BusinessCalendar(deps.policy.timezone, deps.policy.service_day_start_min),
                      currency)

    def settlement(day: str) -> Settlement:
        try:
            business_day = parse_day(day)
        except SettlementError as exc:
            raise ApiError(400, "bad_date", str(exc)) from None
        try:
            with deps.sessions.begin() as session:
                return settler.settle(session, business_day)
        except SettlementError as exc:
            raise ApiError(409, "not_settleable", str(exc)) from None

    @app.get("/api/v1/settlements/<day>")
    @require("finance")
    def settlement_manifest(day: str) -> Response:
        return Response(settlement(day).manifest_bytes, mimetype="application/json")

    @app.get("/api/v1/settlements/<day>/lines.csv")
    @require("finance")
    def settlement_lines(day: str) -> Response:
        result = settlement(day)
        return Response(result.csv, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="settlement-{day}.csv"'})

    return app
