"""The PC/SC side of the agent tests and the reader benchmark: a pcscd with the
vsmartcard `vpcd` reader driver, virtual cards tapped on it, and `transit agent` running
as a subprocess whose stdout events (one JSON object per line) are collected as they
arrive.

Two ways to have pcscd:

- `ensure_pcscd()`: the machine's own pcscd (started with `pcscd` when `pgrep -x pcscd`
  finds none), its vpcd reader on 127.0.0.1:35963 from /etc/reader.conf.d/vpcd.
- `PrivatePcscd`: a pcscd of the test run's own, in a private mount namespace
  (`unshare --mount`) with /run/pcscd bind-mounted from a scratch folder and a vpcd
  reader on a free pair of ports (`testbed.ports`; another pair if vpcd finds one
  taken). Clients reach it through `PCSCLITE_CSOCK_NAME`. The tests can then stop and
  restart *their* pcscd, by its process id, and never see cards that another program
  presents on the machine's reader at the same time. Needs root.

`pcscd_for_tests()` picks the private one where it can (`TRANSIT_TEST_PCSCD=system`
forces the machine's one). Nothing here skips: a pcscd that does not come up with a
"Virtual PCD" reader fails with a message saying what to install or start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from hardware_sim.vpcd import VPCD_PORT, VirtualCard, recv_exact, serve
from testbed.gateway import transit_exe
from testbed.logs import read_from
from testbed.ports import PortInUse, free_port, retry_on_taken_port, says_port_in_use

READER_PREFIX = "Virtual PCD"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
TAP_HOLD_S = 0.5  # a card held for less is missed by pcscd now and then
TAP_GAP_S = 0.6   # nor may the next card come sooner than this after the last left

# Lists the PC/SC readers (waiting up to argv[1] seconds for a vpcd one) in a process of
# its own, so that the test process never caches which pcscd socket it talks to.
_READERS_SCRIPT = r"""
import sys, time
from smartcard.System import readers
deadline = time.monotonic() + float(sys.argv[1])
names, error = [], ""
while True:
    try:
        names, error = [str(r) for r in readers()], ""
    except Exception as exc:  # no pcscd (yet), or it is starting
        names, error = [], repr(exc)
    if any(n.startswith(sys.argv[2]) for n in names) or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print("\n".join(names) if names else "#" + error)
