"""The key figures of a benchmark run as a JSON object (`--json FILE` of each benchmark)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_figures(path: str | Path | None, benchmark: str, figures: dict[str, Any]) -> None:
    """Write `{"benchmark": NAME, **figures}` to `path`; nothing when no path was asked for."""
    if not path:
        return
    body = {"benchmark": benchmark, **figures}
    Path(path).write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
