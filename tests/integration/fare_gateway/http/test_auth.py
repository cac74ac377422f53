"""Who may call what, from outside: the role table of every card endpoint, tokens
hashed at rest, revocable and expiring; health and metrics need no token. Repeated
failures are refused for a while: test_auth_failures.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from fare_gateway.adapters.models import ApiToken
from ledger.adapters.db import session_factory
from tests.conftest import System
from tests.integration.fare_gateway.http.client import Api, assert_card, expect

CARD = "04A1B2C3D4E5F6"
UNKNOWN = "0400000000DEAD"  # well-formed, never issued
ROLES = ("admin", "ops", "finance")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    allowed: frozenset[str]       # roles the contract lets through
    ok: int                       # status of an allowed call
    body: Callable[[], Any] | None = None  # a fresh valid body per call

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def fresh_card() -> str:
    return "04" + uuid.uuid4().hex[:12].upper()


def fresh_topup() -> dict[str, Any]:
    return {"amount": 1000, "reference": f"ref-{uuid.uuid4().hex[:16]}"}


ADMIN = frozenset({"admin"})
ADMIN_FINANCE = frozenset({"admin", "finance"})

ENDPOINTS = [
    Endpoint("GET", f"/api/v1/cards/{CARD}", ADMIN_FINANCE, 200),
    Endpoint("GET", f"/api/v1/cards/{CARD}/taps", ADMIN_FINANCE, 200),
    Endpoint("POST", "/api/v1/cards", ADMIN, 201,
             lambda: {"card": fresh_card(), "category": "regular"}),
    Endpoint("POST", f"/api/v1/cards/{CARD}/topups", ADMIN, 201, fresh_topup),
    Endpoint("POST", f"/api/v1/cards/{CARD}/block", ADMIN, 200, dict),
    Endpoint("POST", f"/api/v1/cards/{CARD}/unblock", ADMIN, 200, dict),
]

GARBAGE_AUTH = [
    "Bearer garbage",
    "Bearer tt_0123456789abcdef_" + "A" * 43,      # the shape of a token, but not one
    "Bearer " + "x" * 500,                         # absurdly long
    "Bearer",                                       # scheme only
    "Bearer    ",
    "Basic YWRtaW46YWRtaW4=",                       # another scheme
    "garbage",
    "Token abc",
]


def test_health_metrics_and_role_table(system: System) -> None:
    api = Api(system.http)
    tokens = {role: system.token(role) for role in ROLES}
    system.issue(CARD)

    # /healthz and /metrics need no token, and a token (even a bad one) does not hurt.
    for auth in (None, "Bearer garbage", f"Bearer {tokens['ops']}"):
        headers = {"Authorization": auth} if auth else None
        health = expect(api.request("GET", "/healthz", headers=headers), 200, "healthz")
        assert isinstance(health, dict) and health["status"] == "ok", health
        status, text = api.request("GET", "/metrics", headers=headers)
        assert status == 200
        assert isinstance(text, bytes), "metrics must be text, not JSON"
        body = text.decode()
        assert "transit_taps_total" in body or "# TYPE" in body, body[:500]
        for line in body.splitlines():  # Prometheus exposition format, line by line
            assert not line or line.startswith("#") or len(line.split()) >= 2, line

    for ep in ENDPOINTS:
        def call(auth: str | None, ep: Endpoint = ep) -> tuple[int, Any]:
            headers = {"Authorization": auth} if auth is not None else None
            body = ep.body() if ep.body else None
            return api.request(ep.method, ep.path, body=body, headers=headers)

        # No token, a garbage token, the wrong scheme: 401, whatever the role table says.
        expect(call(None), 401, f"{ep} without a token")
        for auth in GARBAGE_AUTH:
            expect(call(auth), 401, f"{ep} with Authorization: {auth[:40]!r}")
        # A real token glued to the wrong scheme is no token either.
        expect(call(f"Basic {tokens['admin']}"), 401, f"{ep} with Basic <admin token>")
        expect(call(f"Bearer {tokens['admin']}x"), 401, f"{ep} with a token plus one char")

        for role in ROLES:
            want = ep.ok if role in ep.allowed else 403
            got = expect(call(f"Bearer {tokens[role]}"), want, f"{ep} as {role}")
            if want == 403:
                assert got["error"]["code"], got
        # The scheme name is case-insensitive (RFC 7235).
        expect(call(f"bearer {tokens['admin']}"), ep.ok, f"{ep} with 'bearer' lower-case")

    # 401 comes before anything about the request itself: no token and an unknown card,
    # or no token and a broken body, is still 401 (nothing leaks about which cards exist).
    expect(api.get(f"/api/v1/cards/{UNKNOWN}"), 401, "unknown card without token")
    expect(api.request("POST", "/api/v1/cards", raw=b"{not json"), 401, "bad body, no token")
    expect(api.get(f"/api/v1/cards/{UNKNOWN}", tokens["ops"]), 403, "unknown card as ops")

    # Refused calls had no effect: only the admin's top-ups above were credited, and the
    # card ends active (the last allowed call was admin's unblock).
    admin = tokens["admin"]
    card = expect(api.get(f"/api/v1/cards/{CARD}", admin), 200, "card after role table")
    # admin: one top-up as 'Bearer' and one as 'bearer' -> 2 x 1000
    assert_card(card, CARD, balance=2000)
    for role in ("ops", "finance"):
        expect(api.post(f"/api/v1/cards/{CARD}/block", token=tokens[role]), 403, "block")
    assert expect(api.get(f"/api/v1/cards/{CARD}", admin), 200, "")["status"] == "active"


def test_tokens_are_stored_hashed_revocable_and_expire(system: System) -> None:
    finance = system.token("finance")
    other = system.token("ops")
    assert system.http.get("/api/v1/cards/04AAAAAAAA", finance)[0] == 404  # authenticated
    with session_factory(system.engine())() as s:
        stored = [(t.id, t.token_hash) for t in s.scalars(select(ApiToken))]
    dump = repr(stored)
    assert finance not in dump and finance.split("_", 2)[2] not in dump

    listing = system.transit("tokens", "list").stdout
    assert finance.split("_")[1] in listing and finance not in listing
    system.transit("tokens", "revoke", finance.split("_")[1])
    status, body = system.http.get("/api/v1/cards/04AAAAAAAA", finance)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert "revoked" in system.transit("tokens", "list").stdout
    bad = system.transit("tokens", "revoke", "0000000000000000", check=False)
    assert bad.returncode == 1 and "no token" in bad.stderr

    engine = system.engine()
    with session_factory(engine).begin() as s:
        s.execute(update(ApiToken).where(ApiToken.id == other.split("_")[1])
                  .values(expires_ms=1))
    assert system.http.get("/api/v1/vehicles", other)[0] == 401

