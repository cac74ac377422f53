"""docs/api.md, the API reference, rendered from the OpenAPI description.

`python -m fare_gateway.http.reference docs/api.md` writes it; a test renders it again
and compares, so the page cannot drift from `GET /openapi.json`. The description is
taken from an application built on the built-in fare policy (its categories appear in
the card schema); nothing is connected to.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Flask

from fare_gateway.http.openapi import ERROR_RESPONSES, build_description

ROLES_LINE = re.compile(r"(?:^|\n\n)Roles: [^\n]*$")

HEADER = """\
# HTTP API reference

<!-- Generated from the OpenAPI description by
     `python -m fare_gateway.http.reference docs/api.md`; edit the views, not this page. -->

The gateway serves this API on `TRANSIT_HTTP` (default `127.0.0.1:8080`); the same
description, as OpenAPI 3.1, is at `GET /openapi.json` of every running gateway (with
the categories of its own fare policy; this page shows the built-in policy's).

- **Authentication**: `Authorization: Bearer <token>`, tokens from
  `transit tokens create --role ROLE`. `admin` may do everything; `ops` and `finance`
  what names them. No or a bad token is a 401, the wrong role a 403; an address that
  keeps presenting bad tokens is refused with a 429 for five minutes.
- **Errors** are `{"error": {"code": "...", "message": "..."}}` (schema `Error`); bad
  input is a 400, 404, 409 or 422, never a 500.
- **Headers**: every response carries `X-Content-Type-Options: nosniff`; every answer to
  an authenticated request `Cache-Control: no-store`.
- **Values**: money is an integer number of the currency's smallest unit (whole
  rupiah), times are integer milliseconds since the Unix epoch (UTC).
"""


def reference_app() -> Flask:
    """An application on the built-in policy and an in-memory database, as every page
    shows it; its clients connect lazily, so building it reaches no server."""
    from fare_gateway.fares.policy import policy_from_setting
    from fare_gateway.http.app import ApiDeps, create_app
    from fare_gateway.metrics import Metrics
    from ledger.adapters.db import make_engine, session_factory
    from ledger.services import Ledger
    from tracking.store import TrackingStore, redis_client

    engine = make_engine("sqlite://")
    policy = policy_from_setting("")
    store = TrackingStore(redis_client("redis://127.0.0.1:6379/0"), "reference")
    return create_app(ApiDeps(session_factory(engine), Ledger(engine, policy.currency),
                              policy, Metrics(), lambda: True, tracking=store))


def render(spec: dict[str, Any]) -> str:
    """The Markdown reference of an OpenAPI description."""
    return "\n".join([HEADER, *_operations(spec), *_schemas(spec)]).rstrip() + "\n"


def _operations(spec: dict[str, Any]) -> Iterator[str]:
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            by_tag.setdefault(op["tags"][0], []).append((method.upper(), path, op))
    errors = spec["components"]["responses"]
    yield "## Errors\n\nEach operation lists the error statuses it can give, all with an " \
          "[`Error`](#error) body:\n"
    yield "| status | when |\n|---|---|"
    for status, (name, _) in sorted(ERROR_RESPONSES.items()):
        yield f"| {status} | {errors[name]['description']} |"
    yield ""
    for tag in spec.get("tags", []):
        ops = by_tag.pop(tag["name"], [])
        if not ops:
            continue
        yield f"## {tag['name'].capitalize()}\n\n{tag['description']}\n"
        for method, path, op in ops:
            yield from _operation(method, path, op)
    if by_tag:
        raise ValueError(f"operations tagged with undeclared tags: {sorted(by_tag)}")


def _operation(method: str, path: str, op: dict[str, Any]) -> Iterator[str]:
    yield f"### `{method} {path}`\n\n{op['summary']}.\n"
    roles = op.get("x-roles")
    yield ("Roles: " + ", ".join(f"`{r}`" for r in roles) + ".\n") if roles else \
        "No token needed.\n"
    text = ROLES_LINE.sub("", op.get("description", "")).strip()
    if text:
        yield text + "\n"
    if op.get("parameters"):
        yield "| parameter | in | value | description |\n|---|---|---|---|"
        for p in op["parameters"]:
            required = "" if p.get("required") else " (optional)"
            yield (f"| `{p['name']}`{required} | {p['in']} | {_type(p['schema'])} | "
                   f"{p['schema'].get('description', '')} |")
        yield ""
    if "requestBody" in op:
        for media, body in op["requestBody"]["content"].items():
            yield f"Body ({media}): {_type(body['schema'])}.\n"
    yield "| status | body |\n|---|---|"
    failures = []
    for status, resp in op["responses"].items():
        if "$ref" in resp:
            failures.append(f"`{status}`")
            continue
        bodies = ", ".join(f"{_type(c['schema'])} ({media})" if c["schema"] else media
                           for media, c in resp.get("content", {}).items())
        yield f"| {status} {resp['description']} | {bodies or '-'} |"
    yield ""
    if failures:
        yield "Errors: " + " ".join(failures) + ".\n"


def _schemas(spec: dict[str, Any]) -> Iterator[str]:
    yield "## Schemas\n"
    for name, schema in spec["components"]["schemas"].items():
        yield f"### {name}\n"
        if schema.get("description"):
            yield schema["description"] + "\n"
        parts = schema.get("allOf", [schema])
        extends = [_type(p) for p in parts if "$ref" in p]
        if extends:
            yield "All of " + ", ".join(extends) + ", and:\n"
        for part in parts:
            yield from _fields(part)
        yield ""


def _fields(schema: dict[str, Any]) -> Iterator[str]:
    properties = schema.get("properties", {})
    if not properties:
        return
    required = set(schema.get("required", []))
    yield "| field | type | description |\n|---|---|---|"
    for field, sub in properties.items():
        optional = "" if field in required else " (optional)"
        yield f"| `{field}`{optional} | {_type(sub)} | {sub.get('description', '')} |"


def _type(schema: dict[str, Any]) -> str:
    """A short, readable form of a schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[`{name}`](#{name.lower()})"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind is None:
        return "any"
    kinds = kind if isinstance(kind, list) else [kind]
    words = []
    for k in kinds:
        if k == "array":
            words.append(f"array of {_type(schema.get('items', {}))}")
        elif k == "object" and "additionalProperties" in schema:
            words.append(f"object of {_type(schema['additionalProperties'])}")
        else:
            words.append(k)
    text = " or ".join(words)
    if "format" in schema:  # says more to a reader than the pattern that enforces it
        text += f" ({schema['format']})"
    elif "pattern" in schema:
        pattern = schema["pattern"].replace("|", "\\|")  # a bare | would end a table cell
        text += f" `{pattern}`"
    if "minimum" in schema and "maximum" in schema:
        text += f" {schema['minimum']}..{schema['maximum']}"
    return text


def main(argv: list[str]) -> int:
    """Write the reference to the file named (or print it)."""
    text = render(build_description(reference_app()))
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
