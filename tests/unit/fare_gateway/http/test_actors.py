"""Who the audit trail says made a change through the API (`actor_of`): a staff token by
its id, holder's name and role, a rider by account number and never by e-mail, both
with the address the request came from."""

from __future__ import annotations

from flask import Flask, request

from fare_gateway.http.auth import actor_of
from fare_gateway.tokens import Principal
from ledger.audit import Actor


def test_a_staff_token_and_a_rider_as_the_audit_trail_names_them() -> None:
    app = Flask(__name__)
    with app.test_request_context("/api/v1/cards", environ_base={"REMOTE_ADDR": "10.1.2.3"}):
        assert actor_of(Principal("0123456789abcdef", "finance", None, "Siti Rahayu"),
                        request) == Actor("token", "0123456789abcdef", "Siti Rahayu",
                                          "finance", "10.1.2.3")
        assert actor_of(Principal("0123456789abcdef", "ops"), request) == Actor(
            "token", "0123456789abcdef", "", "ops", "10.1.2.3")
        assert actor_of(Principal("fedcba9876543210", "rider", 42), request) == Actor(
            "rider", "account:42", "", "rider", "10.1.2.3")
        # What the columns hold at most: a longer name is cut, never refused mid-change.
        long = actor_of(Principal("0123456789abcdef", "admin", None, "x" * 300), request)
        assert len(long.name) == 100
    with app.test_request_context("/api/v1/cards", environ_base={"REMOTE_ADDR": ""}):
        assert actor_of(Principal("0123456789abcdef", "admin"), request).source == ""
