"""The `transit` command itself, run as a new user runs it (subprocesses): its listing,
the database it says it uses, Ctrl-C, and `python -m transit`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from testbed.environment import REDIS_URL
from testbed.gateway import transit, transit_exe
from testbed.ports import free_port
from tests.integration.commands import Result, clean_env, failed, ok

CARD = "04A1B2C3D4E5F6"


def in_folder(folder: Path, *args: str, **settings: str) -> Result:
    """`transit ARGS` run in `folder`, with no TRANSIT_* settings but `settings`."""
    return subprocess.run([transit_exe(), *args], cwd=folder, env=clean_env(**settings),
                          capture_output=True, text=True, timeout=120)


def test_the_listing_shows_every_description_whole(tmp_path: Path) -> None:
    listing = ok(in_folder(tmp_path, "--help")).stdout
    commands = listing.split("Commands:")[1]
    assert "..." not in commands, commands
    assert re.search(r"^  settle +Write the settlement of business day DATE \(YYYY-MM-DD\): "
                     r"settlement-DATE\.csv/\.json\.$", commands, re.MULTILINE), commands
    assert re.search(r"^  gateway +Run the fare gateway: tap and position consumers, "
                     r"deny-list publisher, HTTP API, map\.$", commands, re.MULTILINE), commands


def test_the_default_database_is_named_and_only_db_upgrade_makes_it(tmp_path: Path) -> None:
    path = tmp_path / "transit.db"
    said = f"database: {path} (the default; set TRANSIT_DATABASE_URL to use another)"
    for args in (("cards", "show", CARD), ("cards", "issue", CARD), ("tokens", "list"),
                 ("settle", "2025-11-27"), ("reconcile",)):
        result = in_folder(tmp_path, *args)
        assert result.returncode == 1, (args, result.stderr)
        failed(result, f"no database at {path}: run transit db upgrade or set "
                       "TRANSIT_DATABASE_URL")
        assert said in result.stderr.splitlines(), (args, result.stderr)
        assert not path.exists(), f"transit {' '.join(args)} made an empty database"
    upgraded = ok(in_folder(tmp_path, "db", "upgrade"))
    assert said in upgraded.stderr.splitlines(), upgraded.stderr
    assert path.exists()
    ok(in_folder(tmp_path, "cards", "issue", CARD))
    # A database named in the setting is used without a word about it.
    named = ok(in_folder(tmp_path, "cards", "show", CARD,
                         TRANSIT_DATABASE_URL=f"sqlite:///{path}"))
    assert "database:" not in named.stderr


def test_ctrl_c_exits_130_quietly(tmp_path: Path) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db",
                    TRANSIT_REDIS_URL=REDIS_URL, TRANSIT_HTTP=f"127.0.0.1:{free_port()}",
                    TRANSIT_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}",
                    TRANSIT_BROKER_WAIT_S="120")
    ok(transit("db", "upgrade", env=env))
    log = tmp_path / "gateway.log"
    with log.open("w") as out:
        proc = subprocess.Popen([transit_exe(), "gateway"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while "waiting up to 120 s for the broker" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "Error:" not in text and "Aborted" not in text, text


def test_python_m_transit_runs_nothing_on_import(tmp_path: Path) -> None:
    imported = subprocess.run([sys.executable, "-c", "import transit.__main__"], cwd=tmp_path,
                              env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (imported.returncode, imported.stdout, imported.stderr) == (0, "", "")
    version = subprocess.run([sys.executable, "-m", "transit", "--version"], cwd=tmp_path,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "transit" in version.stdout, version.stderr
