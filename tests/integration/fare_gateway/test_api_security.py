"""API hardening: tokens hashed at rest, revocable, expiring; repeated failures refused."""

from __future__ import annotations

from sqlalchemy import select, update

from fare_gateway.adapters.models import ApiToken
from ledger.adapters.db import session_factory
from tests.conftest import System


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


def test_repeated_authentication_failures_are_refused_for_a_while(system: System) -> None:
    system.gateway.stop()
    system.gateway.env = dict(system.env, TRANSIT_AUTH_FAILURES="20/60")
    system.gateway.start()
    good = system.token("ops")
    for i in range(20):
        status, _ = system.http.get("/api/v1/vehicles", f"tt_{i:016x}_guess")
        assert status == 401
    status, body = system.http.get("/api/v1/vehicles", good)
    assert status == 429 and body["error"]["code"] == "too_many_failures"
    # Unauthenticated endpoints are not affected.
    assert system.http.get("/healthz")[0] == 200
