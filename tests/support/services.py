"""Real services for the tests: a private Mosquitto, fresh PostgreSQL databases, gateways.

Nothing is mocked and nothing is skipped: a service that cannot be reached fails the
test run with a message that says how to start it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROKER_POLICY = ROOT / "deploy" / "mosquitto" / "transit-broker.conf"
PG_ADMIN_URL = os.environ.get("TRANSIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TRANSIT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Broker:
    """A private Mosquitto with the project's delivery policy, on its own port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    extra_conf: str = ""

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Broker:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        lines = [BROKER_POLICY.read_text(),
                 f"listener {self.port} 127.0.0.1",
                 "allow_anonymous true",
                 f"persistence_location {self.workdir}/",
                 f"log_dest file {self.workdir}/mosquitto.log",
                 self.extra_conf]
        if os.geteuid() == 0:
            # Started as root, Mosquitto would drop to the 'mosquitto' user, which cannot
            # reach a workdir under pytest's root-only temporary folder: stay root.
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.proc = None
        self.start()


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    import psycopg

    name = f"transit_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); start it with "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start") from exc
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def transit(*args: str, env: dict[str, str], check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `transit` command as a user would."""
    exe = shutil.which("transit", path=str(Path(sys.executable).parent)) or "transit"
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=check,
                          input=input, timeout=120)


@dataclass
class Gateway:
    """`transit gateway` running in a subprocess, reachable over HTTP."""

    env: dict[str, str]
    log_path: Path
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> Gateway:
        env = dict(self.env, TRANSIT_HTTP=f"127.0.0.1:{self.http_port}")
        exe = shutil.which("transit", path=str(Path(sys.executable).parent)) or "transit"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen([exe, "gateway"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not healthy: {self.log_path.read_text()[-3000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def transjakarta_feed() -> Path:
    """The real Transjakarta GTFS feed that sits beside the project (never committed).

    `TRANSIT_GTFS_FEED` names it; otherwise `shared/data/gtfs/` is looked for next to
    the checkout and in its parent folders.
    """
    named = os.environ.get("TRANSIT_GTFS_FEED")
    if named:
        return Path(named)
    for folder in [ROOT, *ROOT.parents, Path("/work")]:
        candidate = folder / "shared" / "data" / "gtfs" / "transjakarta-2021.zip"
        if candidate.exists():
            return candidate
    raise FileNotFoundError("the Transjakarta feed (shared/data/gtfs/transjakarta-2021.zip) "
                            "is not beside the checkout; set TRANSIT_GTFS_FEED")


def fund_cards(db_url: str, cards: list[str], amount: int, category: str = "regular") -> None:
    """Issue cards and top each up once, straight through the ledger's own services."""
    from ledger.adapters.db import make_engine, session_factory
    from ledger.services import Ledger

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    ledger = Ledger(engine, "IDR")
    with sessions.begin() as s:
        for card in cards:
            ledger.open_card(s, card, category)
    with sessions.begin() as s:
        for card in cards:
            ledger.topup(s, card, amount, f"fund-{card}")
    engine.dispose()
