"""Contract section 10 from outside: a validator cannot speak for another vehicle or
another time (issue 14, point 1), the signed `rejected` receipt that answers it, and
receipts that tell a validator nothing about a card it did not charge (point 8).

Signed taps and positions come from a real MQTT client through the private Mosquitto
into `transit gateway`, on PostgreSQL and on SQLite; these tests run on the contract's
default window (7 days back, 5 minutes ahead), against the gateway's real clock.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fare_gateway.adapters.models import QuarantineRecord, TapRecord
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from tests.conftest import System
from tests.support.agent import AgentProcess
from tests.support.clients import MqttPeer, make_tap
from tests.support.fare_clock import full_fare_time
from transit.wire import Position, Receipt, Tap

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

CARD = "04A1B2C3D4E5F6"
OTHER_CARD = "04A1B2C3D4E5F7"
MIN = 60_000
DAY = 86_400_000
FIVE_MINUTES = 5 * MIN
BUS_A, BUS_B = "SBY-0101", "SBY-0202"  # the vehicles of operators OPA and OPB
DEV_A, DEV_B = f"{BUS_A}-A", f"{BUS_B}-A"


@pytest.fixture
def base_env(base_env: dict[str, str]) -> dict[str, str]:
    """The contract's window, not the wide one the fixed-date tests are given."""
    return {k: v for k, v in base_env.items() if k != "TRANSIT_TAP_MAX_AGE_DAYS"}


@pytest.fixture
def peer(system: System) -> Iterator[MqttPeer]:
    p = system.peer()
    p.subscribe(f"{system.prefix}/dev/+/receipt")
    yield p
    p.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def receipts(messages: list[tuple[str, bytes]]) -> list[Receipt]:
    return [Receipt.parse(p) for t, p in messages if t.endswith("/receipt")]


