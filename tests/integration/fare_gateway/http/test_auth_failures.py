"""The limit on failed sign-ins, from outside (issue 14, point 8): counted in Redis by
every gateway of a system alike, bounded without ever being reset by a spray of other
addresses, never in the way of a valid token, and still in force, per gateway, while
Redis is away."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed.gateway import Gateway
from testbed.ports import free_port
from tests.conftest import System
from tests.support import raw_http

PATH = "/api/v1/vehicles"
SPRAY = 10_001  # more addresses than the old in-memory table held before it emptied


@pytest.fixture
def db_url(pg_url: str) -> Iterator[str]:
    """Two gateways on one database: PostgreSQL, as a fleet runs them."""
    yield pg_url


def bad_token() -> str:
    return f"tt_{uuid.uuid4().hex[:16]}_{uuid.uuid4().hex}"


def status(gateway: Gateway, token: str | None, source: str = "127.0.0.1") -> int:
    """The status of one GET of the fleet from `source` (any 127.x.y.z on Linux)."""
    return raw_http.request(gateway.base_url, PATH, token, source=source).status


def fail(gateway: Gateway, source: str, times: int) -> None:
    for _ in range(times):
        assert status(gateway, bad_token(), source) == 401


def restart(system: System, **settings: str) -> None:
    system.gateway.stop()
    system.gateway.env = dict(system.env, **settings)
    system.gateway.start()


def test_failures_count_on_every_gateway_and_a_valid_token_still_passes(
        system: System) -> None:
    restart(system, TRANSIT_AUTH_FAILURES="6/60", TRANSIT_SHARE_GROUP="auth")
    env = dict(system.gateway.env, TRANSIT_GATEWAY_ID=f"{system.env['TRANSIT_GATEWAY_ID']}-b")
    other = Gateway(env, system.gateway.log_path.with_name("gateway-b.log")).start()
    try:
        good = system.token("ops")
        source = "127.0.0.2"
        fail(system.gateway, source, 3)
        fail(other, source, 3)  # the sixth failure, counted wherever it was made
        for gateway in (system.gateway, other):
            assert status(gateway, bad_token(), source) == 429
            answer = raw_http.request(gateway.base_url, PATH, None, source=source)
            assert answer.status == 429, answer
            assert answer.json()["error"]["code"] == "too_many_failures"
            assert answer.headers["cache-control"] == "no-store", answer
            assert answer.headers["x-content-type-options"] == "nosniff", answer
            # A valid token passes from the blocked address, and so does another
            # address (and the endpoints that need no token).
            assert status(gateway, good, source) == 200
            assert status(gateway, bad_token(), "127.0.0.3") == 401
            assert status(gateway, None, "127.0.0.3") == 401
            assert raw_http.request(gateway.base_url, "/healthz", source=source).status == 200
    finally:
        other.stop()
    assert "Traceback" not in other.log_path.read_text()


@pytest.mark.slow
def test_a_spray_of_addresses_resets_no_count(system: System) -> None:
    restart(system, TRANSIT_AUTH_FAILURES="3/120")
    blocked, counting = "127.0.0.2", "127.0.0.3"
    fail(system.gateway, blocked, 3)
    assert status(system.gateway, bad_token(), blocked) == 429
    fail(system.gateway, counting, 2)  # one short of the limit

    # One failure from each of SPRAY other addresses, 127.1.0.0 on.
    sources = [f"127.{1 + i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(SPRAY)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda s: status(system.gateway, bad_token(), s), sources))
    assert answers.count(401) == SPRAY, {a: answers.count(a) for a in set(answers)}

    # Neither count was emptied: the blocked address stays blocked, the other's next
    # failure is its third.
    assert status(system.gateway, bad_token(), blocked) == 429
    fail(system.gateway, counting, 1)
    assert status(system.gateway, bad_token(), counting) == 429
    assert status(system.gateway, bad_token(), "127.0.0.4") == 401


def test_without_redis_the_api_works_and_each_gateway_limits_on_its_own(
        system: System) -> None:
    # A port nothing listens on: every Redis call is refused at once.
    restart(system, TRANSIT_AUTH_FAILURES="4/60",
            TRANSIT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    admin = system.token("admin")
    system.issue("04A1B2C3D4E5F6", 5_000)
    card = "/api/v1/cards/04A1B2C3D4E5F6"
    source = "127.0.0.2"
    assert raw_http.request(system.gateway.base_url, card, admin, source=source).status == 200
    for _ in range(4):
        assert raw_http.request(system.gateway.base_url, card, bad_token(),
                                source=source).status == 401
    assert raw_http.request(system.gateway.base_url, card, bad_token(),
                            source=source).status == 429
    assert raw_http.request(system.gateway.base_url, card, admin, source=source).status == 200
    log = system.gateway.log_path.read_text()
    assert "failed sign-ins are counted in this gateway alone" in log, log[-3000:]
