"""The ledger's commands and its translator of database failures, in-process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from ledger.cli import (
    SettlementTerms,
    explain,
    reconcile_command,
    settle_command,
    sqlite_file,
)
from ledger.reconcile import Report
from ledger.services import IdempotencyConflict
from ledger.settlement import MAX_DAY, MIN_DAY, BusinessCalendar, SettlementError
from tests.unit.commands import clean_runner, one_error
from transit.cli import RootGroup, cli
from transit.context import CommandContext
from transit.errors import TransitError
from transit.settings import Settings


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return clean_runner(tmp_path, monkeypatch)


@pytest.mark.parametrize("command", ["settle", "reconcile"])
def test_a_date_out_of_range_is_refused_with_the_range(runner: CliRunner, tmp_path: Path,
                                                       command: str) -> None:
    line = one_error(runner.invoke(cli, [command, "1999-01-01"]))
    assert f"out of range ({MIN_DAY.isoformat()} to {MAX_DAY.isoformat()})" in line, line
    assert not (tmp_path / "transit.db").exists()


@pytest.mark.parametrize("value,words", [("2025-02-30", "no such date"),
                                         ("27-11-2025", "YYYY-MM-DD"),
                                         ("yesterday", "YYYY-MM-DD")])
def test_a_date_that_is_not_one_is_refused(runner: CliRunner, value: str, words: str) -> None:
    assert words in one_error(runner.invoke(cli, ["settle", value]))


def test_database_failures_become_one_line() -> None:
    no_table = OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: cards"))
    assert explain(no_table) == ("the database has no schema yet (no such table: cards): run "
                                 "transit db upgrade")
    refused = OperationalError("connect", {}, Exception(
        'connection failed: connection to server at "127.0.0.1", port 1 failed:\n'
        "Connection refused"))
    line = explain(refused)
    assert line is not None and "database error: connection failed" in line
    assert "TRANSIT_DATABASE_URL" in line and "\n" not in line
    missing = ProgrammingError("SELECT", {}, Exception('relation "cards" does not exist'))
    assert "run transit db upgrade" in (explain(missing) or "")
    assert explain(ArgumentError("Could not parse SQLAlchemy URL from 'x'")) == \
        "TRANSIT_DATABASE_URL is not usable: Could not parse SQLAlchemy URL from 'x'"
    assert explain(IdempotencyConflict("reference bank-1 was used for 5000")) == \
        "reference bank-1 was used for 5000"
    assert explain(SettlementError("business day 2025-11-27 has not begun")) == \
        "business day 2025-11-27 has not begun"
    assert explain(ValueError("not ours to explain")) is None


def test_only_sqlite_files_are_looked_for(tmp_path: Path) -> None:
    assert sqlite_file(make_url(f"sqlite:///{tmp_path}/x.db")) == tmp_path / "x.db"
    assert sqlite_file(make_url("sqlite://")) is None
    assert sqlite_file(make_url("sqlite:///:memory:")) is None
    assert sqlite_file(make_url("postgresql://u@db/transit")) is None


def test_the_report_says_what_files_it_checked_and_skipped() -> None:
    report = Report(checked=["2 settlement file(s) in out compared with the chain"],
                    skipped=["settlement-2025-11-28.csv: provisional"])
    assert report.ok
    assert report.text().splitlines() == [
        "ok       2 settlement file(s) in out compared with the chain",
        "skipped  settlement-2025-11-28.csv: provisional",
        "reconciled: no mismatch"]


def ledger_commands(terms, database: Path) -> click.Group:  # type: ignore[no-untyped-def]
    """The ledger's commands as a composition root builds them, around `terms`."""
    @click.group(cls=RootGroup)
    @click.pass_context
    def root(ctx: click.Context) -> None:
        """A root group."""
        ctx.obj = CommandContext(Settings(database_url=f"sqlite:///{database}"))

    root.add_command(settle_command(terms))
    root.add_command(reconcile_command(terms))
    return root


def test_settle_and_reconcile_take_their_terms_from_whoever_builds_them(
        runner: CliRunner, tmp_path: Path) -> None:
    asked: list[CommandContext] = []

    def refused(obj: CommandContext) -> SettlementTerms:
        asked.append(obj)
        raise TransitError("no fare policy here")

    group = ledger_commands(refused, tmp_path / "transit.db")
    for args in (["settle", "2025-11-27"], ["reconcile"]):
        assert one_error(runner.invoke(group, args)) == "Error: no fare policy here"
    assert len(asked) == 2 and all(isinstance(obj, CommandContext) for obj in asked)

    from fare_gateway.schema import upgrade  # the composition root's schema
    from ledger.adapters.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'transit.db'}")
    upgrade(engine)
    engine.dispose()
    terms = SettlementTerms(BusinessCalendar("UTC", 0), "XTS")
    group = ledger_commands(lambda _obj: terms, tmp_path / "transit.db")
    result = runner.invoke(group, ["settle", "2020-01-01", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "settlement-2020-01-01.json").read_text())
    assert manifest["currency"] == "XTS"
