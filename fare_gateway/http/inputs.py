"""Reading a request's input: its JSON body and the card named in its path."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import request

from fare_gateway.cards import CardError, parse_card
from fare_gateway.http.errors import ApiError
from ledger.services import CardNotFound


def json_object() -> dict[str, Any]:
    """The request's body, which must be a JSON object (else 400 `malformed_json`)."""
    try:
        data = request.get_json(silent=True, force=True)
    except RecursionError:  # nested deeper than the parser goes: malformed like any other
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
