"""Card authenticity through the real PC/SC stack (issue 8, point 5):

virtual DESFire-style card -> vpcd -> pcscd -> pyscard -> `transit agent
--card-profile secure` (EV1 AES three-pass authentication with a key diversified from
the master key in its own key-store file) -> Mosquitto -> `transit gateway`.

A genuine secure card is accepted and its token read; its clone (the same UID, no key)
and a plain UID card are refused at the reader as `not_authentic`, and the refusals are
published as taps with accepted false.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from hardware_sim.desfire import clone_card, secure_card
from hardware_sim.vpcd import VirtualCard, serve
from testbed.pcsc import TAP_HOLD_S, PrivatePcscd, SystemPcscd
from tests.conftest import System
from tests.integration.validator_agent.conftest import AgentFactory
from tests.support.clients import MqttPeer
from transit.wire import Tap

MASTER = bytes.fromhex("8F3A5C1E9B7D20461A2B3C4D5E6F7081")
GENUINE = "04C0FFEE5EC0DE"
PLAIN = "04B1B2C3D4E5F7"


def _tap(pcscd: PrivatePcscd | SystemPcscd, card: VirtualCard) -> None:
    """pcscd.tap for a card of our own (spaced from other taps as pcscd needs)."""
    with pcscd._tap_lock:
        pcscd._spaced()
        sock = socket.create_connection(("127.0.0.1", pcscd.vpcd_port), timeout=5)
        try:
            serve(sock, card, until=time.monotonic() + TAP_HOLD_S)
        finally:
            sock.close()
            pcscd._last_tap_end = time.monotonic()


def _key_file(tmp_path: Path) -> str:
    path = tmp_path / "card-master.hex"
    path.write_text(MASTER.hex() + "\n")
    path.chmod(0o600)
    return str(path)


def test_genuine_secure_card_accepted_clone_and_plain_card_refused(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory,
        tmp_path: Path) -> None:
    system.issue(GENUINE, 50_000)
    system.issue(PLAIN, 50_000)
    peer: MqttPeer = system.peer()
    peer.subscribe(system.tap_topic())
    agent = agent_factory(extra_args=["--card-profile", "secure",
                                      "--master-key-file", _key_file(tmp_path)])
    agent.wait_ready()

    mark = agent.mark()
    genuine = secure_card(GENUINE, MASTER)
    _tap(pcscd, genuine)
    shown = agent.wait_tap(since=mark)
    assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
        (GENUINE, 1, True, None), shown
    assert genuine.extra.authenticated  # type: ignore[union-attr]
    agent.wait_log(f"card {GENUINE} authenticated; token {GENUINE}", timeout=5)
    assert agent.wait_receipt(1, since=mark)["status"] == "charged"

    mark = agent.mark()
    clone = clone_card(GENUINE)
    _tap(pcscd, clone)
    shown = agent.wait_tap(since=mark)
    assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
        (GENUINE, 2, False, "not_authentic"), shown
    assert clone.extra.failed_authentications == 1  # type: ignore[union-attr]
    assert agent.wait_receipt(2, since=mark)["status"] == "not_charged"

    mark = agent.mark()
    _tap(pcscd, VirtualCard(PLAIN))
    shown = agent.wait_tap(since=mark)
    assert (shown["card"], shown["seq"], shown["accepted"], shown["reason"]) == \
        (PLAIN, 3, False, "not_authentic"), shown

    got = peer.wait_for(lambda m: sum(t.endswith("/tap") for t, _ in m) >= 3, 15)
    taps = [Tap.parse(p) for t, p in got if t.endswith("/tap")]
    assert [(t.seq, t.card, t.accepted, t.reason) for t in taps[:3]] == [
        (1, GENUINE, True, None), (2, GENUINE, False, "not_authentic"),
        (3, PLAIN, False, "not_authentic")]
    assert all(t.verify(system.secret) for t in taps)
    assert MASTER.hex() not in agent.log_text().lower()
    assert agent.alive()
    peer.close()


def test_profile_any_accepts_plain_cards_but_still_refuses_clones(
        system: System, pcscd: PrivatePcscd | SystemPcscd, agent_factory: AgentFactory,
        tmp_path: Path) -> None:
    agent = agent_factory(extra_args=["--card-profile", "any",
                                      "--master-key-file", _key_file(tmp_path)])
    agent.wait_ready(connected=False)

    mark = agent.mark()
    _tap(pcscd, VirtualCard(PLAIN))
    assert agent.wait_tap(since=mark)["accepted"] is True

    mark = agent.mark()
    _tap(pcscd, clone_card(GENUINE))
    shown = agent.wait_tap(since=mark)
    assert (shown["card"], shown["accepted"], shown["reason"]) == \
        (GENUINE, False, "not_authentic")

    mark = agent.mark()
    _tap(pcscd, secure_card(GENUINE, MASTER))
    assert agent.wait_tap(since=mark)["accepted"] is True
