"""How a view declares its operation for the OpenAPI description, next to the view.

`@operation(...)` records a summary, the path and query parameters, the request body,
the responses with their media types and schemas, and the error statuses the view can
give; `fare_gateway.http.openapi` walks the application's URL map and turns what it
finds into the description. Schemas are plain JSON Schema (OpenAPI 3.1 uses JSON
Schema 2020-12); one that carries a `title` becomes a named component, so a feature
module (tracking's too, which receives this decorator from the wiring) needs no import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

JSON = "application/json"
OPERATION_ATTRIBUTE = "openapi_operation"

Schema = dict[str, Any]
Content = Mapping[str, Schema]  # media type -> schema of the body
View = TypeVar("View", bound=Callable[..., Any])

ERROR: Schema = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "minLength": 1,
                     "description": "stable, machine-readable: `bad_card`, `not_found`, ..."},
            "message": {"type": "string", "minLength": 1,
                        "description": "what is wrong, for people"}}}},
}

CARD_TOKEN: Schema = {"type": "string", "pattern": "^[0-9A-F]{8,32}$",
                      "description": "the card token: 8-32 upper-case hex digits"}
IDENTIFIER: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}
MONEY: Schema = {"type": "integer",
                 "description": "whole units of the currency (rupiah); never a fraction"}


@dataclass(frozen=True)
class Operation:
    """What one view does, as the OpenAPI description shows it."""

    summary: str
    tag: str
    responses: Mapping[int, Content]
    errors: tuple[int, ...] = ()
    body: Schema | None = None
    body_required: bool = True
    path: Mapping[str, Schema] = field(default_factory=dict)
    query: Mapping[str, Schema] = field(default_factory=dict)
    description: str = ""
    links: Mapping[int, Mapping[str, Schema]] = field(default_factory=dict)
    required_query: tuple[str, ...] = ()  # query parameters the view cannot do without


def operation(summary: str, *, tag: str, responses: Mapping[int, Content],
              errors: Iterable[int] = (), body: Schema | None = None,
              body_required: bool = True, path: Mapping[str, Schema] | None = None,
              query: Mapping[str, Schema] | None = None, description: str = "",
              links: Mapping[int, Mapping[str, Schema]] | None = None,
              required_query: Iterable[str] = ()) -> Callable[[View], View]:
    """Declare a view's operation: `responses` maps each success status to its content.

    Authentication errors (401, 403, 429) come from `require`, the 400 of a body that is
    not a JSON object from `body`, the 404 of an unmatched path parameter from the URL
    rule; `errors` names the other error statuses the view itself gives. `links` are
    OpenAPI links from a success status to the operations its answer feeds.
    """
    declared = Operation(summary, tag, dict(responses), tuple(errors), body, body_required,
                         dict(path or {}), dict(query or {}), description, dict(links or {}),
                         tuple(required_query))

    def mark(view: View) -> View:
        setattr(view, OPERATION_ATTRIBUTE, declared)
        return view

    return mark


def declared_operation(view: Callable[..., Any]) -> Operation | None:
    """The operation a view declared, or None."""
    return getattr(view, OPERATION_ATTRIBUTE, None)


def json_content(schema: Schema) -> Content:
    """A JSON body of this schema."""
    return {JSON: schema}
