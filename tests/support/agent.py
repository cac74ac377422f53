"""`transit agent --reader sim` in a subprocess, driven and observed like a real bus.

Each line written to the agent's standard input is a card presented at the reader; the
agent answers with one JSON line per event on standard output (`tap`, `receipt`,
`alarm`), which a reader thread parses and collects. Its log (standard error) goes to a
file beside the spool.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.gateway import transit_exe
from testbed.logs import read_from

Event = dict[str, Any]


class AgentProcess:
    """One run of `transit agent`; start it again (same spool) with `restart()`."""

    def __init__(self, env: dict[str, str], device_id: str, secret: bytes, workdir: Path, *,
                 spool: Path | None = None, vehicle_id: str = "SBY-0042", route_id: str = "R1",
                 spool_capacity: int | None = None, retry_seconds: float | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.env = dict(env)
        self.device_id = device_id
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secret_file = self.workdir / f"{device_id}.secret"
        self.secret_file.write_text(secret.hex() + "\n")
        self.secret_file.chmod(0o600)
        self.spool = Path(spool) if spool else self.workdir / f"{device_id}.spool.db"
        self.log_path = self.workdir / f"{device_id}.agent.log"
        args = ["agent", "--device", device_id, "--vehicle", vehicle_id, "--route", route_id,
                "--secret-file", str(self.secret_file), "--reader", "sim", "--gps", "none",
                "--spool", str(self.spool)]
        if spool_capacity is not None:
            args += ["--spool-capacity", str(spool_capacity)]
        if retry_seconds is not None:
            args += ["--retry-seconds", str(retry_seconds)]
        self.args = [*args, *extra_args]
        self.proc: subprocess.Popen[str] | None = None
        self.events: list[Event] = []  # this run's events, in the order printed
        self.history: list[list[Event]] = []  # the events of earlier runs
        self.noise: list[str] = []  # stdout lines that are not JSON events
        self._cv = threading.Condition()
        self._reader: threading.Thread | None = None
        self._log_start = 0

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> AgentProcess:
        exe = transit_exe()
        log = self.log_path.open("a")
        self._log_start = log.tell()
        log.write(f"---- start {time.strftime('%H:%M:%S')} {' '.join(self.args)}\n")
        log.flush()
        self.proc = subprocess.Popen([exe, *self.args], env=self.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        log.close()
        with self._cv:
            self.events = []
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def restart(self) -> AgentProcess:
        """A new process on the same spool (the previous one must have ended)."""
        assert not self.alive(), "the previous run is still alive"
        self.history.append(self.events)
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the process to end; returns its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        return rc

    def stop(self) -> int:
        """Graceful stop (SIGTERM), as systemd does."""
        return self.kill(signal.SIGTERM)

    def close(self) -> None:
        """Teardown: end the process whatever its state."""
        if self.alive():
            self.kill(signal.SIGKILL)

    # -- the reader -----------------------------------------------------------
    def tap(self, card: str) -> float:
        """Present a card; returns the monotonic time the line was written."""
        assert self.proc is not None and self.proc.stdin is not None
        t = time.monotonic()
        self.proc.stdin.write(card + "\n")
        self.proc.stdin.flush()
        return t

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            with self._cv:
                if isinstance(event, dict) and "event" in event:
                    event["_t"] = time.monotonic()
                    if proc is self.proc:
                        self.events.append(event)
                else:
                    self.noise.append(line)
                self._cv.notify_all()

    # -- observing ------------------------------------------------------------
    def wait_for(self, predicate: Callable[[list[Event]], bool], timeout: float = 20.0,
                 what: str = "condition") -> list[Event]:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"agent: {what} not met in {timeout}s; events: "
                                       f"{self.events[-20:]}; log: {self.log_tail()}")
                self._cv.wait(min(remaining, 0.5))
            return list(self.events)

    def of(self, kind: str, events: list[Event] | None = None) -> list[Event]:
        with self._cv:
            return [e for e in (self.events if events is None else events)
                    if e["event"] == kind]

    def wait_taps(self, n: int, timeout: float = 20.0) -> list[Event]:
        """The first `n` tap events of this run."""
        self.wait_for(lambda ev: sum(e["event"] == "tap" for e in ev) >= n, timeout,
                      f"{n} tap events")
        return self.of("tap")[:n]

    def wait_receipts(self, seqs: set[int], timeout: float = 30.0) -> list[Event]:
        """Receipt events of this run covering `seqs`."""
        self.wait_for(lambda ev: seqs <= {e["seq"] for e in ev if e["event"] == "receipt"},
                      timeout, f"receipts for {sorted(seqs)}")
        return self.of("receipt")

    def all_events(self) -> list[Event]:
        """Every event of every run, in order."""
        with self._cv:
            return [e for run in [*self.history, self.events] for e in run]

    def wait_log(self, text: str, timeout: float = 20.0) -> None:
        """Until this run's log holds `text` (the agent logs what it noticed and did)."""
        deadline = time.monotonic() + timeout
        while text not in read_from(self.log_path, self._log_start):
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent: {text!r} not logged in {timeout}s; log: "
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return ""

    # -- the spool on disk ------------------------------------------------------
    def spool_seqs(self) -> list[int]:
        """The `seq`s the spool holds (taps still waiting for their receipts)."""
        db = sqlite3.connect(self.spool, timeout=10)
        try:
            return [int(r[0]) for r in db.execute("SELECT seq FROM taps ORDER BY seq")]
        finally:
            db.close()

    def spool_next_seq(self) -> int:
        db = sqlite3.connect(self.spool, timeout=10)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
            return int(row[0]) if row else 1
        finally:
            db.close()


def kept_list(agent: AgentProcess) -> dict[str, Any] | None:
    """The deny list the agent keeps in its spool (what it decides with)."""
    if not agent.spool.exists():
        return None
    try:
        with sqlite3.connect(f"file:{agent.spool}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'state:denylist'").fetchone()
    except sqlite3.OperationalError as exc:
        # The agent creates its spool file a moment before it writes the file's tables.
        if "no such table" in str(exc):
            return None
        raise
    return None if row is None else dict(json.loads(row[0]))


def wait_kept(agent: AgentProcess, what: str, check: Any, timeout: float = 30.0
              ) -> dict[str, Any]:
    """The agent's kept deny list once `check` holds of it."""
    deadline = time.monotonic() + timeout
    while True:
        kept = kept_list(agent)
        if kept is not None and check(kept):
            return kept
        if time.monotonic() > deadline:
            raise AssertionError(f"agent's list never {what}: {kept}\n{agent.log_tail()}")
        time.sleep(0.1)


def listed(kept: dict[str, Any], card: str) -> bool:
    """Whether a kept deny list holds `card`: its base with its changes applied."""
    changes = (kept.get("last_changes") or {}).get("changes", "")
    cards = set(kept["base_cards"])
    items = [item.split(",") for item in changes.split(";")] if changes else []
    # In version order, and only those after the base (an older message may still be kept).
    for _v, c, op in sorted((x for x in items if int(x[0]) > kept["base"]),
                            key=lambda x: int(x[0])):
        (cards.add if op == "+" else cards.discard)(c)
    return card in cards


def tap_at_reader(agent: AgentProcess, card: str) -> dict[str, Any]:
    """Present `card`; the agent's decision at the reader."""
    agent.tap(card)
    agent.wait_for(lambda ev: any(e["event"] == "tap" and e["card"] == card for e in ev),
                   what=f"a tap of {card}")
    return [e for e in agent.of("tap") if e["card"] == card][-1]
