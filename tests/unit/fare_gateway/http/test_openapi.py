"""The OpenAPI description: complete (every route of the application, nothing more),
valid OpenAPI 3.1, roles and errors as contract section 3 says, and what docs/api.md
shows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from fare_gateway.http.openapi import build_description
from fare_gateway.http.operations import json_content, operation
from fare_gateway.http.reference import reference_app, render

ROOT = Path(__file__).resolve().parents[4]
FLASK_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")

# Contract section 3, by hand: who may call each endpoint (None: no token needed).
CONTRACT: dict[str, tuple[str, ...] | None] = {
    "GET /healthz": None,
    "GET /metrics": None,
    "POST /api/v1/cards": ("admin",),
    "GET /api/v1/cards/{card}": ("admin", "finance"),
    "POST /api/v1/cards/{card}/topups": ("admin",),
    "POST /api/v1/cards/{card}/block": ("admin",),
    "POST /api/v1/cards/{card}/unblock": ("admin",),
    "GET /api/v1/cards/{card}/taps": ("admin", "finance"),
    "GET /api/v1/vehicles": ("admin", "ops"),
    "GET /api/v1/vehicles/stream": ("admin", "ops"),
    "GET /api/v1/validators": ("admin", "ops"),
    "GET /api/v1/exceptions": ("admin", "ops"),  # section 8
    "GET /api/v1/ops/alerts": ("admin", "ops"),
    "GET /api/v1/vehicles/{vehicle_id}/track": ("admin", "ops"),
    "GET /api/v1/routes/{route_id}/headways": ("admin", "ops"),
    "PUT /api/v1/routes/{route_id}/headways/thresholds": ("admin", "ops"),
    "POST /api/v1/alerts": ("admin", "ops"),
    "GET /api/v1/alerts": ("admin", "ops"),
    "DELETE /api/v1/alerts/{alert_id}": ("admin", "ops"),
    "GET /gtfs-rt/alerts": None,
    "GET /api/v1/rider/alerts": ("rider",),
    "GET /gtfs-rt/vehicle-positions": None,
    "GET /gtfs-rt/trip-updates": None,
    "GET /api/v1/settlements/{day}": ("admin", "finance"),
    "GET /api/v1/settlements/{day}/lines.csv": ("admin", "finance"),
    "GET /": None,
    "GET /openapi.json": None,
    # section 7
    "POST /api/v1/cards/{card}/check-code": ("admin",),
    "POST /api/v1/rider/accounts": None,
    "POST /api/v1/rider/login": None,
    "POST /api/v1/rider/cards": ("rider",),
    "GET /api/v1/rider/cards": ("rider",),
    "GET /api/v1/rider/cards/{card}/statement": ("rider",),
    "POST /api/v1/rider/cards/{card}/lost": ("rider",),
    "POST /api/v1/rider/cards/{card}/replace": ("rider",),
    "POST /api/v1/rider/disputes": ("rider",),
    "GET /api/v1/rider/disputes": ("rider",),
    "GET /api/v1/disputes": ("admin", "ops", "finance"),
    "GET /api/v1/disputes/{dispute_id}": ("admin", "ops", "finance"),
    "POST /api/v1/disputes/{dispute_id}/answer": ("admin", "ops", "finance"),
    "GET /rider/": None,
    "GET /api/v1/audit": ("admin",),  # section 9
    "GET /api/v1/finance/float/{day}": ("admin", "finance"),
    "GET /api/v1/finance/taps": ("admin", "finance"),
    "GET /api/v1/cards": ("admin", "finance"),
    "GET /api/v1/cards/{card}/statement": ("admin", "finance"),
    "POST /api/v1/adjustments": ("admin", "finance"),
    "GET /api/v1/adjustments": ("admin", "finance"),
    "GET /api/v1/adjustments/{adjustment_id}": ("admin", "finance"),
    "POST /api/v1/adjustments/{adjustment_id}/approve": ("admin", "finance"),
    "POST /api/v1/adjustments/{adjustment_id}/reject": ("admin", "finance"),
}
NON_JSON = {"GET /metrics": "text/plain", "GET /api/v1/vehicles/stream": "text/event-stream",
            "GET /gtfs-rt/vehicle-positions": "application/x-protobuf",
            "GET /api/v1/settlements/{day}/lines.csv": "text/csv", "GET /": "text/html",
            "GET /static/map/{name}": "text/javascript",
            "GET /static/leaflet/{name}": "text/javascript",
            "GET /rider/": "text/html", "GET /disputes/": "text/html",
            "GET /static/pages/{name}": "text/javascript",
            "GET /api/v1/finance/taps": "text/csv"}


@pytest.fixture(scope="module")
def app() -> Flask:
    return reference_app()


@pytest.fixture(scope="module")
def spec(app: Flask) -> dict[str, Any]:
    return build_description(app)


def routes(app: Flask) -> set[str]:
    """Every method and path the application answers, in OpenAPI's path syntax."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":  # Flask's own (this application has none)
            continue
        path = FLASK_PARAMETER.sub(r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            out.add(f"{method} {path}")
    return out


def described(spec: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in spec["paths"].items()
            for method in item}


def operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{method.upper()} {path}": op for path, item in spec["paths"].items()
            for method, op in item.items()}


