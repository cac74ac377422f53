"""End-to-end delivery of the validator agent (issue 3, contract section 2 "Delivery").

`transit agent --reader sim` runs as a real subprocess against a real Mosquitto and a
real `transit gateway`; every test judges the outcome by the ledger (taps table, fare
entries), the receipts the agent printed, and the agent's spool on disk, not by logs.
Where a broker must go away, the test runs its own private Mosquitto and gateway so the
session broker is never disturbed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select

from fare_gateway.adapters.models import TapRecord
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from testbed.broker import Broker
from testbed.cards import fund_cards
from testbed.gateway import Gateway
from tests.conftest import System
from tests.support.agent import AgentProcess
from tests.support.clients import MqttPeer
from transit.wire import Receipt, Tap

FUNDS = 100_000
READER_BUDGET_MS = 300  # issue 3: card present -> passenger feedback


# -- helpers ---------------------------------------------------------------------------

class Watcher:
    """An MQTT observer with a persistent session: it misses nothing while its broker is
    stopped and restarted (the broker keeps its subscriptions and queues for it)."""

    def __init__(self, url: str, topics: list[str]) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.topics = topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"watch-{uuid.uuid4().hex[:10]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.messages: list[tuple[str, bytes]] = []
        self._cv = threading.Condition()
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        self.client.connect(host, int(port), keepalive=10, clean_start=False,
                            properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"watcher: no SUBACK for {topics}")

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cv:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cv.notify_all()

    def wait_for(self, predicate: Callable[[Watcher], bool], timeout: float = 20.0,
                 what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"watcher: {what} not met in {timeout}s "
                                       f"({len(self.messages)} messages)")
                self._cv.wait(min(remaining, 0.5))

    def tap_seqs(self) -> list[int]:
        """`seq` of every Tap published, in the order the broker delivered them."""
        return [t.seq for t in self.taps()]

    def taps(self) -> list[Tap]:
        with self._cv:
            return [Tap.parse(p) for t, p in self.messages if t.endswith("/tap")]

    def statuses(self) -> list[dict[str, Any]]:
        with self._cv:
            return [json.loads(p) for t, p in self.messages if t.endswith("/status")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_online(watcher: Watcher, since_ms: int, timeout: float = 20.0) -> dict[str, Any]:
    """The first `online` status the agent published after `since_ms`."""
    def fresh() -> list[dict[str, Any]]:
        return [s for s in watcher.statuses() if s.get("online") and s["ts"] >= since_ms]
    watcher.wait_for(lambda w: bool(fresh()), timeout, "agent online")
    return fresh()[0]


def retained_status(url: str, topic: str) -> dict[str, Any]:
    """What a newcomer reads on the status topic (the retained message)."""
    peer = MqttPeer(url)
    try:
        peer.subscribe(topic)
        peer.wait_for(lambda m: len(m) >= 1, timeout=10)
        return dict(json.loads(peer.messages[0][1]))
    finally:
        peer.close()


@dataclass(frozen=True)
class Ledger:
    taps: dict[str, tuple[str, bool, str]]  # tap_id -> (card, accepted, status)
    fares: dict[str, list[int]]  # tap_id -> amounts of its fare entries

    @property
    def fare_entries(self) -> int:
        return sum(len(v) for v in self.fares.values())


def ledger(system: System, device_id: str) -> Ledger:
    """The gateway's record of this device's taps and their fare entries."""
    engine = make_engine(system.env["TRANSIT_DATABASE_URL"])
    try:
        with session_factory(engine)() as s:
            assert check_invariants(s) == []
            taps = {r.tap_id: (r.card, r.accepted, r.status) for r in s.scalars(
                select(TapRecord).where(TapRecord.device_id == device_id))}
            fares: dict[str, list[int]] = {}
            for tap_id, amount in s.execute(select(Entry.tap_id, Entry.amount).where(
                    Entry.kind == "fare", Entry.tap_id.like(f"{device_id}:%"))):
                fares.setdefault(str(tap_id), []).append(int(amount))
            return Ledger(taps, fares)
    finally:
        engine.dispose()


def wait_ledger(system: System, device_id: str, predicate: Callable[[Ledger], bool],
                timeout: float = 30.0) -> Ledger:
    deadline = time.monotonic() + timeout
    while True:
        view = ledger(system, device_id)
        if predicate(view) or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


def cards(tag: str, n: int) -> list[str]:
    return [f"04{tag}{i:06X}" for i in range(n)]


def assert_charged_once(view: Ledger, device_id: str, by_seq: dict[int, str]) -> None:
    """Exactly the taps the agent accepted are in the ledger, each charged exactly once."""
    expected = {f"{device_id}:{seq}" for seq in by_seq}
    assert set(view.taps) == expected, (sorted(view.taps), sorted(expected))
    for seq, card in by_seq.items():
        tap_id = f"{device_id}:{seq}"
        assert view.taps[tap_id] == (card, True, "charged"), (tap_id, view.taps[tap_id])
        assert len(view.fares.get(tap_id, [])) == 1, (tap_id, view.fares.get(tap_id))
        assert view.fares[tap_id][0] > 0
    assert view.fare_entries == len(by_seq)


def assert_receipts_match(receipts: list[dict[str, Any]], view: Ledger, device_id: str) -> None:
    """One receipt event per tap, each telling the fare the ledger holds."""
    seqs = [r["seq"] for r in receipts]
    assert len(seqs) == len(set(seqs)), f"a receipt shown twice: {seqs}"
    for r in receipts:
        assert r["status"] in ("charged", "duplicate"), r
        assert r["fare"] == view.fares[f"{device_id}:{r['seq']}"][0], r
        assert r["balance"] == FUNDS - r["fare"], r


@dataclass
class Stack:
    """A private Mosquitto (project policy) and a gateway on it, sharing the test's DB."""

    broker: Broker
    gateway: Gateway
    env: dict[str, str]


