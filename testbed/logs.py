"""Reading what a server has logged since a given moment (a start, a restart)."""

from __future__ import annotations

from pathlib import Path


def read_from(path: Path, offset: int) -> str:
    """The text of `path` from byte `offset` on; empty while the file does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def size_of(path: Path) -> int:
    """Where the next line will be written: the file's length, 0 if there is none yet."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
