"""The gateway's commands in-process (click's CliRunner): arguments are checked in the
HTTP API's words before any database is opened, and no command but `db upgrade` makes a
database file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fare_gateway.cards import MAX_TOPUP
from fare_gateway.schema import revisions
from tests.unit.commands import clean_runner, one_error
from transit.cli import cli

CARD = "04A1B2C3D4E5F6"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    return clean_runner(tmp_path, monkeypatch)


@pytest.mark.parametrize("args", [
    ["cards", "show", "04a1b2c3d4e5f6"], ["cards", "issue", "04a1b2c3d4e5f6"],
    ["cards", "topup", "04a1b2c3d4e5f6", "1000", "--reference", "r1"],
    ["cards", "show", "04A1B2C"], ["cards", "show", "0" * 33], ["cards", "show", "not-a-card"],
])
def test_a_card_token_is_refused_in_the_api_s_words(runner: CliRunner, tmp_path: Path,
                                                    args: list[str]) -> None:
    line = one_error(runner.invoke(cli, args))
    assert "card must be 8-32 upper-case hex digits" in line, line
    assert not (tmp_path / "transit.db").exists()


@pytest.mark.parametrize("amount", ["-500", "-1", "0", str(MAX_TOPUP + 1),
                                    "99999999999999999999"])
def test_an_amount_out_of_range_is_refused_with_the_range(runner: CliRunner, tmp_path: Path,
                                                          amount: str) -> None:
    result = runner.invoke(cli, ["cards", "topup", CARD, amount, "--reference", "r1"])
    line = one_error(result)
    assert f"amount must be between 1 and {MAX_TOPUP} (got {amount})" in line, line
    assert "No such option" not in result.output
    assert not (tmp_path / "transit.db").exists()


def test_a_negative_amount_after_the_options_is_read_as_a_number(runner: CliRunner) -> None:
    line = one_error(runner.invoke(cli, ["cards", "topup", "--reference", "r1", CARD, "-5"]))
    assert "amount must be between 1 and" in line, line


def test_a_bad_reference_is_refused_before_the_database(runner: CliRunner,
                                                        tmp_path: Path) -> None:
    line = one_error(runner.invoke(cli, ["cards", "topup", CARD, "100", "--reference", "a b"]))
    assert "reference must be 1-64 characters" in line, line
    assert not (tmp_path / "transit.db").exists()


def test_an_unknown_revision_is_refused_naming_the_history(runner: CliRunner,
                                                           tmp_path: Path) -> None:
    line = one_error(runner.invoke(cli, ["db", "upgrade", "--revision", "nope"]))
    assert "'nope'" in line and "--revision" in line, line
    for revision in ["head", *revisions()]:
        assert revision in line, line
    assert not (tmp_path / "transit.db").exists()


def test_the_default_database_is_named_and_not_created(runner: CliRunner,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "transit.db"
    for args in (["cards", "show", CARD], ["tokens", "list"], ["devices", "list"],
                 ["denylist", "show"], ["gateway"]):
        result = runner.invoke(cli, args)
        line = one_error(result)
        assert line == (f"Error: no database at {path}: run transit db upgrade or set "
                        "TRANSIT_DATABASE_URL"), (args, line)
        assert f"database: {path} (the default; set TRANSIT_DATABASE_URL to use another)" \
            in result.stderr.splitlines(), result.stderr
        assert not path.exists(), args


def test_db_upgrade_creates_the_default_database_and_says_where(runner: CliRunner,
                                                                tmp_path: Path) -> None:
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database: {tmp_path / 'transit.db'} (the default" in result.stderr
    assert (tmp_path / "transit.db").exists()
    shown = runner.invoke(cli, ["cards", "show", CARD])
    assert one_error(shown) == f"Error: no card {CARD}"


def test_a_database_named_in_the_setting_is_used_quietly(runner: CliRunner,
                                                         tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/chosen.db"
    result = runner.invoke(cli, ["cards", "show", CARD], env={"TRANSIT_DATABASE_URL": url})
    assert one_error(result).startswith(f"Error: no database at {tmp_path / 'chosen.db'}")
    assert "the default" not in result.stderr


def test_fares_check_names_the_file_and_the_field(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "fares.toml"
    bad.write_text('currency = "IDR"\nrepeat_tap_seconds = -1\n')
    line = one_error(runner.invoke(cli, ["fares", "check", str(bad)]))
    assert str(bad) in line and "repeat_tap_seconds" in line, line


def test_a_fare_policy_that_cannot_be_used_is_named(runner: CliRunner, tmp_path: Path) -> None:
    line = one_error(runner.invoke(cli, ["cards", "show", CARD],
                                   env={"TRANSIT_FARES": str(tmp_path / "missing.toml")}))
    assert line.startswith("Error: TRANSIT_FARES:"), line


@pytest.mark.parametrize("args", [
    ["cards", "topup", CARD, "100", "--refrence", "r1"],
    ["cards", "topup", CARD, "-500", "--refrence", "r1"],
    ["cards", "topup", "--refrence", "r1", CARD, "100"],
])
def test_a_mistyped_option_is_refused_not_swallowed(runner: CliRunner, tmp_path: Path,
                                                    args: list[str]) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.stderr == ("Error: No such option '--refrence'. Did you mean '--reference'? "
                             "(see 'transit cards topup --help')\n")
    assert not (tmp_path / "transit.db").exists()


def test_only_a_negative_whole_number_is_taken_for_an_argument(runner: CliRunner) -> None:
    # "-5x" is no number: an option click does not know, as any other.
    assert "No such option '-5'" in one_error(
        runner.invoke(cli, ["cards", "topup", CARD, "-5x", "--reference", "r1"]))
    # A reference that looks like a negative number stays the option's value.
    line = one_error(runner.invoke(cli, ["cards", "topup", CARD, "-5", "--reference", "-7"]))
    assert "amount must be between 1 and" in line and "(got -5)" in line, line