@pytest.fixture
def private_stack(system: System, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []
    workdirs: list[Path] = []

    def make(extra_conf: str = "") -> Stack:
        # Not under tmp_path: pytest keeps that 0700 for root, and Mosquitto, which drops
        # to its own user, could then write neither its persistence file nor its log, so a
        # restart would forget every session and every queued message.
        workdir = Path(tempfile.mkdtemp(prefix="transit-mq-"))
        workdirs.append(workdir)
        broker = Broker(workdir, extra_conf=extra_conf).start()
        env = dict(system.env, TRANSIT_MQTT_URL=broker.url)
        gateway = Gateway(env, tmp_path / f"gw{len(stacks)}.log")
        stacks.append(Stack(broker, gateway, env))
        gateway.start()
        return stacks[-1]

    yield make
    for i, stack in enumerate(stacks):
        stack.gateway.stop()
        stack.broker.stop()
        log = (tmp_path / f"gw{i}.log").read_text()
        assert "Traceback (most recent call last)" not in log, log[-4000:]
    for workdir in workdirs:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    made: list[AgentProcess] = []

    def make(env: dict[str, str], device_id: str, secret: bytes, **kw: Any) -> AgentProcess:
        agent = AgentProcess(env, device_id, secret, tmp_path / "agent", **kw)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()
        print(f"--- agent {agent.device_id} log:\n{agent.log_tail(6000)}")
        assert "Traceback (most recent call last)" not in agent.log_tail(10**7), \
            agent.log_tail(4000)


def new_device(system: System) -> tuple[str, bytes]:
    """A validator of its own, so no MQTT session of another test is ever resumed."""
    device_id = f"BUS-{uuid.uuid4().hex[:8]}-A"
    secret = system.transit("devices", "add", device_id, "--vehicle", "SBY-0042").stdout.strip()
    return device_id, bytes.fromhex(secret)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- 1. outage ---------------------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_ten_taps_during_a_broker_outage_arrive_in_order_and_are_charged_once(
        system: System, private_stack: Callable[..., Stack],
        agents: Callable[..., AgentProcess]) -> None:
    stack = private_stack()
    device_id, secret = new_device(system)
    riders = cards("A1", 10)
    fund_cards(system.env["TRANSIT_DATABASE_URL"], riders, FUNDS)
    topic = f"{system.prefix}/dev/{device_id}"
    watcher = Watcher(stack.broker.url, [f"{topic}/tap", f"{topic}/status"])
    agent = agents(stack.env, device_id, secret)
    started = now_ms()
    agent.start()
    wait_online(watcher, started)

    stack.broker.stop()
    agent.wait_log("disconnected from the broker")  # a real outage, as the agent sees it
    written = [agent.tap(card) for card in riders]
    taps = agent.wait_taps(10, timeout=10)
    # Accepted at the reader at once, with no broker anywhere.
    assert [(t["card"], t["seq"], t["accepted"]) for t in taps] == \
        [(card, seq, True) for seq, card in enumerate(riders, 1)]
    assert all(t["reason"] in (None, "", "ok") for t in taps), taps
    assert max(t["latency_ms"] for t in taps) < READER_BUDGET_MS, taps
    assert taps[-1]["_t"] - written[-1] < 2.0  # the last one too, not after a timeout
    # All ten on disk, none at the gateway yet.
    assert agent.spool_seqs() == list(range(1, 11))
    assert ledger(system, device_id).taps == {}

    stack.broker.start()  # same port, same persistence: the gateway's session is back
    receipts = agent.wait_receipts(set(range(1, 11)), timeout=45)
    since = now_ms()

    # They reached the broker in seq order, each once.
    watcher.wait_for(lambda w: len(w.tap_seqs()) >= 10, 10, "10 taps on the broker")
    assert watcher.tap_seqs() == list(range(1, 11))
    assert [t.card for t in watcher.taps()] == riders
    # Charged exactly once; the receipts tell the ledger's fare and balance.
    view = ledger(system, device_id)
    assert_charged_once(view, device_id, dict(enumerate(riders, 1)))
    assert_receipts_match(receipts, view, device_id)
    assert len(receipts) == 10
    assert agent.spool_seqs() == []
    # The retained status follows: at the latest with the next heartbeat (30 s), a
    # newcomer reads that this bus is online with an empty spool.
    watcher.wait_for(lambda w: any(s["online"] and s["spool_depth"] == 0 and s["ts"] >= since
                                   for s in w.statuses()), 40, "status with spool_depth 0")
    status = retained_status(stack.broker.url, f"{topic}/status")
    assert (status["online"], status["spool_depth"]) == (True, 0), status
    # And on a clean stop it says offline, still with nothing waiting.
    assert agent.stop() == 0
    status = retained_status(stack.broker.url, f"{topic}/status")
    assert (status["online"], status["spool_depth"]) == (False, 0), status
    watcher.close()


# -- 2. kill -9 ----------------------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_kill_9_between_taps_and_while_publishing_loses_nothing_and_reuses_no_seq(
        system: System, agents: Callable[..., AgentProcess]) -> None:
    device_id, secret = new_device(system)
    riders = cards("B2", 9)
    fund_cards(system.env["TRANSIT_DATABASE_URL"], riders, FUNDS)
    topic = f"{system.prefix}/dev/{device_id}"
    watcher = Watcher(system.broker.url, [f"{topic}/tap", f"{topic}/status"])
    system.gateway.stop()  # no receipts: every accepted tap stays in the spool
    agent = agents(system.env, device_id, secret)

    # Run 1: five taps in a burst, kill -9 the moment the fifth is shown, while the
    # publisher is still sending them.
    started = now_ms()
    agent.start()
    wait_online(watcher, started)
    for card in riders[:5]:
        agent.tap(card)
    agent.wait_taps(5)
    assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
    # Its last will tells everyone the bus is offline.
    watcher.wait_for(lambda w: any(s["online"] is False and s["ts"] >= started
                                   for s in w.statuses()), 10, "last will")
    run1 = agent.of("tap")
    assert all(t["accepted"] for t in run1), run1
    assert agent.spool_seqs() == [t["seq"] for t in run1]  # all on disk, none lost

    # Run 2: same spool; two taps, wait until they are out on the broker, then kill -9
    # between taps (idle, nothing receipted).
    started = now_ms()
    agent.restart()
    wait_online(watcher, started)
    for card in riders[5:7]:
        agent.tap(card)
    run2 = agent.wait_taps(2)
    watcher.wait_for(lambda w: {t["seq"] for t in run2} <= set(w.tap_seqs()), 20,
                     "run 2 taps published")
    assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
    assert agent.spool_seqs() == sorted(t["seq"] for t in run1 + run2)

    # Run 3: same spool; one more tap right away, then a kill -9 straight after it was
    # shown, before its publish could possibly have been answered.
    started = now_ms()
    agent.restart()
    agent.tap(riders[7])
    run3a = agent.wait_taps(1)
    assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
    assert agent.spool_seqs() == sorted(t["seq"] for t in run1 + run2 + run3a)

    # The gateway comes back while the bus is off: it charges what the broker queued
    # for it, and its receipts wait at the broker for the agent's session.
    system.gateway.start()
    wait_ledger(system, device_id, lambda v: len(v.taps) >= 7, timeout=20)

    # Run 4: one last tap; every receipt (queued or answering a re-publish) reaches it.
    started = now_ms()
    agent.restart()
    wait_online(watcher, started)
    agent.tap(riders[8])
    run4 = agent.wait_taps(1)
    runs = [run1, run2, run3a, run4]
    accepted = [t for run in runs for t in run if t["accepted"]]
    assert len(accepted) == 9, runs
    seqs = [t["seq"] for t in accepted]
    # seq strictly increasing across every restart: never reused.
    assert seqs == sorted(set(seqs)), seqs
    assert seqs == list(range(1, 10)), seqs
    receipts = agent.wait_receipts(set(seqs), timeout=45)

    by_seq = {t["seq"]: t["card"] for t in accepted}
    view = wait_ledger(system, device_id, lambda v: len(v.taps) >= 9)
    assert_charged_once(view, device_id, by_seq)
    assert_receipts_match(receipts, view, device_id)
    assert agent.spool_seqs() == []
    # The broker saw no seq with two different bodies (a reused seq would show so).
    bodies: dict[int, bytes] = {}
    for tap in watcher.taps():
        assert bodies.setdefault(tap.seq, tap.canonical) == tap.canonical, tap.seq
    assert set(bodies) == set(seqs)
    watcher.close()


