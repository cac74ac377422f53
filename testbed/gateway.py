"""The `transit` command run as a user runs it, and `transit gateway` as a subprocess."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from testbed.logs import read_from
from testbed.ports import PortInUse, free_port, retry_on_taken_port, says_port_in_use


def transit_exe() -> str:
    """The `transit` script of the running interpreter's environment."""
    return shutil.which("transit", path=str(Path(sys.executable).parent)) or "transit"


def transit(*args: str, env: dict[str, str], check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `transit` command as a user would."""
    return subprocess.run([transit_exe(), *args], env=env, capture_output=True, text=True,
                          check=check, input=input, timeout=120)


@dataclass
class Gateway:
    """`transit gateway` running in a subprocess, reachable over HTTP.

    `http_port=0` lets it take a free port, and another if that one turns out taken; a
    gateway started again keeps the port it had.
    """

    env: dict[str, str]
    log_path: Path
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _may_move: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.http_port == 0:
            self.http_port = free_port()
            self._may_move = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Gateway:
        """Start the gateway and wait until /healthz answers 200."""
        retry_on_taken_port(lambda: self._start_once(timeout),
                            self._move if self._may_move else None)
        self._may_move = False
        return self

    def _move(self) -> None:
        self.http_port = free_port()

    def _start_once(self, timeout: float) -> None:
        env = dict(self.env, TRANSIT_HTTP=f"127.0.0.1:{self.http_port}")
        with self.log_path.open("ab") as log:  # the child keeps its own copy open
            log_start = log.tell()
            self.proc = subprocess.Popen([transit_exe(), "gateway"], env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = read_from(self.log_path, log_start)
                self.proc = None
                if says_port_in_use(output):
                    raise PortInUse(f"gateway: port {self.http_port} is taken: {output[-500:]}")
                raise RuntimeError(f"gateway exited: {output[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as resp:
                    # Whoever answers must be this process, not a stranger on the port.
                    if resp.status == 200 and self.proc.poll() is None:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop(kill=True)
        raise RuntimeError(f"gateway not healthy: {read_from(self.log_path, 0)[-3000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None
