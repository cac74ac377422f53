"""`transit settle` and `transit reconcile` as a finance clerk runs them (subprocesses):
a refused date says the range, and `reconcile --dir` says what it checked and skipped."""

from __future__ import annotations

import time
from pathlib import Path

from fare_gateway.fares.policy import builtin_policy
from ledger.settlement import BusinessCalendar
from testbed.gateway import transit
from tests.integration.commands import clean_env, failed, ok

CARD = "04A1B2C3D4E5F6"


def migrated(tmp_path: Path) -> dict[str, str]:
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db")
    ok(transit("db", "upgrade", env=env))
    return env


def test_a_date_out_of_range_says_the_range(tmp_path: Path) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db")
    result = transit("settle", "1999-01-01", env=env, check=False)
    assert result.returncode == 2
    failed(result, "1999-01-01 is out of range (2000-01-01 to 9998-12-31)")


def test_reconcile_on_an_empty_folder_says_nothing_was_checked(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = transit("reconcile", "--dir", str(empty), env=env, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert f"MISMATCH no settlement file in {empty} was checked" in result.stdout, out
    assert "reconciled: no mismatch" not in result.stdout
    # Without a folder there are no files to vouch for: the ledger alone reconciles.
    assert "reconciled: no mismatch" in ok(transit("reconcile", env=env)).stdout


def test_reconcile_names_each_provisional_file_it_skips(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    ok(transit("cards", "issue", CARD, env=env))
    ok(transit("cards", "topup", CARD, "5000", "--reference", "first", env=env))
    policy = builtin_policy()
    today = BusinessCalendar(policy.timezone, policy.service_day_start_min).day_of(
        int(time.time() * 1000)).isoformat()
    out = tmp_path / "out"
    settled = ok(transit("settle", today, "--out", str(out), "--quiet", env=env)).stdout
    assert "(provisional)" in settled, settled
    result = transit("reconcile", "--dir", str(out), env=env, check=False)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert (f"skipped  settlement-{today}.csv: provisional (its day was still open when "
            "settled), so not in the chain") in result.stdout.splitlines(), text
    # The open day's file was all the folder held: nothing in it could be vouched for.
    assert result.returncode == 1, text
    assert f"MISMATCH no settlement file in {out} was checked" in result.stdout, text
