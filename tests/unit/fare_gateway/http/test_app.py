"""The application's one error format and its protective headers, in process (the
live gateway is exercised by tests/integration/fare_gateway/http/test_openapi.py)."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fare_gateway.http.reference import reference_app


@pytest.fixture(scope="module")
def app() -> Flask:
    return reference_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def error_of(body: Any) -> dict[str, str]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] and body["error"]["message"], body
    return dict(body["error"])


def test_a_protected_endpoint_without_a_token_is_401_not_cached(client: FlaskClient) -> None:
    for path in ("/api/v1/cards/04A1B2C3D4E5F6", "/api/v1/vehicles",
                 "/api/v1/settlements/2025-01-01/lines.csv"):
        resp = client.get(path)
        assert resp.status_code == 401, path
        assert error_of(resp.get_json())["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="transit"'
        assert resp.headers["Cache-Control"] == "no-store", path
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path


def test_every_response_says_nosniff_and_an_answer_to_credentials_is_not_stored(
        client: FlaskClient) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json", "/", "/static/map/map.js",
                 "/no/such/path"):
        resp = client.get(path)
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        # Without credentials a public answer may be cached (the map's files are).
        assert resp.headers.get("Cache-Control") != "no-store", path
        resp = client.get(path, headers={"Authorization": "Bearer anything"})
        assert resp.headers["X-Content-Type-Options"] == "nosniff", path
        assert resp.headers["Cache-Control"] == "no-store", path


def test_unknown_paths_and_methods_get_the_error_format(client: FlaskClient) -> None:
    resp = client.get("/api/v1/nothing-here")
    assert resp.status_code == 404 and error_of(resp.get_json())["code"] == "not_found"
    resp = client.delete("/api/v1/cards")
    assert resp.status_code == 405
    assert error_of(resp.get_json())["code"] == "method_not_allowed"
    allowed = set(resp.headers["Allow"].replace(" ", "").split(","))
    assert allowed == {"GET", "HEAD", "POST", "OPTIONS"}  # issue a card; search (finance)


def test_an_unknown_feed_format_is_a_400(client: FlaskClient) -> None:
    resp = client.get("/gtfs-rt/vehicle-positions?format=xml")
    assert resp.status_code == 400
    assert "protobuf, json" in error_of(resp.get_json())["message"]


def test_metrics_name_one_charset(client: FlaskClient) -> None:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
