"""The demo's hold on its data folder: one demo per folder, and `--fresh` keeps the hold."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hardware_sim.demo import LOCK_FILE, _clear, _own_data_dir
from transit.errors import TransitError


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
