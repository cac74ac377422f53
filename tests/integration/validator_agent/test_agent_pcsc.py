"""The validator agent through the real stack (issue 3):

VirtualCard -> vpcd (TCP) -> pcscd -> pyscard -> `transit agent` -> Mosquitto ->
`transit gateway` -> ledger, and the Receipt back to the agent.

Nothing is simulated between the card and the ledger: the card speaks vpcd's protocol
to a real pcscd, the agent reads it with PC/SC `FF CA 00 00 00`, and the tap travels
over a real broker to a real gateway.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from testbed.pcsc import AgentProcess, PrivatePcscd, SystemPcscd
from tests.conftest import System
from tests.integration.validator_agent.conftest import AgentFactory
from tests.support.clients import MqttPeer
from tests.support.fare_clock import regular_fare_at
from transit.denylist import DenyList
from transit.wire import Tap

GPS = "sim:-7.2575,112.7521"
LAT_E6, LON_E6 = -7_257_500, 112_752_100
CARD_A = "04A1B2C3D4E5F6"
CARD_B = "04B1B2C3D4E5F7"
DENIED = "04DE11A5C0FFEE"


def _taps_on(peer: MqttPeer, count: int, timeout: float = 15.0) -> list[Tap]:
    got = peer.wait_for(lambda m: sum(t.endswith("/tap") for t, _ in m) >= count, timeout)
    return [Tap.parse(p) for t, p in got if t.endswith("/tap")]


def _tap_of(peer: MqttPeer, seq: int) -> Tap:
    got = peer.wait_for(lambda m: any(t.endswith("/tap") and Tap.parse(p).seq == seq
                                      for t, p in m), 15.0)
    return next(tap for tap in (Tap.parse(p) for t, p in got if t.endswith("/tap"))
                if tap.seq == seq)


def _tap_peer(system: System) -> MqttPeer:
    peer = system.peer()
    peer.subscribe(system.tap_topic())
    return peer


def test_a_card_on_the_reader_becomes_a_signed_tap_that_is_charged_and_receipted(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory
) -> None:
    system.issue(CARD_A, 50_000)
    system.issue(CARD_B, 50_000)
    peer = _tap_peer(system)
    agent = agent_factory(extra_args=["--gps", GPS])
    agent.wait_ready()

    for seq, card in ((1, CARD_A), (2, CARD_B)):
        mark = agent.mark()
        pcscd.tap(card)
        shown = agent.wait_tap(since=mark)
        assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
            (card, seq, True, None)
        receipt = agent.wait_receipt(seq, since=mark)
        # The agent stamps the tap with its own clock: it is due the fare of that time.
        fare = regular_fare_at(_tap_of(peer, seq).ts)
        assert (receipt["status"], receipt["fare"], receipt["balance"]) == \
            ("charged", fare, 50_000 - fare), receipt

    taps = _taps_on(peer, 2)
    assert [(t.seq, t.card, t.accepted) for t in taps[:2]] == [(1, CARD_A, True),
                                                               (2, CARD_B, True)]
    for tap in taps:
        assert tap.verify(system.secret), tap
        assert (tap.device_id, tap.vehicle_id, tap.route_id, tap.kind) == \
            (system.device_id, "SBY-0042", "R1", "entry")
        assert (tap.lat_e6, tap.lon_e6) == (LAT_E6, LON_E6)
        assert abs(tap.ts - time.time() * 1000) < 60_000
    assert agent.alive()
    peer.close()


def test_a_repeat_tap_is_refused_at_the_reader_and_not_charged(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory
) -> None:
    system.issue(CARD_A, 50_000)
    peer = _tap_peer(system)
    agent = agent_factory(extra_args=["--gps", GPS])
    agent.wait_ready()

    mark = agent.mark()
    pcscd.tap(CARD_A)
    assert agent.wait_tap(since=mark)["accepted"] is True
    assert agent.wait_receipt(1, since=mark)["status"] == "charged"

    mark = agent.mark()
    pcscd.tap(CARD_A)  # the same card again, seconds later, on the same bus
    shown = agent.wait_tap(since=mark)
    assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
        (CARD_A, 2, False, "repeat")
    receipt = agent.wait_receipt(2, since=mark)
    assert receipt["status"] == "not_charged", receipt
    assert receipt["balance"] is None, receipt  # only a charge tells the balance

    taps = _taps_on(peer, 2)
    assert [(t.seq, t.accepted, t.reason) for t in taps[:2]] == [(1, True, None),
                                                                 (2, False, "repeat")]
    assert all(t.verify(system.secret) for t in taps)
    peer.close()


def test_a_card_pulled_away_mid_read_does_not_crash_the_agent(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory
) -> None:
    system.issue(CARD_A, 50_000)
    system.issue(CARD_B, 50_000)
    agent = agent_factory()
    agent.wait_ready()

    mark = agent.mark()
    pcscd.tap(CARD_A)
    assert agent.wait_tap(since=mark)["seq"] == 1

    for _ in range(3):  # pulled away the instant the agent sends GET UID
        assert pcscd.pull_away_mid_read(), "the agent never sent its GET UID command"
    # The agent has dealt with each pulled card once it has shown it as unreadable.
    since = mark
    for _ in range(3):
        since = 1 + agent.wait_index(lambda e: e.get("event") == "tap" and e.get("card") is None
                                     and e.get("reason") == "unreadable", since=since)
    assert agent.alive(), agent.log_tail()
    # An unreadable card is no tap: it gets no seq and nothing is published for it.
    for event in agent.events[mark:]:
        if event.get("event") == "tap" and event.get("card") is None:
            assert (event["accepted"], event["seq"]) == (False, None), event

    mark = agent.mark()
    pcscd.tap(CARD_B)
    shown = agent.wait_tap(since=mark, card=CARD_B)
    assert (shown["seq"], shown["accepted"]) == (2, True)
    assert agent.wait_receipt(2, since=mark)["status"] == "charged"
    assert agent.alive()


def test_the_agent_survives_a_pcscd_restart(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory
) -> None:
    system.issue(CARD_A, 50_000)
    system.issue(CARD_B, 50_000)
    agent = agent_factory()
    agent.wait_ready()
    pid = agent.pid

    mark = agent.mark()
    pcscd.tap(CARD_A)
    assert agent.wait_tap(since=mark)["seq"] == 1

    pcscd.restart()  # stopped, then started again; the agent is left running

    # The agent finds the new pcscd on its own; the first card after that is read.
    mark = agent.mark()
    deadline = time.monotonic() + 15
    shown = None
    while shown is None and time.monotonic() < deadline:
        pcscd.tap(CARD_B)
        try:
            shown = agent.wait_tap(timeout=2.0, since=mark, card=CARD_B)
        except TimeoutError:
            assert agent.alive(), agent.log_tail()
    assert shown is not None, f"no card read after pcscd restarted:\n{agent.log_tail()}"
    assert (shown["seq"], shown["accepted"]) == (2, True)
    assert agent.wait_receipt(2, since=mark)["status"] == "charged"
    assert agent.alive() and agent.pid == pid
    # And the one after it too (no stale state left from the old daemon).
    mark = agent.mark()
    pcscd.tap("04C1C2C3C4")
    assert agent.wait_tap(since=mark)["card"] == "04C1C2C3C4"


def _listed(spool: Path, card: str) -> bool | None:
    """Whether the agent's on-disk deny list holds `card` (None: no list yet)."""
    with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'state:denylist'").fetchone()
    if row is None:
        return None
    return card in DenyList.from_json(json.loads(row[0]))


