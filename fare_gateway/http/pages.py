"""The pages people open in a browser besides the map: the passengers' page at `/rider/`
and the staff disputes queue at `/disputes/` (contract section 7), with their files.

Both are static: they hold no data and call the API with the token their user typed or
got by logging in, so they are served to anyone. Everything they load comes from the
gateway itself, which their Content-Security-Policy enforces: no other origin, no inline
script or style, no framing, and no HTML built from strings (Trusted Types), so a name
in the data can only ever be shown as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, send_from_directory

from fare_gateway.http.operations import operation

WEB = Path(__file__).resolve().parents[1] / "web"
TAG = "pages"
TEXT: dict[str, Any] = {"type": "string"}
# The page files a browser may fetch: scripts and styles (a page itself only with its
# headers, at its own address).
ASSET_TYPES = (".js", ".css")
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # A page or file of a newer gateway is fetched again, not taken from a cache unasked.
    "Cache-Control": "no-cache",
}


def pages_blueprint() -> Blueprint:
    """`GET /rider/`, `GET /disputes/` and `GET /static/pages/...`, no token needed."""
    bp = Blueprint("pages", __name__)

    @bp.after_request
    def _headers(resp: Response) -> Response:
        for name, value in PAGE_HEADERS.items():
            resp.headers.setdefault(name, value)
        return resp

    @bp.get("/rider/")
    @operation("The passengers' page", tag=TAG, responses={200: {"text/html": TEXT}},
               description="Sign up, log in, link a card with its check code, see "
                           "balances and statements, report a card lost, replace it, "
                           "and open and follow disputes; in Indonesian or English. The "
                           "login token is kept in session storage and sent only in the "
                           "Authorization header.")
    def rider_page() -> Response:
        return send_from_directory(WEB / "rider", "index.html")

    @bp.get("/disputes/")
    @operation("The staff disputes queue", tag=TAG, responses={200: {"text/html": TEXT}},
               description="Sign in with an `ops` or `finance` token typed into the page: "
                           "the disputes overdue, escalated and open, each with its clock "
                           "and evidence, and the answer form (a refund takes finance).")
    def disputes_page() -> Response:
        return send_from_directory(WEB / "disputes", "index.html")

    @bp.get("/static/pages/<path:name>")
    @operation("The pages' scripts and styles", tag=TAG,
               path={"name": {**TEXT, "description": "`rider/rider.js`, `common/page.css`, "
                                                     "..."}},
               responses={200: {"text/javascript": TEXT, "text/css": TEXT}},
               errors=(404,))
    def page_file(name: str) -> Response:
        if not name.endswith(ASSET_TYPES):
            abort(404, f"no page file {name}")
        return send_from_directory(WEB, name)

    return bp
