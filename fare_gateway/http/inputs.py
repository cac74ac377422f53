"""Reading a request's input: its JSON body, the card named in its path, and the
instants and counts of its query."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import request

from fare_gateway.cards import CardError, parse_card
from fare_gateway.http.errors import ApiError
from fare_gateway.http.operations import Schema
from ledger.services import CardNotFound
from transit.instants import AS_OF, AS_OF_PATTERN, parse_instant

INSTANT: Schema = {"type": "string", "pattern": AS_OF_PATTERN,
                   "description": "an ISO-8601 instant with `Z` or an offset "
                                  "(2026-12-01T08:15:02.123Z), or epoch milliseconds"}


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys all differ: with a key given twice, the parser would keep
    the last copy, and a proxy or log that keeps the first would see another request."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _RepeatedKey(next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1))
    return obj


def json_object() -> dict[str, Any]:
    """The request's body, which must be a JSON object (else 400 `malformed_json`) whose
    objects name each key once (else 400 `duplicate_key`).

    The body is at most `MAX_BODY_BYTES` (the app refuses a longer one before this
    reads it), and a body nested deeper than the parser goes is malformed like any other.
    """
    try:
        data = json.loads(request.get_data(cache=True), object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise ApiError(400, "duplicate_key",
                       f"the key {exc.key[:64]!r} appears more than once in an object"
                       ) from None
    except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested too deep
        data = None
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", "the body must be a JSON object")
    return data


def card_in_path(card: str) -> str:
    """The card token of the URL; a malformed one is a 400 `bad_card`."""
    try:
        return parse_card(card)
    except CardError as exc:
        raise ApiError(400, exc.code, str(exc)) from None


@contextmanager
def known_card(card: str) -> Iterator[None]:
    """Turn the services' CardNotFound into a 404 `not_found`."""
    try:
        yield
    except CardNotFound:
        raise ApiError(404, "not_found", f"no card {card}") from None


def instant_arg(name: str, code: str = "bad_time") -> int | None:
    """The query's instant `name` (as `INSTANT` describes it) in epoch milliseconds, None
    when absent; a malformed one is a 400 `code`."""
    raw = request.args.get(name)
    if raw is None:
        return None
    ms = parse_instant(raw) if AS_OF.fullmatch(raw) else None
    if ms is None:
        raise ApiError(400, code, f"{name} must be an ISO-8601 instant with Z or an "
                                  "offset, or epoch milliseconds")
    return ms


def whole_arg(name: str, default: int, low: int, high: int) -> int:
    """The query's whole number `name`, from `low` to `high` (`default` when absent); any
    other value is a 400 `bad_{name}`."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, f"bad_{name}", f"{name} must be a whole number from {low} to "
                                           f"{high}")
    return int(raw)