# -- 3. a message the broker acknowledged but dropped -----------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_tap_the_broker_acknowledged_and_dropped_is_republished_and_charged_once(
        system: System, private_stack: Callable[..., Stack],
        agents: Callable[..., AgentProcess]) -> None:
    # A broker that queues at most one message for an offline client (a later line of
    # the configuration wins over the project policy's `max_queued_messages 0`).
    stack = private_stack(extra_conf="max_queued_messages 1\n")
    device_id, secret = new_device(system)
    riders = cards("C3", 5)
    fund_cards(system.env["TRANSIT_DATABASE_URL"], riders, FUNDS)
    topic = f"{system.prefix}/dev/{device_id}"
    watcher = Watcher(stack.broker.url, [f"{topic}/tap", f"{topic}/status"])
    stack.gateway.stop()  # its persistent session stays, holding at most one message
    agent = agents(stack.env, device_id, secret, retry_seconds=2)
    started = now_ms()
    agent.start()
    wait_online(watcher, started)

    for card in riders:
        agent.tap(card)
    taps = agent.wait_taps(5)
    assert [(t["seq"], t["accepted"]) for t in taps] == [(s, True) for s in range(1, 6)]
    # PUBACKed by the broker (the watcher got them) and re-published twice with no
    # receipt (after 2 s, then 4 s more): the broker dropped all but one for the gateway.
    watcher.wait_for(lambda w: all(w.tap_seqs().count(s) >= 3 for s in range(1, 6)), 20,
                     "two re-publishes of every tap")
    assert agent.spool_seqs() == [1, 2, 3, 4, 5]

    back = time.monotonic()
    stack.gateway.start()
    # The one message the broker kept is charged at once...
    first = wait_ledger(system, device_id, lambda v: len(v.taps) >= 1, timeout=10)
    assert time.monotonic() - back < 7, "the next re-publish came first; the test proves less"
    assert set(first.taps) == {f"{device_id}:1"}, first.taps
    # ...the dropped ones when the agent re-publishes them (8 s after the last round).
    receipts = agent.wait_receipts({1, 2, 3, 4, 5}, timeout=30)
    view = wait_ledger(system, device_id, lambda v: len(v.taps) >= 5)
    assert_charged_once(view, device_id, {t["seq"]: t["card"] for t in taps})
    assert_receipts_match(receipts, view, device_id)
    assert len(receipts) == 5
    assert agent.spool_seqs() == []
    watcher.close()
    stack.broker.stop()  # Mosquitto writes its log out as it ends
    mosquitto_log = (stack.broker.workdir / "mosquitto.log").read_text()
    assert "Outgoing messages are being dropped" in mosquitto_log