"""


def list_readers(env: dict[str, str] | None = None, wait_s: float = 0.0) -> list[str]:
    """The PC/SC readers pcscd offers (waiting up to `wait_s` for a vpcd reader)."""
    out = subprocess.run([sys.executable, "-c", _READERS_SCRIPT, str(wait_s), READER_PREFIX],
                         env=env, capture_output=True, text=True, timeout=wait_s + 30)
    lines = [line for line in out.stdout.splitlines() if line and not line.startswith("#")]
    return lines


def _wait_for_vpcd_reader(env: dict[str, str] | None, timeout: float, what: str) -> list[str]:
    names = list_readers(env, timeout)
    if not any(n.startswith(READER_PREFIX) for n in names):
        raise RuntimeError(
            f"{what}: no PC/SC reader named '{READER_PREFIX} ...' after {timeout:.0f}s "
            f"(readers: {names or 'none'}). Install the vpcd driver (apt-get install pcscd "
            "vsmartcard-vpcd; /etc/reader.conf.d/vpcd) and check that pcscd runs.")
    return names


def _pgrep_pcscd() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


class _Taps:
    """Presenting virtual cards on a vpcd reader, spaced as pcscd needs them."""

    vpcd_port: int

    def __init__(self) -> None:
        self._last_tap_end = 0.0
        self._tap_lock = threading.Lock()

    def env(self) -> dict[str, str]:
        """What a PC/SC client (the agent) needs in its environment to find this pcscd."""
        return {}

    def _spaced(self) -> None:
        wait = self._last_tap_end + TAP_GAP_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def tap(self, uid: str, hold_s: float = TAP_HOLD_S, slot: int = 0) -> float:
        """Present card `uid` for `hold_s` seconds, then take it away. Returns the
        monotonic time the card arrived (its connection to vpcd was made)."""
        card = VirtualCard(uid)
        with self._tap_lock:
            self._spaced()
            sock = socket.create_connection(("127.0.0.1", self.vpcd_port + slot), timeout=5)
            present = time.monotonic()
            try:
                serve(sock, card, until=present + hold_s)
            finally:
                sock.close()
                self._last_tap_end = time.monotonic()
        return present

    def pull_away_mid_read(self, timeout: float = 5.0, slot: int = 0) -> bool:
        """A card that answers power-on and its ATR, and leaves the field (closes its
        connection) the instant the first command APDU (the agent's GET UID) arrives.
        True when that APDU did arrive, i.e. the card really was pulled mid-read."""
        atr = VirtualCard("04000000").atr
        with self._tap_lock:
            self._spaced()
            sock = socket.create_connection(("127.0.0.1", self.vpcd_port + slot), timeout=5)
            deadline = time.monotonic() + timeout
            pulled = False
            try:
                while time.monotonic() < deadline:
                    sock.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        header = recv_exact(sock, 2)
                        (length,) = struct.unpack(">H", header)
                        message = recv_exact(sock, length)
                    except (TimeoutError, ConnectionError):
                        break
                    if length == 1:
                        if message[0] == 4:
                            sock.sendall(struct.pack(">H", len(atr)) + atr)
                        continue
                    pulled = True  # a command APDU: gone, without an answer
                    break
            finally:
                sock.close()
                self._last_tap_end = time.monotonic()
        return pulled


class SystemPcscd(_Taps):
    """The machine's pcscd and its vpcd reader (/etc/reader.conf.d/vpcd)."""

    def __init__(self, vpcd_port: int = VPCD_PORT) -> None:
        super().__init__()
        self.vpcd_port = vpcd_port
        self.readers: list[str] = []

    def start(self, timeout: float = 15.0) -> SystemPcscd:
        self.readers = ensure_pcscd(timeout)
        return self

    def stop(self) -> None:
        """Stop the pcscd processes (each by its id) and wait until they are gone."""
        pids = _pgrep_pcscd()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and set(pids) & set(_pgrep_pcscd()):
            time.sleep(0.05)
        left = set(pids) & set(_pgrep_pcscd())
        if left:
            raise RuntimeError(f"pcscd {sorted(left)} did not stop")

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self.start(timeout)


def ensure_pcscd(timeout: float = 15.0) -> list[str]:
    """Make sure the machine's pcscd runs with the vpcd reader; returns the reader names.

    Starts `pcscd` (it daemonizes) when `pgrep -x pcscd` finds none, then waits until a
    reader whose name starts with "Virtual PCD" is listed. Raises RuntimeError otherwise.
    """
    if not VPCD_DRIVER.exists():
        raise RuntimeError(f"the vpcd reader driver is not installed ({VPCD_DRIVER}); "
                           "apt-get install vsmartcard-vpcd")
    if not _pgrep_pcscd():
        exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
        if not Path(exe).exists():
            raise RuntimeError("pcscd is not installed (apt-get install pcscd)")
        started = subprocess.run([exe], capture_output=True, text=True, timeout=30)
        if started.returncode != 0:
            raise RuntimeError(f"pcscd did not start: {started.stderr.strip()}")
    return _wait_for_vpcd_reader(None, timeout, "pcscd")


class PrivatePcscd(_Taps):
    """A pcscd of our own, in its own mount namespace, with a vpcd reader on a free port.

    Its socket is `workdir/run/pcscd.comm` (bind-mounted over /run/pcscd inside the
    namespace, so the daemon finds it where it expects it); `env()` tells clients.
    """

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.rundir = self.workdir / "run"
        self.confdir = self.workdir / "reader.conf.d"
        self.vpcd_port = free_port(2)  # vpcd listens on one port per slot
        self._may_move = True  # until it has run: then its clients know the port
        self.proc: subprocess.Popen[bytes] | None = None
        self.readers: list[str] = []
        self._log: BinaryIO | None = None

    @staticmethod
    def possible() -> bool:
        return os.geteuid() == 0 and shutil.which("unshare") is not None \
            and shutil.which("pcscd") is not None and VPCD_DRIVER.exists()

    @property
    def socket_path(self) -> Path:
        return self.rundir / "pcscd.comm"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def env(self) -> dict[str, str]:
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return dict(base if base is not None else os.environ, **self.env())

    def start(self, timeout: float = 15.0) -> PrivatePcscd:
        """Start pcscd and wait for its vpcd reader; a taken port is traded for a free pair."""
        if not VPCD_DRIVER.exists():
            raise RuntimeError(f"the vpcd reader driver is not installed ({VPCD_DRIVER}); "
                               "apt-get install vsmartcard-vpcd")
        retry_on_taken_port(lambda: self._start_once(timeout),
                            self._move if self._may_move else None)
        self._may_move = False
        return self

    def _move(self) -> None:
        self.vpcd_port = free_port(2)

    def _start_once(self, timeout: float) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.confdir.mkdir(parents=True, exist_ok=True)
        for stale in self.rundir.iterdir():  # left by a pcscd that was killed
            stale.unlink()
        (self.confdir / "vpcd").write_text(
            f'FRIENDLYNAME "{READER_PREFIX}"\n'
            f"DEVICENAME   /dev/null:0x{self.vpcd_port:04X}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    0x{self.vpcd_port:04X}\n")
        script = 'mkdir -p /run/pcscd && mount --bind "$1" /run/pcscd && exec pcscd ' \
                 '--foreground --info -c "$2"'
        log_path = self.workdir / "pcscd.log"
        self._log = log_path.open("ab")
        log_start = self._log.tell()
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             str(self.rundir), str(self.confdir)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # pcscd brings up the configured readers before it says it is ready, so by then
        # the log tells whether vpcd could listen on its port.
        deadline = time.monotonic() + timeout
        while "daemon ready" not in (log := read_from(log_path, log_start)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if says_port_in_use(log):
            self.stop()
            raise PortInUse(f"vpcd: port {self.vpcd_port} is taken")
        try:
            self.readers = _wait_for_vpcd_reader(self.client_env(),
                                                 max(1.0, deadline - time.monotonic()),
                                                 f"private pcscd (log {log_path})")
        except RuntimeError as exc:
            tail = read_from(log_path, log_start)[-2000:]
            self.stop()
            raise RuntimeError(f"{exc}\n{tail}") from None

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 15.0, kill: bool = False) -> None:
        self.stop(kill=kill)
        self.start(timeout)


def pcscd_for_tests(workdir: Path) -> PrivatePcscd | SystemPcscd:
    """A started pcscd with a vpcd reader: the run's own where possible, else the machine's."""
    choice = os.environ.get("TRANSIT_TEST_PCSCD", "").lower()
    if choice != "system" and PrivatePcscd.possible():
        try:
            return PrivatePcscd(workdir).start()
        except RuntimeError as exc:  # e.g. a container without CAP_SYS_ADMIN for unshare
            if choice == "private":
                raise
            print(f"private pcscd unavailable, using the machine's: {exc}", file=sys.stderr)
    if choice == "private":
        raise RuntimeError("TRANSIT_TEST_PCSCD=private needs root, unshare, pcscd and vpcd")
    return SystemPcscd().start()


# -- `transit agent` as a subprocess ---------------------------------------------------

class AgentProcess:
    """`transit agent` in a subprocess. Its stdout events are parsed as they arrive (each
    with the monotonic time of its arrival); its log (stderr) goes to a file."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log_path: Path,
                 stdin: bool = False) -> None:
        self.args = list(args)
        self.env = env
        self.log_path = log_path
        self.use_stdin = stdin
        self.proc: subprocess.Popen[bytes] | None = None
        self.events: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.other_output: list[str] = []
        self._cv = threading.Condition()
        self._reader: threading.Thread | None = None
        self._log: BinaryIO | None = None
        self._log_start = 0

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> AgentProcess:
        self._log = self.log_path.open("ab")
        self._log_start = self.log_path.stat().st_size
        self.proc = subprocess.Popen(
            [transit_exe(), "agent", *self.args], env=self.env, stdout=subprocess.PIPE,
            stderr=self._log, stdin=subprocess.PIPE if self.use_stdin else subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read_stdout, args=(self.proc,),
                                        daemon=True)
        self._reader.start()
        return self

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            arrived = time.monotonic()
            line = raw.decode(errors="replace").strip()
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._cv:
                if isinstance(event, dict):
                    self.events.append(event)
                    self.arrivals.append(arrived)
                else:
                    self.other_output.append(line)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> int | None:
        """Send `sig` to the agent (by its id) and wait for it to end; its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def stop(self) -> int | None:
        return self.kill(signal.SIGTERM)

    def restart(self, sig: int = signal.SIGTERM) -> AgentProcess:
        """End the agent (with `sig`) and start it again with the same arguments (and
        spool); events keep accumulating in the same list."""
        self.kill(sig)
        return self.start()

    # -- sim reader -------------------------------------------------------------
    def present(self, card: str) -> float:
        """`--reader sim`: present a card UID on stdin; the monotonic time it was sent."""
        assert self.proc is not None and self.proc.stdin is not None, "not a --reader sim agent"
        sent = time.monotonic()
        self.proc.stdin.write(f"{card}\n".encode())
        self.proc.stdin.flush()
        return sent

    # -- events -----------------------------------------------------------------
    def mark(self) -> int:
        """A position in the event list: wait_for(..., since=mark) looks only after it."""
        with self._cv:
            return len(self.events)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                 since: int = 0) -> dict[str, Any]:
        """The first event at or after `since` that satisfies `predicate`."""
        return self.events[self.wait_index(predicate, timeout, since)]

    def wait_index(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                   since: int = 0) -> int:
        deadline = time.monotonic() + timeout
        checked = since
        with self._cv:
            while True:
                for i in range(checked, len(self.events)):
                    if predicate(self.events[i]):
                        return i
                checked = max(checked, len(self.events))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no such agent event within {timeout}s; alive={self.alive()}; "
                        f"events since {since}: {self.events[since:][-20:]}; "
                        f"log tail:\n{self.log_tail()}")
                self._cv.wait(remaining)

    def wait_tap(self, timeout: float = 10.0, since: int = 0, **fields: Any) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("event") == "tap" and all(
            e.get(k) == v for k, v in fields.items()), timeout, since)

    def wait_receipt(self, seq: int, timeout: float = 15.0, since: int = 0) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("event") == "receipt" and e.get("seq") == seq,
                             timeout, since)

    def taps(self) -> list[dict[str, Any]]:
        with self._cv:
            return [e for e in self.events if e.get("event") == "tap"]

    # -- log --------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    def wait_log(self, text: str, timeout: float = 15.0, since_start: bool = True) -> None:
        """Wait until the agent's log (of this run, by default) contains `text`."""
        deadline = time.monotonic() + timeout
        while True:
            raw = self.log_path.read_bytes() if self.log_path.exists() else b""
            log = (raw[self._log_start:] if since_start else raw).decode(errors="replace")
            if text in log:
                return
            if not self.alive():
                raise RuntimeError(f"the agent exited ({self.proc and self.proc.returncode}) "
                                   f"before logging {text!r}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the agent did not log {text!r} within {timeout}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def wait_ready(self, pcsc: bool = True, connected: bool = True,
                   timeout: float = 15.0) -> None:
        """Until the agent watches the vpcd reader and (if asked) is on the broker."""
        if pcsc:
            self.wait_log(f"readers: {READER_PREFIX}", timeout)
        if connected:
            self.wait_log("connected;", timeout)


def start_agent(env: dict[str, str], tmp_path: Path, device_id: str, vehicle_id: str,
                route_id: str, secret: bytes, reader: str = "pcsc",
                extra_args: Sequence[str] = (), name: str = "agent") -> AgentProcess:
    """Write the device secret to a file and start `transit agent` with it.

    The spool is `tmp_path/{name}-spool.db` unless `extra_args` names one; the broker and
    topic prefix come from `env` (TRANSIT_MQTT_URL, TRANSIT_TOPIC_PREFIX). With
    `reader="sim"` the agent's stdin is a pipe (AgentProcess.present).
    """
    secret_file = tmp_path / f"{name}-secret.hex"
    secret_file.write_text(secret.hex() + "\n")
    args = ["--device", device_id, "--vehicle", vehicle_id, "--route", route_id,
            "--secret-file", str(secret_file), "--reader", reader]
    extra = list(extra_args)
    if "--spool" not in extra:
        args += ["--spool", str(tmp_path / f"{name}-spool.db")]
    return AgentProcess(args + extra, env, tmp_path / f"{name}.log",
                        stdin=(reader == "sim")).start()
