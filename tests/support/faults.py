"""A fleet under a steady stream of taps, and the faults done to it.

`Fleet` runs a private Mosquitto (the project's broker policy), one or more `transit
gateway` processes on a shared subscription, and real validator agents (`transit agent
--reader sim`) that passengers keep tapping at a steady rate, each on a card of their
own. After a fault, `Fleet.account()` compares what the readers accepted with what the
ledger holds: taps sent, charged, lost, duplicated.

Faults are done to real processes and real connections: kill -9, a broker killed and
started again on the same port, a private PostgreSQL cluster stopped the way a crash
stops it, and a TCP relay that goes silent like a radio link in a tunnel.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from testbed.broker import Broker
from testbed.cards import fund_cards
from testbed.gateway import Gateway, transit
from testbed.ports import free_port, retry_on_taken_port
from tests.support.agent import AgentProcess
from tests.support.commands import transit_here
from tests.support.postgres import PrivatePostgres

FUNDS = 1_000_000


# -- a radio link that can be cut ----------------------------------------------------------

class RadioLink:
    """A TCP relay between a validator and its broker.

    `cut()` makes the link go silent the way a bus in a tunnel does: open connections stay
    open but every byte, either way, is swallowed; new connections are accepted and go
    nowhere. Nothing is closed, so only the validator's own keepalive can tell. `restore()`
    ends the silent connections (the TCP stack would have given up on them by then) and
    relays new ones again.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._cut = False
        self._lock = threading.Lock()
        self._silenced: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._closed = False

    def start(self) -> RadioLink:
        """Listen (on another free port if this one turns out taken) and relay."""
        retry_on_taken_port(self._listen, self._move)
        threading.Thread(target=self._accept, daemon=True, name="link-accept").start()
        return self

    def _listen(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))

    def _move(self) -> None:
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            self._silenced.extend(self._open)

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            silenced, self._silenced = self._silenced, []
        for sock in silenced:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        _close(self._server)
        with self._lock:
            for sock in [*self._open, *self._silenced]:
                _close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(client)
                if self._cut:
                    self._silenced.append(client)
                    threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                    continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
            except OSError:
                _close(client)  # the broker itself is down: refused, as it would be
                continue
            with self._lock:
                self._open.add(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _swallow(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if self._cut or src in self._silenced:
                        if src not in self._silenced:
                            self._silenced.append(src)
                        continue
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            if src in self._silenced or dst in self._silenced:
                return  # restore() ends it
            self._open.discard(src)
            self._open.discard(dst)
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


# -- the fleet ----------------------------------------------------------------------------------

@dataclass
class Account:
    """What the readers accepted against what the ledger holds."""

    sent: int  # taps accepted at a reader (the passenger saw green)
    charged: int  # of those, in the ledger with exactly one fare entry
    lost: int  # accepted at a reader, not in the ledger
    duplicated: int  # fare entries beyond the first for one tap
    unconfirmed: int  # in the ledger, but the reader's feedback never came out (kill -9)
    not_receipted: int  # still in a validator's spool at the end
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few tap ids of each fault

    def line(self, name: str) -> str:
        return (f"{name}: sent {self.sent}, charged {self.charged}, lost {self.lost}, "
                f"duplicated {self.duplicated}, unconfirmed {self.unconfirmed}, "
                f"not receipted {self.not_receipted}"
                + (f" (examples: {self.examples})" if self.examples else ""))


@dataclass
class Fleet:
    """A private broker, gateways on a shared subscription, agents, and a database."""

    db_url: str
    workdir: Path
    cluster: PrivatePostgres | None = None  # the database's own cluster, if it has one
    broker: Broker = field(init=False)
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:10]}/v1")
    gateways: list[Gateway] = field(default_factory=list)
    agents: list[AgentProcess] = field(default_factory=list)
    links: dict[str, RadioLink] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Not under pytest's tmp_path (0700 for root), where a Mosquitto that drops to its
        # own user could not keep its persistence file.
        self._mqdir = Path(tempfile.mkdtemp(prefix="transit-mq-"))
        self.broker = Broker(self._mqdir).start()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
        self.env.update(TRANSIT_DATABASE_URL=self.db_url, TRANSIT_MQTT_URL=self.broker.url,
                        TRANSIT_TOPIC_PREFIX=self.prefix,
                        TRANSIT_SHARE_GROUP=f"g{uuid.uuid4().hex[:8]}")
        transit_here("db", "upgrade", env=self.env)
        self._card_pool: list[str] = []
        self._card_lock = threading.Lock()
        self._feeders: list[threading.Thread] = []
        self._streaming = threading.Event()
        self.presented = 0
        self._written: dict[tuple[str, int], int] = {}  # (device, run) -> cards presented

    # -- parts -------------------------------------------------------------------------
    def start_gateways(self, n: int) -> list[Gateway]:
        for _ in range(n):
            i = len(self.gateways)
            env = dict(self.env, TRANSIT_GATEWAY_ID=f"gw-{uuid.uuid4().hex[:6]}-{i}")
            self.gateways.append(Gateway(env, self.workdir / f"gateway{i}.log").start())
        return self.gateways

    def fund(self, n: int) -> None:
        """Issue and fund `n` more cards, one per passenger to come."""
        tag = uuid.uuid4().hex[:6].upper()
        cards = [f"04{tag}{i:06X}" for i in range(n)]
        fund_cards(self.db_url, cards, FUNDS)
        with self._card_lock:
            self._card_pool.extend(cards)

    def add_agent(self, *, via_link: bool = False, retry_seconds: float = 5.0) -> AgentProcess:
        device_id = f"BUS-{uuid.uuid4().hex[:8]}-A"
        vehicle = f"SBY-{len(self.agents):04d}"
        secret = transit("devices", "add", device_id, "--vehicle", vehicle,
                         env=self.env).stdout.strip()
        env = dict(self.env)
        if via_link:
            link = RadioLink(self.broker.port).start()
            self.links[device_id] = link
            env["TRANSIT_MQTT_URL"] = link.url
        agent = AgentProcess(env, device_id, bytes.fromhex(secret), self.workdir / "agents",
                             vehicle_id=vehicle, retry_seconds=retry_seconds)
        self.agents.append(agent.start())
        return agent

    # -- passengers ----------------------------------------------------------------------
    def _next_card(self) -> str | None:
        with self._card_lock:
            return self._card_pool.pop() if self._card_pool else None

    def stream(self, rate_per_agent: float) -> None:
        """Passengers start tapping every agent at `rate_per_agent` taps a second, each on
        a card of their own, until `stop_stream()`; a dead validator is walked past."""
        self._streaming.set()
        for agent in self.agents:
            thread = threading.Thread(target=self._feed, args=(agent, 1.0 / rate_per_agent),
                                      daemon=True, name=f"feed-{agent.device_id}")
            thread.start()
            self._feeders.append(thread)

    def _feed(self, agent: AgentProcess, interval: float) -> None:
        next_at = time.monotonic()
        while self._streaming.is_set():
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            if not agent.alive():
                continue
            card = self._next_card()
            if card is None:
                raise RuntimeError("the fleet ran out of funded cards; fund more")
            run = len(agent.history)
            try:
                agent.tap(card)
            except (OSError, ValueError, AssertionError):
                continue  # the validator died just now: this passenger walks on
            with self._card_lock:
                self.presented += 1
                key = (agent.device_id, run)
                self._written[key] = self._written.get(key, 0) + 1

    def stop_stream(self) -> None:
        self._streaming.clear()
        for thread in self._feeders:
            thread.join(timeout=10)
        self._feeders.clear()

    # -- accounting ------------------------------------------------------------------------
    def accepted(self) -> dict[str, str]:
        """tap_id -> card of every tap a reader accepted, over every run of every agent."""
        out: dict[str, str] = {}
        for agent in self.agents:
            for event in agent.all_events():
                if event["event"] == "tap" and event["accepted"]:
                    out[f"{agent.device_id}:{event['seq']}"] = event["card"]
        return out

    def ledger(self) -> tuple[dict[str, tuple[str, bool, str]], dict[str, int]]:
        """tap_id -> (card, accepted, status) of every tap the gateway recorded, and
        tap_id -> number of its fare entries, for this fleet's devices."""
        from fare_gateway.adapters.models import TapRecord
        from ledger.adapters.db import make_engine, session_factory
        from ledger.adapters.models import Entry

        devices = [a.device_id for a in self.agents]
        engine = make_engine(self.db_url)
        try:
            with session_factory(engine)() as s:
                taps = {r.tap_id: (r.card, r.accepted, r.status) for r in s.scalars(
                    select(TapRecord).where(TapRecord.device_id.in_(devices)))}
                fares: dict[str, int] = {}
                for (tap_id,) in s.execute(select(Entry.tap_id).where(Entry.kind == "fare")):
                    fares[str(tap_id)] = fares.get(str(tap_id), 0) + 1
            return taps, fares
        finally:
            engine.dispose()

    def account(self) -> Account:
        accepted = self.accepted()
        records, fares = self.ledger()
        taps = {tap_id: card for tap_id, (card, _accepted, _status) in records.items()}
        lost = [t for t in accepted if t not in taps]
        charged = [t for t in accepted if t in taps and fares.get(t) == 1
                   and taps[t] == accepted[t]]
        duplicated = sum(max(0, n - 1) for t, n in fares.items() if t in taps)
        unconfirmed = [t for t in taps if t not in accepted]
        waiting = sum(len(a.spool_seqs()) for a in self.agents)
        examples = {
            "lost": [f"{t} {accepted[t]}" for t in lost[:5]],
            "unconfirmed": [f"{t} {records[t]}" for t in unconfirmed[:5]],
            "duplicated": [t for t, n in fares.items() if t in taps and n > 1][:5],
        }
        return Account(len(accepted), len(charged), len(lost), duplicated, len(unconfirmed),
                       waiting, {k: v for k, v in examples.items() if v})

    def settle_up(self, timeout: float = 120.0) -> Account:
        """Wait until every tap a reader accepted is in the ledger and every validator has
        its receipts (or `timeout`), then account."""
        deadline = time.monotonic() + timeout
        # First every living validator answers every card presented to it, so that no
        # tap is in the ledger before its reader's decision has been read here.
        for agent in self.agents:
            if agent.alive():
                written = self._written.get((agent.device_id, len(agent.history)), 0)
                agent.wait_taps(written, timeout=max(1.0, deadline - time.monotonic()))
        while True:
            account = self.account()
            done = (account.lost == 0 and account.not_receipted == 0
                    and account.charged == account.sent)
            if done or time.monotonic() > deadline:
                return account
            time.sleep(1.0)

    def invariants(self) -> list[Any]:
        from ledger.adapters.db import make_engine, session_factory
        from ledger.services import check_invariants

        engine = make_engine(self.db_url)
        try:
            with session_factory(engine)() as s:
                return list(check_invariants(s))
        finally:
            engine.dispose()

    def reconcile(self) -> subprocess.CompletedProcess[str]:
        return transit("reconcile", env=self.env, check=False)

    # -- teardown --------------------------------------------------------------------------
    def logs(self) -> Iterator[tuple[str, str]]:
        for i, _ in enumerate(self.gateways):
            path = self.workdir / f"gateway{i}.log"
            yield path.name, path.read_text() if path.exists() else ""
        for agent in self.agents:
            yield f"agent {agent.device_id}", agent.log_tail(10**7)

    def close(self) -> None:
        self.stop_stream()
        for agent in self.agents:
            agent.close()
        for gateway in self.gateways:
            gateway.stop()
        for link in self.links.values():
            link.close()
        self.broker.stop()
        shutil.rmtree(self._mqdir, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout}s")
        time.sleep(0.2)
