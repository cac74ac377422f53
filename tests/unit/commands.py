"""Checks of a `transit` command run in-process with click's CliRunner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result


def clean_runner(folder: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner working in `folder`, with none of this process's TRANSIT_* settings."""
    monkeypatch.chdir(folder)
    return CliRunner(env={k: None for k in os.environ if k.startswith("TRANSIT_")})


def one_error(result: Result) -> str:
    """A failure's one `Error:` line on stderr, with no traceback anywhere."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]