# -- 4. a full spool ----------------------------------------------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_full_spool_refuses_new_taps_raises_an_alarm_and_keeps_the_oldest(
        system: System, private_stack: Callable[..., Stack],
        agents: Callable[..., AgentProcess]) -> None:
    stack = private_stack()
    device_id, secret = new_device(system)
    riders = cards("D4", 4)
    fund_cards(system.env["TRANSIT_DATABASE_URL"], riders, FUNDS)
    topic = f"{system.prefix}/dev/{device_id}"
    watcher = Watcher(stack.broker.url, [f"{topic}/tap", f"{topic}/status"])
    agent = agents(stack.env, device_id, secret, spool_capacity=3)
    # The bus boots in a depot with no network at all.
    stack.broker.stop()
    agent.start()
    for card in riders:
        agent.tap(card)
    taps = agent.wait_taps(4)
    assert [(t["card"], t["seq"], t["accepted"]) for t in taps[:3]] == \
        [(card, seq, True) for seq, card in enumerate(riders[:3], 1)]
    assert (taps[3]["card"], taps[3]["accepted"], taps[3]["reason"]) == \
        (riders[3], False, "spool_full"), taps[3]
    assert taps[3]["seq"] is None
    assert taps[3]["latency_ms"] < READER_BUDGET_MS
    alarms = agent.of("alarm")
    assert alarms and alarms[0] == {"event": "alarm", "alarm": "spool_full", "active": True,
                                    "_t": alarms[0]["_t"]}, alarms
    # Nothing dropped: the oldest three are all kept.
    assert agent.spool_seqs() == [1, 2, 3]

    stack.broker.start()
    receipts = agent.wait_receipts({1, 2, 3}, timeout=45)
    agent.wait_for(lambda ev: any(e["event"] == "alarm" and not e["active"] for e in ev), 10,
                   "alarm cleared")
    view = ledger(system, device_id)
    assert_charged_once(view, device_id, {1: riders[0], 2: riders[1], 3: riders[2]})
    assert_receipts_match(receipts, view, device_id)
    assert agent.spool_seqs() == []
    # The alarm was in the status the bus published when it came back.
    watcher.wait_for(lambda w: any(s.get("spool_full") for s in w.statuses()), 10,
                     "spool_full in the status")
    assert any(s.get("spool_full") and s.get("refused_spool_full") == 1
               for s in watcher.statuses()), watcher.statuses()
    # With room again, the refused passenger taps again and is accepted and charged.
    agent.tap(riders[3])
    retry = agent.wait_taps(5)[-1]
    assert (retry["card"], retry["seq"], retry["accepted"]) == (riders[3], 4, True)
    agent.wait_receipts({4})
    view = ledger(system, device_id)
    assert_charged_once(view, device_id, dict(enumerate(riders, 1)))
    assert agent.stop() == 0
    status = retained_status(stack.broker.url, f"{topic}/status")
    assert (status["spool_depth"], status["spool_full"]) == (0, False), status
    watcher.close()


