"""A device's vehicles over time (review of issue 14, finding 4): `transit devices move`
takes effect at the moment of the command, and a tap is judged by the vehicle its
device rode on at the tap's `ts`. Before, a move turned the real fares still in an
offline bus's spool, made on the old vehicle, into final `rejected` receipts.

From outside: a real `transit agent` spools taps while it has no broker, the device is
moved, and the agent, back on the network, delivers them to `transit gateway`, on
PostgreSQL and on SQLite. The upgrade of a database that already holds devices runs
the migration on real rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from fare_gateway.adapters.models import DeviceVehicle, QuarantineRecord
from fare_gateway.devices import Binding, DeviceDirectory, move_device
from fare_gateway.schema import revisions, upgrade
from ledger.adapters.db import make_engine, session_factory
from testbed.ports import free_port
from tests.conftest import System
from tests.support.agent import AgentProcess
from tests.support.clients import MqttPeer, make_tap
from tests.support.fare_clock import regular_fare_at
from transit.wire import Receipt

CARDS = ["04A1B2C3D4E5F6", "04A1B2C3D4E5F7", "04A1B2C3D4E5F8"]
OLD, NEW = "SBY-0042", "SBY-0099"  # the system's device rides on OLD when registered


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def peer(system: System) -> Iterator[MqttPeer]:
    p = system.peer()
    p.subscribe(system.receipt_topic())
    yield p
    p.close()


def wait_answers(peer: MqttPeer, seqs: set[int]) -> dict[int, Receipt]:
    """The receipts the peer heard for these taps, once it has one for each."""
    def answers(messages: list[tuple[str, bytes]]) -> dict[int, Receipt]:
        return {r.seq: r for r in (Receipt.parse(p) for _t, p in messages) if r.seq in seqs}

    return answers(peer.wait_for(lambda m: set(answers(m)) == seqs, timeout=30))


def quarantined(system: System) -> list[tuple[str, str | None]]:
    with session_factory(system.engine())() as s:
        return sorted((r, t) for r, t in s.execute(
            select(QuarantineRecord.reason, QuarantineRecord.tap_id)).all())


def balance(system: System, card: str) -> int:
    status, body = system.http.get(f"/api/v1/cards/{card}", system.token("finance"))
    assert status == 200
    return int(body["balance"])


def taps_of(system: System, card: str) -> list[dict[str, Any]]:
    status, body = system.http.get(f"/api/v1/cards/{card}/taps", system.token("finance"))
    assert status == 200
    return list(body["taps"])


def only_tap_ts(system: System, card: str) -> int:
    (tap,) = taps_of(system, card)
    return int(tap["ts"])


def test_taps_spooled_on_the_old_vehicle_are_charged_after_a_move(
        system: System, peer: MqttPeer, tmp_path: Path) -> None:
    for card in CARDS:
        system.issue(card, 50_000)
    # The bus is offline: its agent has no broker to reach, and spools what it takes.
    offline = dict(system.env, TRANSIT_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    on_old = AgentProcess(offline, system.device_id, system.secret, tmp_path / "agent",
                          vehicle_id=OLD)
    on_new = AgentProcess(system.env, system.device_id, system.secret, tmp_path / "agent",
                          spool=on_old.spool, vehicle_id=NEW)
    try:
        on_old.start()
        for card in CARDS[:2]:
            on_old.tap(card)
        assert [(t["seq"], t["accepted"]) for t in on_old.wait_taps(2)] == [(1, True),
                                                                          (2, True)]
        assert on_old.stop() == 0
        assert on_old.spool_seqs() == [1, 2]  # still waiting for their receipts

        # The validator goes to the other bus; the command says from when.
        before_move = now_ms()
        said = system.transit("devices", "move", system.device_id, "--vehicle", NEW).stdout
        after_move = now_ms()
        assert said.startswith(f"device {system.device_id} moved from vehicle {OLD} to "
                               f"{NEW} as of "), said
        listed = system.transit("devices", "list").stdout.splitlines()[1].split()
        assert listed[:3] == [system.device_id, NEW, "active"]

        # Back on the network, on the new bus: the taps made on the old one are charged,
        # and so is a tap made on the new one.
        on_new.start()
        on_new.wait_receipts({1, 2}, timeout=45)
        on_new.tap(CARDS[2])
        got = {r["seq"]: r for r in on_new.wait_receipts({1, 2, 3}, timeout=45)}
        # The agent stamps its taps with its own clock: each is due the fare of its time.
        due = [regular_fare_at(only_tap_ts(system, card)) for card in CARDS]
        assert [(got[s]["status"], got[s]["fare"]) for s in (1, 2, 3)] == [
            ("charged", fare) for fare in due], got
        assert on_new.spool_seqs() == []
    finally:
        on_old.close()
        on_new.close()
        print(on_new.log_tail())
    assert "Traceback" not in on_new.log_tail(10**6) + on_old.log_tail(10**6)

    # Signed by the device but naming the old bus after the move, or the new bus before
    # it: not this device's to speak for.
    old_after = make_tap(system.secret, system.device_id, 10, CARDS[0], ts=after_move + 1,
                         vehicle_id=OLD)
    new_before = make_tap(system.secret, system.device_id, 11, CARDS[1],
                          ts=before_move - 1, vehicle_id=NEW)
    for tap in (old_after, new_before):
        peer.publish(system.tap_topic(), tap.encode())
    answers = wait_answers(peer, {10, 11})
    assert {s: (r.status, r.reason, r.fare) for s, r in answers.items()} == {
        10: ("rejected", "wrong_vehicle", 0), 11: ("rejected", "wrong_vehicle", 0)}
    assert quarantined(system) == [("wrong_vehicle", old_after.tap_id),
                                   ("wrong_vehicle", new_before.tap_id)]
    assert [balance(system, card) for card in CARDS] == [50_000 - fare for fare in due]
    assert [(t["vehicle_id"], t["fare"]) for t in taps_of(system, CARDS[0])] == [
        (OLD, due[0])]
    result = system.transit("reconcile", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upgrade_gives_each_device_its_vehicle_from_its_registration(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0008")  # the schema before the history: devices, one vehicle each
    with engine.begin() as conn:
        for device, vehicle, status, created in (("BUS-1-A", "BUS-1", "active", 1_000),
                                                 ("BUS-2-A", "BUS-2", "revoked", 2_000)):
            conn.execute(text(
                "INSERT INTO devices (device_id, vehicle_id, secret_hex, status, created_ms, "
                "key_created_ms, change_seq) VALUES (:d, :v, :s, :st, :c, :c, 0)"),
                {"d": device, "v": vehicle, "s": "ab" * 32, "st": status, "c": created})
    assert upgrade(engine) == revisions()[0]  # the newest, through 0009
    sessions = session_factory(engine)
    with sessions() as s:
        assert sorted(s.execute(select(DeviceVehicle.device_id, DeviceVehicle.from_ms,
                                       DeviceVehicle.vehicle_id)).all()) == [
            ("BUS-1-A", 1_000, "BUS-1"), ("BUS-2-A", 2_000, "BUS-2")]

    # The upgraded device moves like one registered since; the directory reads it, with
    # its history, in one query.
    with sessions.begin() as s:
        moved = move_device(s, "BUS-1-A", "BUS-7")
    assert moved is not None and moved[0] == "BUS-1"
    reads: list[str] = []

    def note(_conn: Any, _cursor: Any, sql: str, *_a: Any) -> None:
        if sql.startswith("SELECT"):  # not SQLite's BEGIN IMMEDIATE
            reads.append(sql)

    event.listen(engine, "before_cursor_execute", note)
    device = DeviceDirectory(sessions, key=None).get("BUS-1-A")
    assert len(reads) == 1
    assert device is not None and device.vehicle_id == "BUS-7"
    assert device.history == (Binding(1_000, "BUS-1"), Binding(moved[1], "BUS-7"))
    assert [device.vehicle_at(ts) for ts in (999, moved[1] - 1, moved[1])] == [
        "BUS-1", "BUS-1", "BUS-7"]
    engine.dispose()
