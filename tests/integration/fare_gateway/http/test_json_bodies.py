"""JSON bodies a parser could read two ways, against a running `transit gateway` on
PostgreSQL and SQLite (issue 14, contract sections 3 and 10): a key given twice in an
object is a 400 in the error format, and no card is issued or credited by it; the 64 KiB
and nesting limits still hold, to the byte."""

from __future__ import annotations

import json

from tests.conftest import System
from tests.integration.fare_gateway.http.client import Api, balance_of, expect

CARD = "04A1B2C3D4E5F6"
LIMIT = 64 * 1024


def test_a_key_given_twice_is_refused_and_changes_nothing(system: System) -> None:
    api = Api(system.http)
    admin = system.token("admin")
    # Kept first or kept last, either reading of these bodies would do something.
    for raw in (b'{"card": "04A1B2C3D4E5F6", "card": "04FFEEDDCCBBAA", "category": "regular"}',
                b'{"card": "04A1B2C3D4E5F6", "category": "student", "category": "senior"}',
                b'{"card": "04A1B2C3D4E5F6", "x": {"a": 1, "a": 2}}'):
        error = expect(api.request("POST", "/api/v1/cards", raw=raw, token=admin), 400,
                       raw.decode())["error"]
        assert error["code"] == "duplicate_key", error
    for card in (CARD, "04FFEEDDCCBBAA"):
        expect(api.get(f"/api/v1/cards/{card}", admin), 404, f"{card} was issued")

    expect(api.post("/api/v1/cards", {"card": CARD}, admin), 201, "issue")
    url = f"/api/v1/cards/{CARD}/topups"
    for raw in (b'{"amount": 1000, "amount": 900000, "reference": "dup-amount"}',
                b'{"amount": 1000, "reference": "dup-ref", "reference": "dup-ref-2"}'):
        error = expect(api.request("POST", url, raw=raw, token=admin), 400,
                       raw.decode())["error"]
        assert error["code"] == "duplicate_key", error
    assert balance_of(api, admin, CARD) == 0
    # The same top-ups, each key once, are credited: the refusal was of the repetition.
    for reference in ("dup-amount", "dup-ref"):
        expect(api.post(url, {"amount": 1000, "reference": reference}, admin), 201, reference)
    assert balance_of(api, admin, CARD) == 2000


def test_the_size_and_depth_limits_hold_to_the_byte(system: System) -> None:
    api = Api(system.http)
    admin = system.token("admin")
    system.issue(CARD)
    url = f"/api/v1/cards/{CARD}/topups"

    def body(reference: str, size: int) -> bytes:
        head = json.dumps({"amount": 1000, "reference": reference, "note": ""}).encode()
        padded = head[:-2] + b" " * (size - len(head)) + head[-2:]
        assert len(padded) == size
        return padded

    expect(api.request("POST", url, raw=body("at-limit", LIMIT), token=admin), 201, "64 KiB")
    error = expect(api.request("POST", url, raw=body("over-limit", LIMIT + 1), token=admin),
                   400, "64 KiB + 1")["error"]
    assert error["code"] == "too_large", error
    nested = b'{"amount": ' + b"[" * 20_000 + b"]" * 20_000 + b', "reference": "deep"}'
    assert len(nested) < LIMIT
    error = expect(api.request("POST", url, raw=nested, token=admin), 400, "deep")["error"]
    assert error["code"] == "malformed_json", error
    assert balance_of(api, admin, CARD) == 1000
