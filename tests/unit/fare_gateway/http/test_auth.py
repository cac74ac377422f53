"""The authentication decorator in process: what a presented token costs before it is
known to be bad. The token store is a lookup written here that counts its calls; the
failure limit is the real one, counting in memory."""

from __future__ import annotations

import secrets

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from fare_gateway.http.auth import Authenticator, AuthFailures, install, require
from fare_gateway.http.errors import register_error_handlers
from fare_gateway.tokens import PREFIX, Principal, well_formed

LIMIT = 3


def made_like_create_token() -> str:
    return f"{PREFIX}_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"


VALID = made_like_create_token()


class CountingLookup:
    """Knows one token; remembers every token it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, token: str) -> Principal | None:
        self.asked.append(token)
        return Principal("t1", "ops") if token == VALID else None


@pytest.fixture
def lookup() -> CountingLookup:
    return CountingLookup()


@pytest.fixture
def client(lookup: CountingLookup) -> FlaskClient:
    app = Flask(__name__)
    register_error_handlers(app, 1024)
    install(app, Authenticator(lookup, AuthFailures(limit=LIMIT, window_s=60, block_s=300)))

    @app.get("/ops")
    @require("ops")
    def ops() -> object:
        return jsonify(ok=True)

    return app.test_client()


def status(client: FlaskClient, token: str) -> int:
    return client.get("/ops", headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.mark.parametrize("token", [
    "garbage",
    "x" * 500,
    f"{PREFIX}_{'0' * 16}_{'A' * 42}",         # one character short
    f"{PREFIX}_{'0' * 16}_{'A' * 44}",         # one too many
    f"{PREFIX}_{'G' * 16}_{'A' * 43}",         # the id is not lower-case hex
    f"xx_{'0' * 16}_{'A' * 43}",               # another prefix
    f"{PREFIX}_{'0' * 16}_{'A' * 42}=",        # padding is never part of one
])
def test_a_token_of_the_wrong_shape_costs_no_lookup(client: FlaskClient,
                                                    lookup: CountingLookup, token: str) -> None:
    assert not well_formed(token)
    assert [status(client, token) for _ in range(LIMIT + 2)] == [401] * LIMIT + [429] * 2
    assert lookup.asked == []
    # Blocked, the address is refused without a lookup; a real token still passes.
    assert status(client, VALID) == 200 and lookup.asked == [VALID]


def test_a_token_of_the_right_shape_is_looked_up(client: FlaskClient,
                                                 lookup: CountingLookup) -> None:
    guesses = [made_like_create_token() for _ in range(LIMIT + 1)]
    assert all(well_formed(g) for g in [VALID, *guesses])
    assert [status(client, g) for g in guesses] == [401] * LIMIT + [429]
    assert lookup.asked == guesses  # a valid one must pass from a blocked address
    assert status(client, VALID) == 200
