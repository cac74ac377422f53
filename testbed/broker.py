"""A private Mosquitto with the project's delivery policy, on a port of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from fare_gateway.broker_config import POLICY_FILE
from testbed.logs import read_from, size_of
from testbed.ports import PortInUse, free_port, retry_on_taken_port, says_port_in_use, wait_port

BROKER_POLICY = POLICY_FILE


@dataclass
class Broker:
    """A private Mosquitto; `port=0` lets it take a free one (and another if that is taken).

    Once it has run, a restart keeps its port: its clients know the broker by it.
    """

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    extra_conf: str = ""
    _may_move: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.port == 0:
            self.port = free_port()
            self._may_move = True

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self, timeout: float = 10.0) -> Broker:
        """Start Mosquitto and wait until it listens; a taken port is traded for a free one."""
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        retry_on_taken_port(lambda: self._start_once(timeout),
                            self._move if self._may_move else None)
        self._may_move = False
        return self

    def _move(self) -> None:
        self.port = free_port()

    def _start_once(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        lines = [BROKER_POLICY.read_text(),
                 f"listener {self.port} 127.0.0.1",
                 "allow_anonymous true",
                 f"persistence_location {self.workdir}/",
                 f"log_dest file {self.log_path}",
                 self.extra_conf]
        if os.geteuid() == 0:
            # Started as root, Mosquitto would drop to the 'mosquitto' user, which cannot
            # reach a workdir under pytest's root-only temporary folder: stay root.
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = run_mosquitto(conf, self.log_path, [self.port], timeout)

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.proc = None
        self.start()


def run_mosquitto(conf: Path, log_path: Path, ports: list[int],
                  timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start `mosquitto -c conf` (which logs to `log_path`) and wait until it listens on
    every one of `ports`; PortInUse if one of them is taken."""
    log_start = size_of(log_path)
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        log = read_from(log_path, log_start)
        if proc.poll() is not None:
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if says_port_in_use(log + stderr):
                raise PortInUse(f"mosquitto: one of the ports {ports} is taken")
            raise RuntimeError(f"mosquitto exited at start: {stderr}{log[-2000:]}")
        # "running" is logged once every listener is open: only then is whatever answers
        # on the ports this broker and not a stranger that holds one of them.
        if " running" in log:
            for port in ports:
                wait_port(port, max(0.5, deadline - time.monotonic()))
            return proc
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=20)
            raise RuntimeError(f"mosquitto did not start within {timeout}s: {log[-2000:]}")
        time.sleep(0.02)