# -- 5. receipts must be authentic ------------------------------------------------------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_forged_receipt_does_not_release_a_tap_from_the_spool(
        system: System, agents: Callable[..., AgentProcess]) -> None:
    device_id, secret = new_device(system)
    other_id, other_secret = new_device(system)
    card, = cards("E5", 1)
    fund_cards(system.env["TRANSIT_DATABASE_URL"], [card], FUNDS)
    topic = f"{system.prefix}/dev/{device_id}"
    watcher = Watcher(system.broker.url, [f"{topic}/tap", f"{topic}/status"])
    system.gateway.stop()  # the real receipt must wait
    agent = agents(system.env, device_id, secret)
    started = now_ms()
    agent.start()
    wait_online(watcher, started)
    agent.tap(card)
    tap, = agent.wait_taps(1)
    assert (tap["seq"], tap["accepted"]) == (1, True)
    watcher.wait_for(lambda w: 1 in w.tap_seqs(), 10, "tap published")

    forgeries = [
        # signed with a key that is not this device's
        Receipt(device_id=device_id, seq=1, status="charged", fare=0, balance=FUNDS,
                currency="IDR").signed(os.urandom(32)).encode(),
        # genuinely signed, but for another device (replayed onto this topic)
        Receipt(device_id=other_id, seq=1, status="charged", fare=0, balance=FUNDS,
                currency="IDR").signed(other_secret).encode(),
        # not signed at all
        json.dumps({"v": 1, "device_id": device_id, "seq": 1, "status": "charged",
                    "fare": 0, "balance": FUNDS, "currency": "IDR"}).encode(),
    ]
    peer = MqttPeer(system.broker.url)
    for payload in forgeries:
        peer.publish(f"{topic}/receipt", payload)
    peer.close()
    # Let the agent handle all three (they arrive in milliseconds; its log says when).
    def refusals() -> int:
        log = agent.log_tail(10**7)
        return log.count("not signed with this device's key") + log.count("malformed receipt")
    deadline = time.monotonic() + 5
    while refusals() < 3:
        assert time.monotonic() < deadline, f"{refusals()} of 3 forgeries refused in 5 s: " \
            f"{agent.log_tail()}"
        time.sleep(0.1)
    # Each forgery was refused where an accepted receipt would have been shown.
    assert agent.of("receipt") == [], agent.of("receipt")
    assert agent.spool_seqs() == [1]
    assert ledger(system, device_id).taps == {}

    system.gateway.start()
    receipt, = agent.wait_receipts({1}, timeout=30)
    view = ledger(system, device_id)
    assert_charged_once(view, device_id, {1: card})
    assert_receipts_match([receipt], view, device_id)
    assert receipt["status"] == "charged"
    assert agent.spool_seqs() == []
    watcher.close()
