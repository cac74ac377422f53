"""`transit agent` refusing to start, as on a bus: an install that lacks pyscard (the
real command, run with a `smartcard` package that cannot be imported ahead on its path)
says which extra to install (the agent's own), and a spool that cannot be opened is
named, each in one line, before it starts anything."""

from __future__ import annotations

from pathlib import Path

from testbed.gateway import transit
from tests.integration.commands import clean_env, failed

SECRET = "ab" * 32


def test_a_reader_without_pyscard_names_the_agent_extra(tmp_path: Path) -> None:
    missing = tmp_path / "site"
    (missing / "smartcard").mkdir(parents=True)
    # What Python raises for a package that is not installed.
    (missing / "smartcard" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'smartcard'\", name='smartcard')\n")
    (tmp_path / "device.secret").write_text(SECRET + "\n")
    env = clean_env(PYTHONPATH=str(missing))
    result = transit("agent", "--device", "SBY-0001-A", "--vehicle", "SBY-0001",
                     "--route", "R1", "--secret-file", str(tmp_path / "device.secret"),
                     "--reader", "pcsc", "--spool", str(tmp_path / "spool.db"),
                     env=env, check=False)
    assert result.returncode == 1
    line = failed(result, "'transit agent' needs the package 'smartcard'",
                  "pip install 'surabaya-transit[agent]'")
    assert "[gateway]" not in line
    assert not (tmp_path / "spool.db").exists()  # refused before anything started


def test_a_spool_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    (tmp_path / "device.secret").write_text(SECRET + "\n")
    result = transit("agent", "--device", "SBY-0001-A", "--vehicle", "SBY-0001",
                     "--route", "R1", "--secret-file", str(tmp_path / "device.secret"),
                     "--reader", "sim", "--spool", "/nonexistent/spool.db",
                     env=clean_env(), check=False)
    assert result.returncode == 1
    failed(result, "--spool", "cannot open the spool /nonexistent/spool.db",
           "there is no folder /nonexistent")
