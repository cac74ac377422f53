"""A Redis of the test's own on a free port, which the test may restart: it keeps nothing
on disk, so a restart comes back empty, as a Redis that lost its memory does."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testbed.logs import read_from, size_of
from testbed.ports import PortInUse, free_port, retry_on_taken_port, says_port_in_use


class PrivateRedis:
    """`redis-server` without persistence on a port of its own; a restart keeps the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._may_move = True
        self.dir = Path(tempfile.mkdtemp(prefix="transit-redis-"))
        self.log = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        retry_on_taken_port(self._start_once, self._move if self._may_move else None)
        self._may_move = False
        return self

    def _move(self) -> None:
        self.port = free_port()

    def _start_once(self) -> None:
        start = size_of(self.log)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = read_from(self.log, start)
            if self.proc.poll() is not None:
                self.proc = None
                if says_port_in_use(log):
                    raise PortInUse(f"redis: port {self.port} is taken")
                raise RuntimeError(f"redis-server exited at start: {log[-2000:]}")
            if "Ready to accept connections" in log:
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start within 10 s: {read_from(self.log, 0)}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
