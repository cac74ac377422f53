"""A second `transit demo` while one runs (real commands, as a new user tries them):
it fails before printing anything, saying why, instead of printing the map address and
tokens of the other one."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from testbed.gateway import transit, transit_exe
from tests.integration.commands import clean_env, failed


def test_a_second_demo_fails_and_says_why(tmp_path: Path) -> None:
    env = clean_env()
    data = tmp_path / "transit-demo"
    first = subprocess.Popen([transit_exe(), "demo", "--buses", "1", "--data-dir", str(data)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert first.stdout is not None
        for line in first.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not lines and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lines and lines[0].startswith("map: "), (lines, first.poll())
        address = re.fullmatch(r"map: http://(127\.0\.0\.1:\d+)/", lines[0])
        assert address, lines[0]

        # The same data folder: its database, Redis and spools are the first demo's.
        same = transit("demo", "--buses", "1", "--data-dir", str(data), env=env, check=False)
        assert same.returncode == 1
        failed(same, f"another transit demo (pid {first.pid}) is running in {data}",
               "--data-dir")
        assert same.stdout == ""

        # A folder of its own, but the first demo's HTTP address.
        taken = transit("demo", "--buses", "1", "--data-dir", str(tmp_path / "second"),
                        env=dict(env, TRANSIT_HTTP=address.group(1)), check=False)
        assert taken.returncode == 1
        failed(taken, f"TRANSIT_HTTP {address.group(1)} is already in use")
        assert taken.stdout == ""
        assert first.poll() is None, "the first demo must be left running"
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)