def test_every_route_is_described_and_nothing_else(app: Flask, spec: dict[str, Any]) -> None:
    assert sorted(routes(app) - described(spec)) == [], "routes the description lacks"
    assert sorted(described(spec) - routes(app)) == [], "described but not served"


def test_an_undeclared_view_is_missing_from_the_description() -> None:
    """The completeness check above can fail: a view without `@operation` is left out."""
    app = Flask(__name__, static_folder=None)

    @app.get("/declared")
    @operation("Declared", tag="meta", responses={200: json_content({"type": "object"})})
    def declared() -> str:
        return "{}"

    @app.post("/forgotten/<thing>")
    def forgotten(thing: str) -> str:
        return thing

    spec = build_description(app)
    assert routes(app) - described(spec) == {"POST /forgotten/{thing}"}


def test_contract_endpoints_are_described_with_their_roles(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    for endpoint, roles in CONTRACT.items():
        assert endpoint in ops, f"{endpoint} is not described"
        op = ops[endpoint]
        if roles is None:
            assert op["security"] == [], endpoint
            # A public endpoint asks for no token, so none can be refused; a wrong
            # password at the riders' login is a 401 (contract section 7).
            assert ("401" in op["responses"]) is (endpoint == "POST /api/v1/rider/login"), \
                endpoint
        else:
            assert op["security"] == [{"bearer": []}], endpoint
            assert sorted(op["x-roles"]) == sorted(roles), endpoint
            for status in ("401", "403", "429"):
                assert status in op["responses"], (endpoint, status)
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "an API token"}


def test_description_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_errors_use_the_error_schema_and_bodies_their_media_types(
        spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    responses = spec["components"]["responses"]
    for name, response in responses.items():
        assert response["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}, name
    for endpoint, op in operations(spec).items():
        for status, response in op["responses"].items():
            if int(status) >= 400 and not (endpoint == "GET /healthz" and status == "503"):
                assert set(response) == {"$ref"}, (endpoint, status)
                assert response["$ref"].rsplit("/", 1)[1] in responses, (endpoint, status)
            else:
                assert response["description"] and response["content"], (endpoint, status)
        media = {m for s, r in op["responses"].items() if int(s) < 300
                 for m in r.get("content", {})}
        assert NON_JSON.get(endpoint, "application/json") in media, (endpoint, media)
        if "requestBody" in op:
            assert "400" in op["responses"], endpoint  # a body that is not a JSON object
        if "{" in endpoint:
            assert "404" in op["responses"], endpoint
            names = re.findall(r"{(\w+)}", endpoint)
            assert [p["name"] for p in op.get("parameters", []) if p["in"] == "path"] == names


def test_two_different_schemas_may_not_share_a_title() -> None:
    app = Flask(__name__, static_folder=None)
    for path, kind in (("/a", "string"), ("/b", "integer")):
        app.add_url_rule(path, path, operation(
            "x", tag="meta", responses={200: json_content({"title": "Same", "type": kind})})(
            lambda: "x"))
    with pytest.raises(ValueError, match="Same"):
        build_description(app)


def test_the_reference_page_is_rendered_from_the_description(spec: dict[str, Any]) -> None:
    page = (ROOT / "docs" / "api.md").read_text()
    assert page == render(spec), (
        "docs/api.md does not match the description: run "
        "python -m fare_gateway.http.reference docs/api.md")
    for endpoint in CONTRACT:
        assert f"### `{endpoint}`" in page, endpoint
