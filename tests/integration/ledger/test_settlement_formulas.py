"""A settlement file that cannot be turned against the clerk who opens it (issue 14,
point 7; contract section 6): a text field beginning with `=`, `+`, `-` or `@` is written
with a leading `'`, integers are written as they are, and `transit reconcile` still
vouches for the file as written and still catches an edit of it.

The hostile ids reach the ledger the ways they can: a route id beginning with `-` is a
valid id on the wire (contract section 1), so a real signed tap carries it; its route's
operator is a GTFS agency id already in the database (the importer now refuses such ids,
older rows may hold them); a category and another route beginning with `@` and `+` are
posted through the ledger's own API. The day is a recent one, inside the age a tap may
have (contract section 10), and closed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.audit import Actor
from ledger.domain import fare_entry
from tests.integration.ledger.test_settlement import (
    BUS1,
    A,
    World,
    assert_caught,
    assert_clean,
    at,
    env_for,
    new_world,
    settle,
    tap,
)
from tests.support.days import business_days_back
from tests.support.settlements import totals
from tracking.integrity import new_route, record_network

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

FORMULA = '=HYPERLINK("https://evil.example/","Klik")'
TEXT_COLUMNS = ("settlement_date", "line_type", "service_date", "operator_id", "route_id",
                "category", "currency")


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    w = new_world(db_url)
    yield w
    w.engine.dispose()


def build_hostile_day(w: World, day: str) -> None:
    """A top-up, a real tap on route `-R1` (operator `FORMULA`), and a fare with its
    correction posted through the ledger for route `+R2`, operator `@ops`, category
    `-staff`."""
    with w.sessions.begin() as s:
        s.add(new_route(w.ledger.fingerprints, "-R1", FORMULA, short_name="-R1"))
        record_network(s, w.ledger.fingerprints, Actor.command(), "fixture")
    w.topup(A, 20000, "counter-1", at(day, 4))
    assert w.taps(at(day, 8), tap(BUS1, A, "-R1", at(day, 8) - 2000)) == ["charged"]
    hostile = {"card": A, "currency": "IDR", "operator_id": "@ops", "route_id": "+R2",
               "category": "-staff", "service_date": day, "tap_id": "DEV-1:900"}
    w.now_ms = at(day, 9)
    with w.sessions.begin() as s:
        w.ledger.post(s, [fare_entry(fare=2500, digest="d1", **hostile)])
    w.now_ms = at(day, 10)
    with w.sessions.begin() as s:
        w.ledger.post(s, [fare_entry(fare=-2500, digest="d2", kind="correction",
                                     idem_key="correction:DEV-1:900:1", **hostile)])


def test_formula_ids_are_written_as_text_and_the_file_still_reconciles(
        world: World, db_url: str, tmp_path: Path) -> None:
    day = business_days_back(2)
    build_hostile_day(world, day)
    env = env_for(db_url)
    out = tmp_path / "out"
    raw, manifest, _ = settle(env, day, out)

    # by hand: sorted by the key columns as written (`'` < `=` < `@`)
    assert raw.decode() == (
        "settlement_date,line_type,service_date,operator_id,route_id,category,count,"
        "amount,currency\n"
        f"{day},correction,{day},'@ops,'+R2,'-staff,1,-2500,IDR\n"
        f'{day},fare,{day},"\'=HYPERLINK(""https://evil.example/"",""Klik"")",\'-R1,'
        "regular,1,5000,IDR\n"
        f"{day},fare,{day},'@ops,'+R2,'-staff,1,2500,IDR\n"
        f"{day},topup,{day},,,,1,20000,IDR\n")
    assert manifest["totals"] == totals(fare=7500, correction=-2500, topup=20000)

    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert [r["operator_id"] for r in rows] == ["'@ops", "'" + FORMULA, "'@ops", ""]
    assert [r["route_id"] for r in rows] == ["'+R2", "'-R1", "'+R2", ""]
    assert [r["category"] for r in rows] == ["'-staff", "regular", "'-staff", ""]
    for row in rows:
        for column in TEXT_COLUMNS:
            assert not row[column].startswith(("=", "+", "-", "@")), (column, row)
    # integers are not text: the correction's amount stays a negative number
    assert [int(r["amount"]) for r in rows] == [-2500, 5000, 2500, 20000]
    assert rows[0]["amount"] == "-2500"

    assert_clean(env)
    assert_clean(env, day, "--dir", str(out))
    # the file edited back into a live formula is caught, by name
    path = out / f"settlement-{day}.csv"
    path.write_bytes(raw.replace(b"\"'=HYPERLINK", b'"=HYPERLINK'))
    assert_caught(env, f"settlement-{day}.csv", args=("--dir", str(out)))
