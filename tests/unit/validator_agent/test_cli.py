"""`transit agent` before it starts anything: its arguments, the repeat-tap window it
takes without the server's fare policy, its simulated reader, and what it imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.unit.commands import clean_runner, one_error
from transit.cli import cli
from transit.errors import TransitError
from validator_agent.adapters.fare_file import DEFAULT_SECONDS, repeat_tap_seconds
from validator_agent.adapters.sim_reader import present_cards

SECRET = "ab" * 32


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    (tmp_path / "device.secret").write_text(SECRET + "\n")
    return clean_runner(tmp_path, monkeypatch)


def agent(runner: CliRunner, *extra: str) -> Result:
    return runner.invoke(cli, ["agent", "--device", "SBY-0001-A", "--vehicle", "SBY-0001",
                               "--route", "R1", "--secret-file", "device.secret",
                               "--reader", "sim", *extra])


@pytest.mark.parametrize("extra,words", [
    (("--device", "bad id"), "--device"),
    (("--gps", "compass"), "unknown source 'compass'"),
    (("--gps", "sim:north,south"), "two numbers"),
    (("--gps", "gpsd:localhost:port"), "port number"),
    (("--gps", "sim:missing.json"), "sim:missing.json"),
    (("--card-profile", "secure"), "needs --reader pcsc"),
    (("--secret-file", "nowhere.secret"), "cannot read nowhere.secret"),
    (("--repeat-tap-seconds", "-1"), "--repeat-tap-seconds"),
])
def test_bad_arguments_stop_the_agent_before_it_starts(runner: CliRunner, tmp_path: Path,
                                                       extra: tuple[str, ...],
                                                       words: str) -> None:
    line = one_error(agent(runner, *extra))
    assert words in line, line
    assert not (tmp_path / "spool.db").exists()  # nothing was started


def test_a_spool_that_cannot_be_opened_is_named(runner: CliRunner, tmp_path: Path) -> None:
    line = one_error(agent(runner, "--spool", "no-folder/spool.db"))
    assert line == ("Error: --spool: cannot open the spool no-folder/spool.db: there is no "
                    f"folder {tmp_path / 'no-folder'} (create it, or give another path)"), line
    (tmp_path / "notes.txt").write_text("not a database, and long enough to show it" * 4)
    line = one_error(agent(runner, "--spool", "notes.txt"))
    assert line == ("Error: --spool: cannot open the spool notes.txt: file is not a "
                    "database"), line


def test_a_repeat_tap_window_from_the_fare_file(tmp_path: Path) -> None:
    assert repeat_tap_seconds("") == DEFAULT_SECONDS
    policy = tmp_path / "fares.toml"
    policy.write_text('currency = "IDR"\nrepeat_tap_seconds = 45\n')
    assert repeat_tap_seconds(str(policy)) == 45
    policy.write_text('currency = "IDR"\n')
    assert repeat_tap_seconds(str(policy)) == DEFAULT_SECONDS


@pytest.mark.parametrize("text", ["repeat_tap_seconds = -1", "repeat_tap_seconds = 1.5",
                                  'repeat_tap_seconds = "120"', "repeat_tap_seconds = true",
                                  "repeat_tap_seconds = 86401", "not toml at all ="])
def test_a_fare_file_that_cannot_give_the_window_names_the_setting(tmp_path: Path,
                                                                   text: str) -> None:
    policy = tmp_path / "fares.toml"
    policy.write_text(text + "\n")
    with pytest.raises(TransitError, match="TRANSIT_FARES"):
        repeat_tap_seconds(str(policy))
    with pytest.raises(TransitError, match="TRANSIT_FARES: cannot read"):
        repeat_tap_seconds(str(tmp_path / "missing.toml"))


def test_the_simulated_reader_presents_each_line_as_a_card() -> None:
    seen: list[str | None] = []
    count = present_cards(["04a1b2c3d4e5f6\n", "\n", "   \n", "not a card\n", "04DEAD01\n"],
                          lambda uid, _at: seen.append(uid))
    assert count == 3
    assert seen == ["04A1B2C3D4E5F6", None, "04DEAD01"]


def test_the_agent_imports_nothing_of_the_back_office(tmp_path: Path) -> None:
    """Every agent module loads without the server's packages, Flask or SQLAlchemy."""
    script = """
import importlib, pkgutil, sys
import validator_agent
import transit.cli
for info in pkgutil.walk_packages(validator_agent.__path__, "validator_agent."):
    importlib.import_module(info.name)
transit.cli.cli.get_command(None, "agent")
bad = sorted(m for m in sys.modules if m.split(".")[0] in
             {"fare_gateway", "ledger", "tracking", "hardware_sim", "flask", "sqlalchemy"})
print(json.dumps(bad))
""".replace("import importlib", "import importlib, json")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
