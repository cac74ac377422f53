"""Faults under a steady stream of taps: nothing lost, nothing charged twice.

Each test runs its own fleet (tests/support/faults.py): a private Mosquitto with the
project's policy, `transit gateway` processes, real validator agents tapped by
passengers at a steady rate, each on a card of their own. While taps flow, one fault is
done to a real process or connection. Afterwards every tap a reader accepted must be in
the ledger exactly once, every validator must hold its receipts, the ledger's invariants
and `transit reconcile` must hold, and the test prints (and reports at the end of the
run) taps sent, charged, lost and duplicated.

The validator cut off for minutes takes `TRANSIT_FAULT_CUT_S` seconds (180 by default).

The `time.sleep` calls here are the length of a fault, or of the stream after it, with
passengers tapping throughout: they pace the scenario and wait for nothing. Every test
then waits for its outcome (`finish`: every accepted tap in the ledger and receipted).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.gateway import transit
from testbed.ports import free_port
from testbed.postgres import create_pg_database, drop_pg_database
from tests.support.faults import Account, Fleet, wait_until
from tests.support.postgres import PrivatePostgres

RATE = 5.0  # taps a second at each validator
CUT_S = float(os.environ.get("TRANSIT_FAULT_CUT_S", "180"))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    made: list[tuple[Fleet, Callable[[], None]]] = []

    def make(db: str = "shared") -> Fleet:
        cluster = None
        if db == "private":
            cluster = PrivatePostgres().start()
            url, drop = cluster.url, cluster.close
        else:
            url = create_pg_database()
            def drop() -> None:
                drop_pg_database(url)
        fleet = Fleet(url, tmp_path, cluster=cluster)
        made.append((fleet, drop))
        return fleet

    yield make
    for fleet, drop in made:
        fleet.close()
        for name, text in fleet.logs():
            print(f"--- {name}:\n{text[-4000:]}")  # shown by pytest when a test fails
        drop()
        for name, text in fleet.logs():
            assert "Traceback (most recent call last)" not in text, f"{name}:\n{text[-4000:]}"


def finish(fleet: Fleet, name: str, record_property: Callable[[str, object], None],
           *, unconfirmed_allowed: int = 0, timeout: float = 120.0) -> Account:
    """Stop the passengers, wait for the ledger to settle, report and judge."""
    fleet.stop_stream()
    account = fleet.settle_up(timeout)
    line = account.line(name)
    print(line)
    record_property("fault_summary", line)
    assert account.sent > 0
    assert account.lost == 0, line
    assert account.duplicated == 0, line
    assert account.charged == account.sent, line
    assert account.not_receipted == 0, line
    # A validator killed between writing a tap to its spool and lighting the reader's
    # LED leaves a tap that is charged but was never shown: at most one per kill.
    assert account.unconfirmed <= unconfirmed_allowed, line
    assert fleet.invariants() == []
    done = fleet.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    return account


def flowing(fleet: Fleet, n: int, timeout: float = 30.0) -> None:
    """Wait until `n` more taps have been charged, so the fault lands mid-stream."""
    start = len(fleet.ledger()[0])
    wait_until(lambda: len(fleet.ledger()[0]) >= start + n, timeout, f"{n} taps charged")


def under_way(f: Fleet, gateways: int) -> None:
    """Start `gateways` gateways and three validators tapped at RATE each, and return
    once taps are being charged."""
    f.fund(600)
    f.start_gateways(gateways)
    for _ in range(3):
        f.add_agent()
    f.stream(RATE)
    flowing(f, 40)


def test_one_of_two_gateways_killed(fleet: Callable[..., Fleet],
                                    record_property: Callable[[str, object], None]) -> None:
    f = fleet()
    under_way(f, gateways=2)
    f.gateways[0].stop(kill=True)  # kill -9
    time.sleep(12)  # the survivor carries the stream alone
    # Mosquitto keeps a dead member's share of the subscription in its session: those
    # taps wait there until it is back, which its supervisor sees to within seconds.
    waiting = f.account().lost
    print(f"taps waiting for the killed gateway's session: {waiting}")
    f.gateways[0].start()
    finish(f, "one of two gateways killed (kill -9), restarted after 12 s", record_property)


def test_one_of_two_gateways_killed_for_good(
        fleet: Callable[..., Fleet], record_property: Callable[[str, object], None]) -> None:
    f = fleet()
    under_way(f, gateways=2)
    dead = f.gateways[0]
    dead.stop(kill=True)  # kill -9, and its host is not coming back
    time.sleep(3)
    done = transit("broker", "retire-gateway", dead.env["TRANSIT_GATEWAY_ID"], env=f.env)
    assert "ended" in done.stdout
    time.sleep(10)
    # What the dead session held was dropped by the broker and re-published by the
    # validators; the survivor charged it.
    finish(f, "one of two gateways killed (kill -9) for good, its session retired",
           record_property, timeout=45)


def test_retiring_a_gateway_needs_a_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env["TRANSIT_MQTT_URL"] = f"mqtt://127.0.0.1:{free_port()}"
    done = transit("broker", "retire-gateway", "gw-1", "--timeout", "1", env=env, check=False)
    assert done.returncode == 1 and "did not answer" in done.stderr, done.stderr


def test_broker_restarted(fleet: Callable[..., Fleet],
                          record_property: Callable[[str, object], None]) -> None:
    f = fleet()
    under_way(f, gateways=1)
    f.broker.stop(kill=True)  # kill -9: whatever it held in memory is gone
    time.sleep(4)
    f.broker.start()  # same port, same persistence file
    time.sleep(10)
    finish(f, "broker killed and restarted", record_property)


def test_postgresql_restarted(fleet: Callable[..., Fleet],
                              record_property: Callable[[str, object], None]) -> None:
    f = fleet("private")
    assert f.cluster is not None
    under_way(f, gateways=1)
    f.cluster.crash()  # immediate stop: no checkpoint, crash recovery on start
    time.sleep(5)  # readers keep accepting; the gateway retries
    f.cluster.start()
    time.sleep(10)
    finish(f, "PostgreSQL crashed and restarted", record_property)


def test_validator_agent_killed_and_restarted(
        fleet: Callable[..., Fleet], record_property: Callable[[str, object], None]) -> None:
    f = fleet()
    under_way(f, gateways=1)
    victim = f.agents[0]
    for _ in range(2):
        victim.kill(signal.SIGKILL)
        time.sleep(2)  # passengers walk past a dark validator
        victim.restart()
        time.sleep(6)
    finish(f, "validator agent killed (kill -9) twice and restarted", record_property,
           unconfirmed_allowed=2)


@pytest.mark.slow
def test_validator_cut_off_for_minutes(fleet: Callable[..., Fleet],
                                       record_property: Callable[[str, object], None]) -> None:
    f = fleet()
    f.fund(int((CUT_S + 60) * 2 * RATE) + 200)
    f.start_gateways(1)
    cut_off = f.add_agent(via_link=True)
    f.add_agent()
    f.stream(RATE)
    flowing(f, 20)
    link = f.links[cut_off.device_id]
    link.cut()
    before = len(cut_off.spool_seqs())
    time.sleep(CUT_S)
    # Offline all along, the validator kept accepting and keeping taps.
    held = len(cut_off.spool_seqs())
    assert held >= before + CUT_S * RATE * 0.8, (before, held)
    link.restore()
    wait_until(lambda: not cut_off.spool_seqs(), 120, "the cut-off validator's spool drained")
    finish(f, f"validator cut off for {CUT_S:.0f} s", record_property)
