"""The layers' arrows point down only: import-linter's contracts (pyproject.toml) hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports() -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is not installed: pip install -e '.[dev]'"
    # No cache: it would be written into the checkout, and the graph takes under a second.
    return subprocess.run([exe, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_every_import_linter_contract_is_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contracts_cover_every_package_of_the_system() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in shipped}
    linted = set(config["tool"]["importlinter"]["root_packages"])
    assert packages <= linted, packages - linted
    assert {"tests", "bench", "testbed"} <= linted
    layered = {module.strip() for contract in config["tool"]["importlinter"]["contracts"]
               if contract["type"] == "layers"
               for layer in contract["layers"] for module in layer.split("|")}
    assert packages - {"validator_agent"} <= layered, packages - layered
