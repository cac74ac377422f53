"""`GET /openapi.json`: the OpenAPI 3.1 description, generated from the application.

The generator walks the application's URL map; each rule's view declares its operation
with `fare_gateway.http.operations.operation`, and `require` says which roles it needs.
apispec assembles the document (its Flask plugin turns URL rules into OpenAPI paths).
A view that declares nothing is left out here and named by the completeness test.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from apispec import APISpec
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from werkzeug.routing import Rule

from fare_gateway.http.auth import required_roles
from fare_gateway.http.operations import (
    ERROR,
    JSON,
    Operation,
    Schema,
    declared_operation,
    json_content,
    operation,
)
from fare_gateway.tokens import RIDER

EXTENSION = "transit.openapi"
OPENAPI_VERSION = "3.1.0"
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # answered by Flask itself for every rule
RULE_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

# The error responses operations refer to: status -> (component name, when it happens).
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Malformed input: a body that is not a JSON object or is over "
                        "64 KiB, or a malformed value in the path or the query."),
    401: ("Unauthorized", "No bearer token, or one that is unknown, expired or revoked."),
    403: ("Forbidden", "The token's role may not do this."),
    404: ("NotFound", "Nothing by that name."),
    409: ("Conflict", "The request conflicts with what is recorded; the code says how."),
    422: ("Unprocessable", "A well-formed request whose values are refused; the code "
                           "says which."),
    429: ("TooManyFailures", "Too many failed sign-ins from this address: requests "
                             "without a valid token are refused for five minutes; or, "
                             "for a stream, the token holds as many as it may."),
    503: ("Unavailable", "The gateway serves as much of this as it can: try again "
                         "later (`Retry-After`) or another gateway."),
}
AUTH_ERRORS = (401, 403, 429)
TAGS = [
    {"name": "cards", "description": "Issue, show, top up, block and unblock cards."},
    {"name": "taps", "description": "Taps as charged, with what each costs now."},
    {"name": "settlements", "description": "A business day's settlement for finance "
                                           "(contract section 6)."},
    {"name": "tracking", "description": "Vehicles, validators and the GTFS-Realtime feed."},
    {"name": "operations", "description": "The command center: refused messages and taps "
                                          "not charged, and what needs an operator now "
                                          "(contract section 8)."},
    {"name": "map", "description": "The operations map and the files it loads."},
    {"name": "riders", "description": "Passengers' accounts, their cards, statements, lost "
                                      "and replaced cards (contract section 7)."},
    {"name": "disputes", "description": "Riders' disputes and their answers, with the "
                                        "48-hour clock (contract section 7)."},
    {"name": "finance", "description": "The float, the entries behind the settlement's "
                                       "lines, card search and adjustments under four eyes "
                                       "(contract section 9)."},
    {"name": "audit", "description": "The audit trail of every change made by staff and "
                                     "riders (contract section 9)."},
    {"name": "pages", "description": "The passengers' page and the staff disputes queue."},
    {"name": "health", "description": "Health and metrics, for operators' tools."},
    {"name": "meta", "description": "This description."},
]
DESCRIPTION = (
    "The back office of Surabaya's cashless bus fares: cards, top-ups, taps, settlements, "
    "and the live fleet. Authentication is `Authorization: Bearer <token>`, with tokens "
    "from `transit tokens create --role ROLE`; `admin` may do everything, `ops` and "
    "`finance` what names them. Every error is `{\"error\": {\"code\", \"message\"}}`. "
    "Money is an integer number of the currency's smallest unit, times are milliseconds "
    "since the epoch (UTC)."
)


def build_description(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every declared view of `app`."""
    spec = APISpec(title="Surabaya transit gateway", version=_version(),
                   openapi_version=OPENAPI_VERSION, plugins=[FlaskPlugin()],
                   info={"description": DESCRIPTION}, tags=TAGS)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "an API token"})
    named: dict[str, Schema] = {}
    error_ref = _hoist(ERROR, named)
    for name, text in ERROR_RESPONSES.values():
        spec.components.response(name, {"description": text,
                                         "content": {JSON: {"schema": error_ref}}})
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        declared = declared_operation(view)
        if declared is None:
            continue
        roles = required_roles(view)
        entry = _operation(rule, declared, roles, named)
        methods = sorted((rule.methods or set()) - IGNORED_METHODS)
        spec.path(view=view, app=app, operations={m.lower(): entry for m in methods})
    for name in sorted(named):
        spec.components.schema(name, component=named[name])
    return spec.to_dict()


