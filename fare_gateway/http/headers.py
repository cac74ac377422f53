"""Headers every response carries (contract section 3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, request

from fare_gateway.http.auth import required_roles

NO_STORE_ATTRIBUTE = "no_store"  # set by `no_store` on a view whose answers hold secrets
View = TypeVar("View", bound=Callable[..., Any])


def no_store(view: View) -> View:
    """Keep every answer of this view out of caches, though it needs no token (a login:
    its answer is a token)."""
    setattr(view, NO_STORE_ATTRIBUTE, True)
    return view


def protective_headers(resp: Response) -> Response:
    """`nosniff` on every response; `no-store` on every answer to an authenticated request.

    A request is authenticated when it presents credentials or asks for a protected
    view: its answer (a card's balance, a refusal) must stay out of every cache. A view
    marked `no_store` (a login, a sign-up: they present a password) is kept out too.
    """
    resp.headers["X-Content-Type-Options"] = "nosniff"
    view = current_app.view_functions.get(request.endpoint or "")
    if "Authorization" in request.headers or (view is not None and (
            required_roles(view) is not None or getattr(view, NO_STORE_ATTRIBUTE, False))):
        resp.headers["Cache-Control"] = "no-store"
    return resp
