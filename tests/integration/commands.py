"""Checks of a `transit` command run as a subprocess (contract section 4): a success
without a traceback, or a failure in one `Error:` line with a non-zero exit."""

from __future__ import annotations

import os
import subprocess

Result = subprocess.CompletedProcess[str]


def ok(result: Result) -> Result:
    """A success: exit 0 and no traceback."""
    out = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{out[-2000:]}"
    assert "Traceback" not in out, out
    return result


def failed(result: Result, *words: str) -> str:
    """A clean failure: non-zero exit, exactly one `Error:` line (returned), no traceback,
    and the line names what was wrong (each of `words`, case-insensitive)."""
    out = result.stdout + result.stderr
    args = " ".join(result.args[1:])
    assert result.returncode != 0, f"transit {args}: exit 0\n{out[-2000:]}"
    assert "Traceback" not in out, f"transit {args}: traceback\n{out[-3000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, f"transit {args}: want one 'Error:' line on stderr\n{out[-2000:]}"
    for word in words:
        assert word.lower() in errors[0].lower(), f"transit {args}: {errors[0]!r} lacks {word!r}"
    return errors[0]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any TRANSIT_* setting, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(settings)
    return env