def _operation(rule: Rule, declared: Operation, roles: tuple[str, ...] | None,
               named: dict[str, Schema]) -> dict[str, Any]:
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": _hoist(declared.path.get(name, {"type": "string"}), named)}
                  for name in RULE_ARGUMENT.findall(rule.rule)]
    parameters += [{"name": name, "in": "query", "required": name in declared.required_query,
                    "schema": _hoist(schema, named)}
                   for name, schema in declared.query.items()]
    errors = set(declared.errors)
    if roles is not None:
        errors.update(AUTH_ERRORS)
    if declared.body is not None:
        errors.add(400)  # not a JSON object, or too large
    if parameters and any(p["in"] == "path" for p in parameters):
        errors.add(404)  # a value the URL rule does not match
    responses: dict[str, Any] = {}
    for status in sorted({*declared.responses, *errors}):
        if status in declared.responses:
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {media: {"schema": _hoist(schema, named)}
                            for media, schema in declared.responses[status].items()}}
            if status in declared.links:
                responses[str(status)]["links"] = dict(declared.links[status])
        else:
            responses[str(status)] = ERROR_RESPONSES[status][0]
    description = declared.description
    # Admin may do what any staff role may; the rider endpoints answer to riders alone.
    holders = None if roles is None else list(dict.fromkeys(
        roles if RIDER in roles else ("admin", *roles)))
    if holders is not None:
        description = f"{description}\n\nRoles: {', '.join(holders)}.".strip()
    entry: dict[str, Any] = {"operationId": rule.endpoint, "summary": declared.summary}
    if description:
        entry["description"] = description
    entry["tags"] = [declared.tag]
    entry["security"] = [{"bearer": []}] if roles is not None else []
    if holders is not None:
        entry["x-roles"] = holders
    if parameters:
        entry["parameters"] = parameters
    if declared.body is not None:
        entry["requestBody"] = {"required": declared.body_required,
                                "content": {JSON: {"schema": _hoist(declared.body, named)}}}
    entry["responses"] = responses
    return entry


def _hoist(schema: Any, named: dict[str, Schema]) -> Any:
    """The schema with each titled part replaced by a reference to a named component."""
    if isinstance(schema, list):
        return [_hoist(item, named) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _hoist(value, named) for key, value in schema.items()}
    title = out.get("title")
    if not isinstance(title, str):
        return out
    if named.setdefault(title, out) != out:
        raise ValueError(f"two different schemas are titled {title!r}")
    return {"$ref": f"#/components/schemas/{title}"}


def _version() -> str:
    try:
        return version("surabaya-transit")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def description_of(app: Flask) -> dict[str, Any]:
    """The application's description, built once on first use."""
    cached = app.extensions.get(EXTENSION)
    if cached is None:
        cached = app.extensions[EXTENSION] = build_description(app)
    return cached


def openapi_blueprint() -> Blueprint:
    """`GET /openapi.json`, no token needed."""
    bp = Blueprint("openapi", __name__)

    @bp.get("/openapi.json")
    @operation("This description of the API (OpenAPI 3.1)", tag="meta",
               responses={200: json_content({"type": "object",
                                             "required": ["openapi", "info", "paths"]})})
    def description() -> Response:
        return jsonify(description_of(current_app))

    return bp
