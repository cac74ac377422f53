"""A request's JSON body as the views read it (`json_object`), in process: an object
naming a key twice, at any depth, is a 400 `duplicate_key`; what is not a JSON object,
nested deeper than the parser goes or over 64 KiB is a 400 too (issue 14)."""

from __future__ import annotations

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient
from flask.wrappers import Response

from fare_gateway.http.app import MAX_BODY_BYTES
from fare_gateway.http.errors import register_error_handlers
from fare_gateway.http.inputs import json_object


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    register_error_handlers(app, MAX_BODY_BYTES)

    @app.post("/body")
    def body() -> Response:
        return jsonify(json_object())

    return app.test_client()


def error_code(client: FlaskClient, raw: bytes) -> str:
    resp = client.post("/body", data=raw, content_type="application/json")
    assert resp.status_code == 400, (raw[:80], resp.status_code)
    error = resp.get_json()["error"]
    assert set(error) == {"code", "message"} and error["message"], error
    return str(error["code"])


@pytest.mark.parametrize("raw", [
    b'{"amount": 1000, "amount": 900000}',
    b'{"a": {"b": 1, "b": 2}}',
    b'{"a": [{"b": 1}, {"c": 1, "c": 1}]}',
    b'{"\\u0061": 1, "a": 2}',  # the same key, spelt two ways
])
def test_a_key_given_twice_anywhere_is_refused(client: FlaskClient, raw: bytes) -> None:
    assert error_code(client, raw) == "duplicate_key"


def test_distinct_keys_and_the_same_key_in_sibling_objects_are_fine(
        client: FlaskClient) -> None:
    raw = b'{"a": {"b": 1}, "c": {"b": 2}, "d": [{"b": 3}, {"b": 4}]}'
    resp = client.post("/body", data=raw, content_type="application/json")
    assert resp.status_code == 200 and resp.get_json()["c"] == {"b": 2}


@pytest.mark.parametrize("raw", [b"", b"[1, 2]", b'"text"', b"{not json", b'{"a": "\xff"}',
                                 b"[" * 50_000 + b"]" * 10, b'{"a": ' * 10_000 + b"1"])
def test_what_is_not_an_object_is_malformed(client: FlaskClient, raw: bytes) -> None:
    assert error_code(client, raw) == "malformed_json"


def test_the_size_limit_is_64_kib_to_the_byte(client: FlaskClient) -> None:
    def padded(size: int) -> bytes:
        return b'{"a": "' + b"x" * (size - 9) + b'"}'

    assert len(padded(MAX_BODY_BYTES)) == MAX_BODY_BYTES == 64 * 1024
    resp = client.post("/body", data=padded(MAX_BODY_BYTES), content_type="application/json")
    assert resp.status_code == 200
    assert error_code(client, padded(MAX_BODY_BYTES + 1)) == "too_large"
