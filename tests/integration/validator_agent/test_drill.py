"""The tunnel drill: a validator taken off the broker the way `transit agent` does on
SIGUSR1 (`Agent.go_offline`) comes back by itself when the time is up, and delivers
every tap its spool holds, those from before and those made while it was off; a link
that drops without being asked to is made again by paho's own loop.

A requested disconnect ends paho's network loop; an agent that only asked paho to
reconnect afterwards had nothing to read the broker's answer, and stayed off for good.
Real Mosquitto, real gateway, the agent in this process for a drill of seconds.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from testbed.cards import fund_cards
from tests.conftest import System
from tests.integration.validator_agent.test_agent_delivery import (
    FUNDS,
    assert_charged_once,
    wait_ledger,
)
from tests.support.drill import agent_in_process
from tests.support.faults import wait_until


def test_a_drilled_validator_comes_back_and_delivers_its_whole_spool(
        system: System, tmp_path: Path) -> None:
    riders = [f"04D0{i:08X}" for i in range(1, 10)]
    fund_cards(system.env["TRANSIT_DATABASE_URL"], riders, FUNDS)
    agent, shown = agent_in_process(system.env, system.device_id, system.secret,
                                    tmp_path / "spool.db")
    agent.start()
    try:
        wait_until(lambda: agent.connected, 20, "the agent connected")
        # No gateway for a while: the first taps are published and get no receipt.
        system.gateway.stop()
        for card in riders[:3]:
            assert agent.card_presented(card, time.monotonic()).accepted
        agent.go_offline(3)
        wait_until(lambda: not agent.connected, 5, "the agent off the broker")
        for card in riders[3:6]:  # made while off: spooled, never published yet
            assert agent.card_presented(card, time.monotonic()).accepted
        assert agent.spool.depth == 6
        system.gateway.start()  # its receipts of the first taps wait at the broker

        receipts = shown.wait_receipts(set(range(1, 7)), timeout=30)
        assert all(r.status in ("charged", "duplicate") for r in receipts.values()), receipts
        assert agent.connected
        wait_until(lambda: agent.spool.depth == 0, 5, "the spool empty")

        # Once more: the drill can be run again and again on a running agent.
        agent.go_offline(2)
        wait_until(lambda: not agent.connected, 5, "the agent off the broker again")
        for card in riders[6:8]:
            assert agent.card_presented(card, time.monotonic()).accepted
        shown.wait_receipts({7, 8}, timeout=20)
        wait_until(lambda: agent.spool.depth == 0, 5, "the spool empty again")

        # A link that drops under it (no drill, nothing asked): paho makes it again.
        sock = agent.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        wait_until(lambda: not agent.connected, 5, "the agent off the dropped link")
        assert agent.card_presented(riders[8], time.monotonic()).accepted
        shown.wait_receipts({9}, timeout=20)
        assert agent.connected
    finally:
        agent.stop()
        agent.spool.close()

    view = wait_ledger(system, system.device_id, lambda v: len(v.taps) >= 9)
    assert_charged_once(view, system.device_id, dict(enumerate(riders, 1)))
    assert {seq: r.fare for seq, r in shown.receipts.items()} == {
        seq: view.fares[f"{system.device_id}:{seq}"][0] for seq in range(1, 10)}
