"""A database that does not answer is a 503 with a retry hint; a bad statement stays a
500: the one is the surroundings, the other a bug."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from fare_gateway.http.errors import register_error_handlers
from ledger.adapters.db import make_engine


def _app() -> Flask:
    app = Flask(__name__)
    register_error_handlers(app, 1000)

    @app.get("/away")
    def away() -> str:
        # Port 1: nothing listens there, so the connection is refused at once.
        engine = make_engine("postgresql://postgres@127.0.0.1:1/postgres")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return "reached"

    @app.get("/bad")
    def bad() -> str:
        with make_engine("sqlite://").connect() as conn:
            conn.execute(text("select * from no_such_table"))
        return "reached"

    return app


def test_a_database_that_does_not_answer_is_a_503_to_retry() -> None:
    resp = _app().test_client().get("/away")
    assert resp.status_code == 503
    assert resp.json == {"error": {"code": "database_unavailable",
                                   "message": "the database does not answer; try again "
                                              "shortly"}}
    assert resp.headers["Retry-After"] == "5"


def test_a_statement_that_fails_is_still_an_internal_error() -> None:
    resp = _app().test_client().get("/bad")
    assert resp.status_code == 500
    assert resp.json["error"]["code"] == "internal"
