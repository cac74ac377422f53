"""The peak memory of a command run as a subprocess, as the kernel counted it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# A fresh interpreter runs the command and reports the peak resident set size of its
# only child: the test process's own RUSAGE_CHILDREN would also count every process it
# started before (a gateway, an earlier import).
_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def run_measured(args: Sequence[str], env: dict[str, str], timeout: float = 600
                 ) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `args`; its result and its peak resident memory in MiB (Linux counts KiB)."""
    with tempfile.TemporaryDirectory() as folder:
        peak = Path(folder) / "peak"
        result = subprocess.run([sys.executable, "-c", _WRAPPER, str(peak), *args], env=env,
                                capture_output=True, text=True, timeout=timeout)
        return result, int(peak.read_text()) / 1024
