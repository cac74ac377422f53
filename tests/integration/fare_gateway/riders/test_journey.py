"""A rider's whole journey from outside (issue 15), on PostgreSQL and on SQLite: a real
gateway, Mosquitto and a real validator agent.

An admin issues two cards and tops one up; the rider signs up, logs in and links it; two
rides are tapped over MQTT (a full fare, then a transfer on another bus); the statement
shows them with exact amounts, running balances and the engine's reasons in Indonesian
and English. The rider reports the card lost: the bus's validator refuses it, and the
refused tap shows on the statement with its reason. The card is replaced (its balance
moved once, a second call moves nothing), one dispute is refunded and another rejected;
the refund reaches the card the rider holds now, the day's settlement carries the
`refund` and `transfer` lines, and `transit reconcile` finds nothing wrong.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from fare_gateway.fares.policy import policy_from_setting
from ledger.adapters.db import session_factory
from ledger.adapters.models import Posting
from ledger.services import check_invariants
from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.agent import AgentProcess, listed, tap_at_reader, wait_kept
from tests.support.clients import make_tap
from tests.support.riders import FLAT_FARES, call, issue, link, rider, rider_system
from transit.wire import Receipt

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

LOST, NEW = "04C0FFEE000001", "04C0FFEE000002"
BUS_2, DEVICE_2 = "SBY-0077", "SBY-0077-A"
BUS_3, DEVICE_3 = "SBY-0099", "SBY-0099-A"  # the bus whose validator meets the lost card


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def journey(request: pytest.FixtureRequest, broker: Broker,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, Path]]:
    folder = tmp_path_factory.mktemp(f"journey-{request.param}")
    fares = folder / "fares.toml"
    fares.write_text(FLAT_FARES)
    pg = request.param == "postgresql"
    url = create_pg_database() if pg else f"sqlite:///{folder}/transit.db"
    try:
        with rider_system(url, broker, folder, TRANSIT_FARES=str(fares)) as system:
            yield system, folder
    finally:
        if pg:
            drop_pg_database(url)


def ok(answer: tuple[int, Any], status: int = 200) -> Any:
    assert answer[0] == status, answer
    return answer[1]


def ride(system: System, device: str, secret: bytes, seq: int, vehicle: str) -> Receipt:
    """A tap of the lost-to-be card over MQTT, made now, and its receipt."""
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic(device))
        peer.publish(system.tap_topic(device), make_tap(
            secret, device, seq, LOST, ts=int(time.time() * 1000), vehicle_id=vehicle).encode())
        (_topic, payload), = peer.wait_for(lambda m: len(m) >= 1)
        return Receipt.parse(payload)
    finally:
        peer.close()


def statement(system: System, token: str, card: str, lang: str) -> dict[str, Any]:
    status, body = system.http.request("GET", f"/api/v1/rider/cards/{card}/statement",
                                       token=token, headers={"Accept-Language": lang})
    assert status == 200, body
    return dict(body)


def test_a_rider_from_sign_up_to_a_refund_on_the_replacement_card(
        journey: tuple[System, Path]) -> None:
    system, folder = journey
    admin, finance, ops = (system.token(r) for r in ("admin", "finance", "ops"))
    lost_code = issue(system, admin, LOST, 50_000)
    new_code = issue(system, admin, NEW)
    _email, token = rider(system)
    assert ok(link(system, token, LOST, lost_code), 201)["balance"] == 50_000

    # Two rides: the full fare, then a transfer on another bus (no more than paid).
    secret_2 = system.add_device(DEVICE_2, BUS_2)
    first = ride(system, system.device_id, system.secret, 1, "SBY-0042")
    second = ride(system, DEVICE_2, secret_2, 1, BUS_2)
    assert (first.status, first.fare, first.balance) == ("charged", 5000, 45_000)
    assert (second.status, second.fare, second.balance) == ("charged", 0, 45_000)

    id_items = statement(system, token, LOST, "id")["items"]
    en = statement(system, token, LOST, "en")
    assert [(i["type"], i["amount"], i["balance_after"], i["tap_id"]) for i in en["items"]] == [
        ("topup", 50_000, 50_000, None),
        ("tap", -5000, 45_000, f"{system.device_id}:1"),
        ("tap", 0, 45_000, f"{DEVICE_2}:1")]
    assert (en["opening_balance"], en["closing_balance"]) == (0, 45_000)
    assert "New journey" in en["items"][1]["explanation"], en["items"][1]
    assert "Free transfer" in en["items"][2]["explanation"], en["items"][2]
    assert "Perjalanan baru" in id_items[1]["explanation"], id_items[1]
    assert "Transfer gratis" in id_items[2]["explanation"], id_items[2]

    # Lost: the bus's validator refuses the card from its deny list, and says why.
    secret_3 = system.add_device(DEVICE_3, BUS_3)
    key_file = folder / "denylist.pub"
    key_file.write_text(system.transit("denylist", "key").stdout.strip() + "\n")
    agent = AgentProcess(system.env, DEVICE_3, secret_3, folder / "bus", vehicle_id=BUS_3,
                         extra_args=("--denylist-key-file", str(key_file))).start()
    try:
        wait_kept(agent, "arrived", lambda k: k["version"] >= 0)
        blocked = ok(call(system, "POST", f"/api/v1/rider/cards/{LOST}/lost", None, token))
        assert (blocked["card"], blocked["status"]) == (LOST, "blocked"), blocked
        wait_kept(agent, f"listed {LOST}", lambda k: listed(k, LOST), timeout=2.0)
        decision = tap_at_reader(agent, LOST)
        assert (decision["accepted"], decision["reason"]) == (False, "denylisted"), decision
        agent.wait_receipts({decision["seq"]})
    finally:
        agent.close()
    denied = statement(system, token, LOST, "en")["items"][-1]
    assert (denied["type"], denied["amount"], denied["reason"], denied["balance_after"]) == (
        "denied", 0, "denylisted", 45_000), denied
    assert "deny list" in denied["explanation"], denied

    # Replaced: the whole balance moves once; asked again, nothing moves.
    body = {"new_card": NEW, "check_code": new_code}
    path = f"/api/v1/rider/cards/{LOST}/replace"
    first_answer = ok(call(system, "POST", path, body, token), 201)
    assert (first_answer["card"], first_answer["balance"], first_answer["moved"]) == (
        NEW, 45_000, 45_000), first_answer
    assert ok(call(system, "POST", path, body, token)) == first_answer  # nothing moved again
    cards = {c["card"]: c["balance"] for c in ok(call(system, "GET", "/api/v1/rider/cards",
                                                      None, token))["cards"]}
    assert cards == {LOST: 0, NEW: 45_000}, cards

    # Two disputes: the full fare refunded in part by finance, the transfer rejected by ops.
    fare_dispute = ok(call(system, "POST", "/api/v1/rider/disputes", {
        "card": LOST, "tap_id": f"{system.device_id}:1", "category": "wrong_fare",
        "message": "Saya hanya naik dua halte."}, token), 201)
    other = ok(call(system, "POST", "/api/v1/rider/disputes", {
        "card": LOST, "tap_id": f"{DEVICE_2}:1", "category": "other",
        "message": "Apakah ini benar?"}, token), 201)
    answer = f"/api/v1/disputes/{fare_dispute['dispute_id']}/answer"
    refund = {"decision": "refund", "amount": 2000, "message": "Maaf, kami kembalikan."}
    assert call(system, "POST", answer, refund, ops)[0] == 403  # ops may only reject
    assert ok(call(system, "POST", answer, refund, finance))["status"] == "answered"
    assert call(system, "POST", answer, refund, finance)[0] == 409  # answered once
    rejected = ok(call(system, "POST", f"/api/v1/disputes/{other['dispute_id']}/answer", {
        "decision": "reject", "message": "Transfer gratis, tidak ada tagihan."}, ops))
    assert (rejected["decision"], rejected["amount"] or 0) == ("reject", 0), rejected
    mine = {d["dispute_id"]: d for d in ok(call(system, "GET", "/api/v1/rider/disputes",
                                                None, token))["disputes"]}
    assert mine[fare_dispute["dispute_id"]]["amount"] == 2000
    assert mine[other["dispute_id"]]["answer"] == "Transfer gratis, tidak ada tagihan."

    # The refund reaches the card the rider holds now, and the statements tell it all.
    new_items = statement(system, token, NEW, "en")["items"]
    assert [(i["type"], i["amount"], i["balance_after"]) for i in new_items] == [
        ("transfer_in", 45_000, 45_000), ("refund", 2000, 47_000)], new_items
    assert new_items[1]["tap_id"] == f"{system.device_id}:1", new_items[1]  # what it refunds
    old = statement(system, token, LOST, "en")
    assert [i["type"] for i in old["items"]] == [
        "topup", "tap", "tap", "denied", "transfer_out"]
    assert (old["items"][-1]["amount"], old["closing_balance"]) == (-45_000, 0)

    # Finance: the day's settlement has the refund and the transfer; reconcile is clean.
    policy = policy_from_setting(str(folder / "fares.toml"))
    day = policy.service_date(int(time.time() * 1000)).isoformat()
    status, lines = system.http.get(f"/api/v1/settlements/{day}/lines.csv", finance)
    assert status == 200, lines
    rows = list(csv.DictReader(io.StringIO(lines.decode())))
    by_type = {r["line_type"]: r for r in rows if r["line_type"] in ("refund", "transfer")}
    assert (by_type["refund"]["amount"], by_type["refund"]["route_id"]) == ("-2000", "R1")
    assert (by_type["transfer"]["amount"], by_type["transfer"]["route_id"]) == ("45000", "")
    reconciled = system.transit("reconcile", check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    engine = system.engine()
    try:
        with session_factory(engine)() as session:
            assert check_invariants(session) == []
            assert session.scalar(select(func.sum(Posting.amount))) == 0
    finally:
        engine.dispose()
