"""Headers every response carries (contract section 3)."""

from __future__ import annotations

from flask import Response, current_app, request

from fare_gateway.http.auth import required_roles


def protective_headers(resp: Response) -> Response:
    """`nosniff` on every response; `no-store` on every answer to an authenticated request.

    A request is authenticated when it presents credentials or asks for a protected
    view: its answer (a card's balance, a refusal) must stay out of every cache.
    """
    resp.headers["X-Content-Type-Options"] = "nosniff"
    view = current_app.view_functions.get(request.endpoint or "")
    if "Authorization" in request.headers or (
            view is not None and required_roles(view) is not None):
        resp.headers["Cache-Control"] = "no-store"
    return resp
