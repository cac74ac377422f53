"""The one error format of the HTTP API: `{"error": {"code", "message"}}` (contract section 3).

Every failure a request can meet is rendered here, so that no view builds an error body
of its own and bad input never reaches the client as a 500.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

# Headers of Werkzeug's own errors worth keeping on ours (405 says which methods exist).
KEPT_HEADERS = ("Allow", "Retry-After")


class ApiError(Exception):
    """An error the client can act on, rendered as `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> Response:
    """The JSON error body with its status (and the challenge a 401 must carry)."""
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="transit"'
    return resp


def register_error_handlers(app: Flask, max_body_bytes: int) -> None:
    """Render our errors, Werkzeug's and unexpected ones in the one format."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code == 413:  # bad input is a 400 (contract section 3)
            return error_response(400, "too_large", f"the body is over {max_body_bytes} bytes")
        code = (exc.name or "error").lower().replace(" ", "_")
        resp = error_response(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name in KEPT_HEADERS:
                resp.headers[name] = value
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if _database_away(exc):
            # The database not answering is the surroundings, not a bug: say so.
            app.logger.warning("database unavailable: %s",
                               str(getattr(exc, "orig", exc)).splitlines()[0:1])
            resp = error_response(503, "database_unavailable",
                                  "the database does not answer; try again shortly")
            resp.headers["Retry-After"] = "5"
            return resp
        app.logger.exception("unhandled error")
        return error_response(500, "internal", "internal error; it has been logged")


def _database_away(exc: Exception) -> bool:
    """Whether `exc` is the database driver failing to reach the database (the views
    hold no SQL, so the driver's error is recognised by what it carries, not imported):
    a lost connection, or one refused."""
    if not type(exc).__module__.startswith("sqlalchemy"):
        return False
    if getattr(exc, "connection_invalidated", False):
        return True
    orig = getattr(exc, "orig", None)
    return isinstance(orig, ConnectionError) or "connect" in str(orig).lower()