def raw_receipts(messages: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The receipts as the JSON the validator receives (to see which keys it carries)."""
    return [json.loads(p) for t, p in messages if t.endswith("/receipt")]


def wait_receipts(peer: MqttPeer, n: int) -> list[Receipt]:
    return receipts(peer.wait_for(lambda m: len(receipts(m)) >= n, timeout=30))


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return found


def publish(system: System, peer: MqttPeer, *taps: Tap) -> None:
    peer.publish_many([(system.tap_topic(t.device_id), t.encode()) for t in taps])


def quarantined(system: System) -> list[tuple[str, str | None]]:
    with session_factory(system.engine())() as s:
        return sorted((r, t) for r, t in s.execute(
            select(QuarantineRecord.reason, QuarantineRecord.tap_id)).all())


def metric(system: System, line: str) -> bool:
    status, body = system.http.get("/metrics")
    assert status == 200
    return line in body.decode()


def import_two_operators(system: System, tmp_path: Path) -> None:
    """A GTFS feed of two agencies, one route each: R-A is OPA's, R-B is OPB's."""
    members = {
        "agency.txt": "agency_id,agency_name,agency_url,agency_timezone\n"
                      "OPA,Operator A,https://a.example,Asia/Jakarta\n"
                      "OPB,Operator B,https://b.example,Asia/Jakarta\n",
        "routes.txt": "route_id,agency_id,route_short_name,route_type\n"
                      "R-A,OPA,A,3\nR-B,OPB,B,3\n",
        "stops.txt": "stop_id,stop_name,stop_lat,stop_lon\n"
                     "S1,Tunjungan,-7.2575,112.7521\nS2,Gubeng,-7.2653,112.7522\n",
    }
    feed = tmp_path / "two-operators.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in members.items():
            z.writestr(name, text)
    feed.write_bytes(buf.getvalue())
    system.transit("gtfs", "import", str(feed))


def revenue(system: System) -> dict[tuple[str, str, str], int]:
    """What the ledger credits each (operator, route, kind): fares and corrections."""
    with session_factory(system.engine())() as s:
        assert check_invariants(s) == []
        return {(op, route, kind): int(total) for op, route, kind, total in s.execute(
            select(Entry.operator_id, Entry.route_id, Entry.kind, func.sum(Entry.amount))
            .where(Entry.kind.in_(("fare", "correction")))
            .group_by(Entry.operator_id, Entry.route_id, Entry.kind)).all()}


# -- another vehicle ------------------------------------------------------------------------

def test_a_validator_cannot_move_another_buss_revenue(system: System, peer: MqttPeer,
                                                      tmp_path: Path) -> None:
    import_two_operators(system, tmp_path)
    key_a, key_b = system.add_device(DEV_A, BUS_A), system.add_device(DEV_B, BUS_B)
    system.issue(CARD, 50_000)
    system.issue(OTHER_CARD, 50_000)
    real_ts = full_fare_time(10 * MIN)  # at an hour the regular fare covers
    # The attack: A's validator, correctly signed, names bus B 60 s before the rider's
    # real tap on B, on A's route. Believed, B's tap would become a repeat of it and
    # B's fare would move to operator A by a correction.
    real = make_tap(key_b, DEV_B, 1, CARD, ts=real_ts, vehicle_id=BUS_B, route_id="R-B")
    forged = make_tap(key_a, DEV_A, 1, CARD, ts=real_ts - MIN, vehicle_id=BUS_B,
                      route_id="R-A")
    publish(system, peer, real)
    assert [(r.status, r.fare) for r in wait_receipts(peer, 1)] == [("charged", 5000)]
    publish(system, peer, forged)
    answer = wait_receipts(peer, 2)[1]
    assert (answer.tap_id, answer.status, answer.reason, answer.fare, answer.balance) == (
        forged.tap_id, "rejected", "wrong_vehicle", 0, None)
    assert answer.verify(key_a)  # signed with A's own key: A's validator can trust it

    # The other order: the forged tap first, then the real one, on another card.
    forged_first = make_tap(key_a, DEV_A, 2, OTHER_CARD, ts=real_ts - MIN,
                            vehicle_id=BUS_B, route_id="R-A")
    real_after = make_tap(key_b, DEV_B, 2, OTHER_CARD, ts=real_ts, vehicle_id=BUS_B,
                          route_id="R-B")
    publish(system, peer, forged_first)
    wait_receipts(peer, 3)
    publish(system, peer, real_after)
    got = {r.tap_id: r for r in wait_receipts(peer, 4)}
    assert (got[forged_first.tap_id].status, got[forged_first.tap_id].reason) == (
        "rejected", "wrong_vehicle")
    assert (got[real_after.tap_id].status, got[real_after.tap_id].fare,
            got[real_after.tap_id].balance) == ("charged", 5000, 45_000)

    # B's revenue stays B's: two fares on R-B, nothing to A, no correction.
    assert revenue(system) == {("OPB", "R-B", "fare"): 10_000}
    for card in (CARD, OTHER_CARD):
        status, body = system.http.get(f"/api/v1/cards/{card}", system.token("finance"))
        assert status == 200 and body["balance"] == 45_000
        status, taps = system.http.get(f"/api/v1/cards/{card}/taps", system.token("finance"))
        assert [t["device_id"] for t in taps["taps"]] == [DEV_B]  # the rejected tap is not
    assert quarantined(system) == sorted([("wrong_vehicle", forged.tap_id),
                                          ("wrong_vehicle", forged_first.tap_id)])
    assert metric(system, 'transit_quarantined_total{reason="wrong_vehicle"} 2.0')
    result = system.transit("reconcile", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_position_naming_another_vehicle_does_not_move_it(system: System,
                                                            peer: MqttPeer) -> None:
    key_a, key_b = system.add_device(DEV_A, BUS_A), system.add_device(DEV_B, BUS_B)
    ops = system.token("ops")

    def position(device: str, key: bytes, lat_e6: int, ts: int) -> tuple[str, bytes]:
        return (f"{system.prefix}/dev/{device}/pos", Position(
            device_id=device, vehicle_id=BUS_B, route_id="R-B", ts=ts, lat_e6=lat_e6,
            lon_e6=112_752_100).signed(key).encode())

    def bus_b() -> dict[str, Any] | None:
        status, body = system.http.get("/api/v1/vehicles", token=ops)
        assert status == 200
        return next((v for v in body["vehicles"] if v["vehicle_id"] == BUS_B), None)

    def outcome(name: str) -> bool:
        return metric(system, f'transit_positions_total{{outcome="{name}"}}')

    t0 = now_ms() - 30_000
    peer.publish(*position(DEV_B, key_b, -7_257_500, t0))
    first = wait_until("bus B on the map", lambda: (v := bus_b()) and v["ts"] == t0 and v)
    # A's validator, correctly signed, puts bus B 1 km away, 5 s later.
    peer.publish(*position(DEV_A, key_a, -7_248_500, t0 + 5000))
    wait_until("the refused position counted", lambda: outcome("wrong_vehicle"))
    now = bus_b()
    assert now is not None and (now["ts"], now["lat"], now["lon"]) == (
        first["ts"], first["lat"], first["lon"])  # not moved
    # B's own next position is taken.
    peer.publish(*position(DEV_B, key_b, -7_257_000, t0 + 10_000))
    wait_until("bus B's next position", lambda: (v := bus_b()) and v["ts"] == t0 + 10_000)


# -- another time ---------------------------------------------------------------------------

BEYOND_9999 = 253_402_300_800_000  # 10000-01-01T00:00Z: a date no calendar module has


def test_taps_dated_outside_the_window_are_rejected_and_their_batch_is_charged(
        system: System, peer: MqttPeer) -> None:
    system.issue(CARD, 50_000)
    system.issue(OTHER_CARD, 50_000)
    now = now_ms()
    dated = {"1970": 0, "3000": 32_503_680_000_000, "after 9999": BEYOND_9999,
             "8 days ago": now - 8 * DAY, "6 minutes ahead": now + 6 * MIN}
    bad = {what: make_tap(system.secret, system.device_id, seq, CARD, ts=ts)
           for seq, (what, ts) in enumerate(dated.items(), 10)}
    # The good taps' time is one no early fare covers, a minute apart as ever.
    good_at = full_fare_time(3 * MIN)
    good = [make_tap(system.secret, system.device_id, 1, CARD, ts=good_at),
            make_tap(system.secret, system.device_id, 2, OTHER_CARD, ts=good_at + MIN)]
    # One burst: the bad taps between the good ones, as a batch receives them.
    publish(system, peer, good[0], *bad.values(), good[1])
    got = {r.tap_id: r for r in wait_receipts(peer, len(bad) + 2)}
    assert [(got[t.tap_id].status, got[t.tap_id].fare) for t in good] == [
        ("charged", 5000), ("charged", 5000)]
    for what, t in bad.items():
        r = got[t.tap_id]
        assert (r.status, r.reason, r.fare, r.balance) == (
            "rejected", "ts_out_of_range", 0, None), what
        assert r.verify(system.secret)
    assert quarantined(system) == sorted(("ts_out_of_range", t.tap_id) for t in bad.values())
    with session_factory(system.engine())() as s:
        assert s.scalar(select(func.count()).select_from(Entry).where(
            Entry.kind == "fare")) == 2
    log = system.gateway.log_path.read_text()
    assert "processing one by one" not in log and "internal_error" not in log

    # Sent again (the receipts were lost): the same answer, nothing quarantined twice.
    publish(system, peer, *bad.values())
    again = wait_receipts(peer, 2 * len(bad) + 2)[len(bad) + 2:]
    assert sorted((r.tap_id, r.status, r.reason) for r in again) == sorted(
        (t.tap_id, "rejected", "ts_out_of_range") for t in bad.values())
    assert len(quarantined(system)) == len(bad)
    assert system.gateway.alive()


def test_a_tap_rejected_for_being_ahead_is_not_charged_once_the_clock_catches_up(
        system: System, peer: MqttPeer) -> None:
    system.issue(CARD, 50_000)
    ahead = make_tap(system.secret, system.device_id, 1, CARD,
                     ts=now_ms() + FIVE_MINUTES + 3000)
    publish(system, peer, ahead)
    (first,) = wait_receipts(peer, 1)
    assert (first.status, first.reason) == ("rejected", "ts_out_of_range")
    # The rule is about wall-clock time: wait until the tap would be within the window.
    wait_until("the tap to be within 5 minutes of now",
               lambda: now_ms() >= ahead.ts - FIVE_MINUTES + 1000, timeout=30)
    publish(system, peer, ahead)
    again = wait_receipts(peer, 2)[1]
    assert (again.status, again.reason, again.fare) == ("rejected", "ts_out_of_range", 0)
    status, body = system.http.get(f"/api/v1/cards/{CARD}", system.token("finance"))
    assert status == 200 and body["balance"] == 50_000


# -- what a receipt tells -------------------------------------------------------------------

def test_only_a_charge_tells_the_cards_balance(system: System, peer: MqttPeer) -> None:
    system.issue(CARD, 50_000)
    ts = full_fare_time(10 * MIN)  # at an hour the regular fare covers
    charged = make_tap(system.secret, system.device_id, 1, CARD, ts=ts)
    unknown = make_tap(system.secret, system.device_id, 2, "0499999999", ts=ts + MIN)
    denied = make_tap(system.secret, system.device_id, 3, CARD, ts=ts + 2 * MIN,
                      accepted=False, reason="denylisted")
    conflict = make_tap(system.secret, system.device_id, 1, CARD, ts=ts + 3 * MIN)
    denied_unknown = make_tap(system.secret, system.device_id, 4, "0499999999",
                              ts=ts + 4 * MIN, accepted=False, reason="denylisted")
    publish(system, peer, charged)
    wait_receipts(peer, 1)
    publish(system, peer, unknown, denied, conflict, charged, denied_unknown)
    answers = {(r["seq"], r["status"]): r for r in raw_receipts(
        peer.wait_for(lambda m: len(receipts(m)) >= 6, timeout=30))}
    assert answers[1, "charged"]["balance"] == 45_000
    assert answers[1, "duplicate"]["balance"] == 45_000
    for key in ((2, "unknown_card"), (3, "not_charged"), (1, "conflict")):
        assert "balance" not in answers[key] and answers[key]["fare"] == 0, answers[key]
        assert "reason" not in answers[key]
    # An accepted tap of an unknown card is told `unknown_card`, as the contract names
    # it; a denied tap costs nothing, and is told the same whether its card exists or not.
    assert {k for k in answers[2, "unknown_card"] if k not in ("seq", "sig", "status")} == \
        {k for k in answers[3, "not_charged"] if k not in ("seq", "sig", "status")}
    assert {k: v for k, v in answers[4, "not_charged"].items() if k not in ("seq", "sig")} \
        == {k: v for k, v in answers[3, "not_charged"].items() if k not in ("seq", "sig")}
    with session_factory(system.engine())() as s:
        assert s.scalar(select(TapRecord.status).where(
            TapRecord.tap_id == denied_unknown.tap_id)) == "unknown_card"


# -- the validator ---------------------------------------------------------------------------

def test_an_agent_forgets_a_tap_the_gateway_rejected(system: System, tmp_path: Path) -> None:
    """A validator started with the wrong vehicle: its taps are rejected, and it stops
    sending them instead of filling its spool."""
    secret = system.add_device(DEV_A, BUS_A)
    system.issue(CARD, 50_000)
    agent = AgentProcess(system.env, DEV_A, secret, tmp_path / "agent", vehicle_id=BUS_B)
    try:
        agent.start()
        agent.wait_log("connected")
        agent.tap(CARD)
        (receipt,) = agent.wait_receipts({1}, timeout=30)
        assert (receipt["status"], receipt["reason"], receipt["fare"], receipt["balance"]) == (
            "rejected", "wrong_vehicle", 0, None)
        wait_until("the agent's spool to be empty", lambda: agent.spool_seqs() == [])
        agent.wait_log("tap 1 rejected by the gateway (wrong_vehicle)")
    finally:
        agent.close()
        print(agent.log_tail())
    assert "Traceback" not in agent.log_tail(10**6)
    status, body = system.http.get(f"/api/v1/cards/{CARD}", system.token("finance"))
    assert status == 200 and body["balance"] == 50_000
    assert quarantined(system) == [("wrong_vehicle", f"{DEV_A}:1")]
