"""The pure core type-checks under mypy --strict (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ["transit.wire", "transit.settings", "transit.topics", "transit.window", "ledger.domain",
        "fare_gateway.fares.engine", "fare_gateway.fares.policy", "fare_gateway.taps.planning",
        "validator_agent.domain", "tracking.domain"]


def test_the_pure_core_is_strictly_typed(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")]
    for module in CORE:
        args += ["-m", module]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