def _wait_listed(spool: Path, card: str, listed: bool, timeout: float,
                 agent: AgentProcess) -> float:
    start = time.monotonic()
    while _listed(spool, card) is not listed:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{card} listed={_listed(spool, card)} on the bus after "
                                 f"{timeout}s, wanted {listed}:\n{agent.log_tail()}")
        time.sleep(0.05)
    return time.monotonic() - start


def test_a_denylisted_card_is_refused_offline_and_accepted_after_the_list_update(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory,
        tmp_path: Path) -> None:
    key_file = tmp_path / "denylist.key"
    key_file.write_text(system.transit("denylist", "key").stdout.strip() + "\n")
    system.issue(DENIED, 0)  # no money on it: the gateway puts it on the deny list
    spool = tmp_path / "agent-spool.db"
    agent = agent_factory(extra_args=["--denylist-key-file", str(key_file),
                                      "--spool", str(spool), "--retry-seconds", "1"])
    agent.wait_ready()
    _wait_listed(spool, DENIED, True, 10, agent)

    system.broker.stop()
    try:
        mark = agent.mark()
        pcscd.tap(DENIED)
        shown = agent.wait_tap(since=mark)
        assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
            (DENIED, 1, False, "denylisted")
        # The list is kept on disk: an agent restarted while offline still refuses it.
        agent.restart()
        agent.wait_ready(connected=False)
        mark = agent.mark()
        pcscd.tap(DENIED)
        shown = agent.wait_tap(since=mark)
        assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
            (DENIED, 2, False, "denylisted")
    finally:
        system.broker.start()

    # Back online: the refused taps are delivered and answered, never charged.
    assert agent.wait_receipt(1, timeout=45)["status"] == "not_charged"
    assert agent.wait_receipt(2, timeout=45)["status"] == "not_charged"

    peer = _tap_peer(system)
    mark = agent.mark()
    system.transit("cards", "topup", DENIED, "20000", "--reference", "x")
    took = _wait_listed(spool, DENIED, False, 5, agent)
    pcscd.tap(DENIED)
    shown = agent.wait_tap(since=mark, card=DENIED)
    assert (shown["seq"], shown["accepted"], shown["reason"]) == (3, True, None), \
        f"{shown} ({took:.2f}s after the top-up the list had the card removed)"
    receipt = agent.wait_receipt(3, since=mark)
    fare = regular_fare_at(_tap_of(peer, 3).ts)  # stamped by the agent's own clock
    assert (receipt["status"], receipt["fare"], receipt["balance"]) == \
        ("charged", fare, 20_000 - fare)
    peer.close()
