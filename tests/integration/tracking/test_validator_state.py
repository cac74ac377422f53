"""A validator's state as `/api/v1/validators` tells it (contract section 8), from
outside: a real gateway, Mosquitto, Redis and PostgreSQL, and a real agent that is
heard, drilled off the broker, brought back, stopped, and killed.

The contract's 90 s before `silent` are `TRANSIT_VALIDATOR_SILENT_S`, 3 s here. The
agent publishes a position every second, as a moving bus does, so that it stays heard
while it is on the broker.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.cards import fund_cards
from tests.conftest import System
from tests.integration.tracking.test_positions import wait_until
from tests.integration.validator_agent.test_agent_delivery import (
    FUNDS,
    assert_charged_once,
    wait_ledger,
)
from tests.support.agent import AgentProcess
from tests.support.drill import agent_in_process, standing_gps

SILENT_S = 3


@pytest.fixture
def base_env(base_env: dict[str, str]) -> dict[str, str]:
    """The `system` fixture's gateway, judging a validator silent after 3 s."""
    return dict(base_env, TRANSIT_VALIDATOR_SILENT_S=str(SILENT_S))


@pytest.fixture(autouse=True)
def _forget_the_status(system: System) -> Iterator[None]:
    """The session's broker keeps the retained status of this test's validator."""
    yield
    peer = system.peer()
    try:
        peer.publish(f"{system.prefix}/dev/{system.device_id}/status", b"", qos=1,
                     retain=True)
    finally:
        peer.close()


def validator(system: System, token: str) -> dict[str, Any]:
    status, body = system.http.get("/api/v1/validators", token=token)
    assert status == 200, body
    (row,) = [v for v in body["validators"] if v["device_id"] == system.device_id]
    return dict(row)


def in_state(system: System, token: str, state: str) -> Any:
    row = validator(system, token)
    return row if row["state"] == state else None


def online_emptied(system: System, token: str) -> Any:
    row = in_state(system, token, "online")
    return row if row and row["spool_depth"] == 0 else None


def test_online_silent_online_offline_as_a_validator_is_heard_drilled_stopped_killed(
        system: System, tmp_path: Path) -> None:
    ops = system.token("ops")
    riders = [f"04E0{i:08X}" for i in range(1, 6)]
    fund_cards(system.env["TRANSIT_DATABASE_URL"], riders, FUNDS)
    assert validator(system, ops)["state"] == "offline"  # registered, never heard from
    gps = standing_gps()
    gps.start()
    agent, shown = agent_in_process(system.env, system.device_id, system.secret,
                                    tmp_path / "spool.db", gps=gps)
    agent.start()
    try:
        for card in riders[:2]:
            agent.card_presented(card, time.monotonic())
        shown.wait_receipts({1, 2})
        heard = wait_until("online with an empty spool", lambda: online_emptied(system, ops))
        assert heard["online"] is True and heard["last_status_ms"] is not None, heard

        # The drill: a clean disconnect, no last will; its retained status says online.
        agent.go_offline(3 * SILENT_S)
        wait_until("the agent off the broker", lambda: not agent.connected, 5)
        off_at = int(time.time() * 1000)
        for card in riders[2:]:  # spooled on the bus; nobody outside knows yet
            agent.card_presented(card, time.monotonic())
        silent = wait_until("silent", lambda: in_state(system, ops, "silent"), 2 * SILENT_S)
        assert silent["online"] is False, silent
        assert silent["last_seen_ms"] < off_at + 1000, silent  # heard before the drill
        assert silent["last_seen_s"] >= SILENT_S, silent
        assert silent["spool_depth"] == 0, silent  # as it last reported, not the 3 it holds
        assert agent.spool.depth == 3

        back = wait_until("online again", lambda: in_state(system, ops, "online"),
                        3 * SILENT_S + 10)
        assert back["last_seen_ms"] > off_at + 1000, back
        shown.wait_receipts(set(range(1, 6)))
        drained = wait_until("its spool delivered, as it reports",
                           lambda: online_emptied(system, ops))
        assert drained["last_status_ms"] > off_at, drained
    finally:
        agent.stop()  # a clean stop publishes an offline status
        agent.spool.close()
        gps.stop()
    view = wait_ledger(system, system.device_id, lambda v: len(v.taps) >= 5)
    assert_charged_once(view, system.device_id, dict(enumerate(riders, 1)))
    stopped = wait_until("offline on its offline status", lambda: in_state(
        system, ops, "offline"), 5)
    assert stopped["last_seen_s"] < SILENT_S, stopped  # at once, not after 10 minutes

    # Its last will: `transit agent` killed, the broker publishes it when the link drops.
    process = AgentProcess(system.env, system.device_id, system.secret, tmp_path / "agent",
                           spool=tmp_path / "spool.db")
    process.start()
    try:
        wait_until("online again", lambda: in_state(system, ops, "online"))
        process.kill(signal.SIGKILL)
        gone = wait_until("offline on its will", lambda: in_state(system, ops, "offline"),
                        SILENT_S)  # before it could have gone silent
        assert gone["online"] is False and gone["last_status_ms"] is not None, gone
    finally:
        process.close()
