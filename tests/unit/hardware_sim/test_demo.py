"""The demo's hold on its data folder (one demo per folder, and `--fresh` keeps the hold),
and the settings it hands the programs it starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hardware_sim.demo import LOCK_FILE, _child_env, _clear, _own_data_dir, _run_settings
from transit.errors import TransitError
from transit.settings import Settings


def test_one_demo_per_data_folder(tmp_path: Path) -> None:
    folder = tmp_path / "transit-demo"
    first = _own_data_dir(folder)
    try:
        with pytest.raises(TransitError) as refused:
            _own_data_dir(folder)
        assert str(refused.value) == (
            f"another transit demo (pid {os.getpid()}) is running in {folder}: stop it, or "
            "give this one its own --data-dir")
        other = _own_data_dir(tmp_path / "elsewhere")  # another folder is free
        other.close()
    finally:
        first.close()
    again = _own_data_dir(folder)  # free once the first demo has let go
    again.close()


def test_fresh_clears_all_but_the_hold(tmp_path: Path) -> None:
    folder = tmp_path / "transit-demo"
    held = _own_data_dir(folder)
    try:
        (folder / "transit.db").write_text("old")
        (folder / "shapes").mkdir()
        (folder / "shapes" / "R1-0.json").write_text("[]")
        _clear(folder)
        assert [p.name for p in folder.iterdir()] == [LOCK_FILE]
        with pytest.raises(TransitError):
            _own_data_dir(folder)  # still held
    finally:
        held.close()


def test_the_programs_the_demo_starts_get_its_settings(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "transit-demo"
    # An empty variable means the default, here: the demo's own database, not ./transit.db.
    monkeypatch.setenv("TRANSIT_DATABASE_URL", "")
    monkeypatch.delenv("TRANSIT_GATEWAY_ID", raising=False)
    monkeypatch.delenv("TRANSIT_LOG_LEVEL", raising=False)
    monkeypatch.setenv("TRANSIT_TOPIC_PREFIX", "city/v2")
    first = _run_settings(Settings.from_env(), folder)
    env = _child_env(first)
    child = Settings.from_env(env)
    assert child.database_url == f"sqlite:///{folder}/transit.db"
    assert child.topic_prefix == "city/v2"
    assert child.log_level == "WARNING"
    assert child.gateway_id == first.gateway_id
    assert env["PATH"] == os.environ["PATH"]  # the rest of the environment is kept
    # Each run its own gateway id, so that it knows its gateway's /healthz.
    second = _run_settings(Settings.from_env(), folder)
    assert first.gateway_id.startswith("demo-") and second.gateway_id != first.gateway_id
    # What the user set is what the programs get.
    monkeypatch.setenv("TRANSIT_GATEWAY_ID", "gw-mine")
    monkeypatch.setenv("TRANSIT_DATABASE_URL", f"sqlite:///{tmp_path}/mine.db")
    mine = Settings.from_env(_child_env(_run_settings(Settings.from_env(), folder)))
    assert (mine.gateway_id, mine.database_url) == ("gw-mine", f"sqlite:///{tmp_path}/mine.db")
