"""A lost card and its replacement from outside (contract section 7), on PostgreSQL and on
SQLite: `lost` reaches the validators' deny list within 2 s; `replace` moves the whole
balance once, in one entry, and refuses what it must (a card blocked by staff alone
among it); a tap of the lost card that a validator accepted before it knew, arriving
after the move, is charged to the lost card as the ride it was, the new card keeps what
was moved; money reaching the lost card later moves with the same replacement asked
again, once; and the ledger, `transit reconcile` and the day's settlement (its
`transfer` line) all agree."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fare_gateway.fares.policy import policy_from_setting
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry, Posting
from ledger.services import check_invariants
from ledger.settlement import BusinessCalendar
from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.clients import MqttPeer, make_tap
from tests.support.riders import (
    call,
    issue,
    link,
    other_code,
    rider,
    rider_system,
)
from transit.denylist import DenyList
from transit.wire import Receipt

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

BALANCE = 30_000


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def riders(request: pytest.FixtureRequest, broker: Broker,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp(f"replace-{request.param}")
    pg = request.param == "postgresql"
    url = create_pg_database() if pg else f"sqlite:///{folder}/transit.db"
    try:
        with rider_system(url, broker, folder) as system:
            yield system
    finally:
        if pg:
            drop_pg_database(url)


class Validator:
    """The deny list as a validator holds it, from the retained messages on the broker."""

    def __init__(self, system: System) -> None:
        self.key = bytes.fromhex(system.transit("denylist", "key").stdout.strip())
        self.peer = system.peer()
        self.peer.subscribe(f"{system.prefix}/net/denylist/#")
        self.view = DenyList()
        self.seen = 0

    def denies(self, card: str, denied: bool = True, timeout: float = 5.0) -> float:
        """Seconds until the list shows `card` denied (or allowed)."""
        started = time.monotonic()
        while True:
            messages = list(self.peer.messages)
            for _topic, payload in messages[self.seen:]:
                self.view.apply(payload, self.key)
            self.seen = len(messages)
            if (card in self.view) == denied:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{card} denied={card in self.view}, wanted {denied}")
            time.sleep(0.02)


def tap(system: System, peer: MqttPeer, seq: int, card: str, ts: int, **extra: object
        ) -> Receipt:
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, seq, card,
                                              ts=ts, **extra).encode())
    for _topic, payload in peer.wait_for(lambda m: any(Receipt.parse(p).seq == seq
                                                       for _, p in m)):
        receipt = Receipt.parse(payload)
        if receipt.seq == seq:
            return receipt
    raise AssertionError("unreachable")


def test_lost_then_replaced_once_and_a_late_tap_of_the_lost_card(
        riders: System, tmp_path: Path) -> None:
    admin = riders.token("admin")
    suffix = uuid.uuid4().hex[:8].upper()
    old, new, spare, old2, taken, held = (f"04E{n}{suffix}" for n in range(6))
    codes = {card: issue(riders, admin, card, balance) for card, balance in (
        (old, BALANCE), (new, 0), (spare, 0), (old2, 10_000), (taken, 0), (held, 8_000))}
    new_code, spare_code, taken_code = codes[new], codes[spare], codes[taken]
    _, token = rider(riders)
    for card in (old, old2, held):
        assert link(riders, token, card, codes[card])[0] == 201
    _, stranger = rider(riders)
    assert link(riders, stranger, taken, taken_code)[0] == 201
    validator = Validator(riders)
    validator.denies(new)  # nothing on it yet: refused at the reader
    validator.denies(old, denied=False)

    def replace(card: str, new_card: str, code: str) -> tuple[int, object]:
        return call(riders, "POST", f"/api/v1/rider/cards/{card}/replace",
                    {"new_card": new_card, "check_code": code}, token)

    status, body = replace(old, new, new_code)
    assert (status, body["error"]["code"]) == (409, "not_blocked"), body  # type: ignore[index]
    # Blocked by staff (a fraud hold), not reported lost: its rider cannot drain it, and
    # reporting it lost now changes nothing of that.
    assert call(riders, "POST", f"/api/v1/cards/{held}/block", {}, admin)[0] == 200
    assert call(riders, "POST", f"/api/v1/rider/cards/{held}/lost", {}, token)[0] == 200
    status, body = replace(held, spare, spare_code)
    assert (status, body["error"]["code"]) == (409, "not_reported_lost"), body  # type: ignore[index]
    # Reported lost, then found and unblocked: a later block by staff alone does not let
    # the old report stand.
    assert call(riders, "POST", f"/api/v1/cards/{held}/unblock", {}, admin)[0] == 200
    assert call(riders, "POST", f"/api/v1/rider/cards/{held}/lost", {}, token)[0] == 200
    assert call(riders, "POST", f"/api/v1/cards/{held}/unblock", {}, admin)[0] == 200
    assert call(riders, "POST", f"/api/v1/cards/{held}/block", {}, admin)[0] == 200
    status, body = replace(held, spare, spare_code)
    assert (status, body["error"]["code"]) == (409, "not_reported_lost"), body  # type: ignore[index]
    started = time.monotonic()
    status, body = call(riders, "POST", f"/api/v1/rider/cards/{old}/lost", {}, token)
    assert status == 200 and (body["card"], body["status"]) == (old, "blocked"), body
    validator.denies(old)
    took = time.monotonic() - started  # from the rider's request to the validator's list
    print(f"lost card on the deny list after {took:.3f} s")
    assert took < 2.0

    assert replace(old, new, other_code(new_code))[0] == 403
    moved = {"card": new, "balance": BALANCE, "moved": BALANCE, "currency": "IDR",
             "replaced": old}
    assert replace(old, new, new_code) == (201, moved)
    replaced_ms = int(time.time() * 1000)
    assert replace(old, new, new_code) == (200, moved)  # nothing moves twice
    status, body = replace(old, spare, spare_code)
    assert (status, body["error"]["code"]) == (409, "already_replaced"), body  # type: ignore[index]
    assert call(riders, "POST", f"/api/v1/rider/cards/{old2}/lost", {}, token)[0] == 200
    status, body = replace(old2, taken, taken_code)
    assert (status, body["error"]["code"]) == (409, "card_linked"), body  # type: ignore[index]
    validator.denies(new, denied=False)  # its balance covers a fare now

    # A bus that was offline sends a tap its validator accepted before the block: it is
    # charged to the lost card, as the ride it was; what was moved stays moved.
    peer = riders.peer()
    peer.subscribe(riders.receipt_topic())
    late = tap(riders, peer, 1, old, replaced_ms - 10 * 60_000)
    assert late.status == "charged" and late.fare in (2000, 5000), late
    assert late.balance == -late.fare
    # A validator that knows the list refuses the card: recorded, never charged.
    refused = tap(riders, peer, 2, old, replaced_ms + 1000, accepted=False,
                  reason="denylisted")
    assert (refused.status, refused.fare) == ("not_charged", 0), refused
    peer.close()
    validator.peer.close()
    cards = {c["card"]: c for c in call(riders, "GET", "/api/v1/rider/cards",
                                        token=token)[1]["cards"]}
    assert (cards[old]["balance"], cards[old]["replaced_by"]) == (-late.fare, new), cards
    assert (cards[new]["balance"], cards[new]["status"]) == (BALANCE, "active"), cards
    assert replace(old, new, new_code) == (200, moved)  # below zero: nothing to move

    # Money reaching the lost card after its replacement (a top-up sent by reference;
    # a late exit's correction or a refund alike): the same replacement again moves it,
    # in one more entry, and once only.
    rest = 7_000
    assert call(riders, "POST", f"/api/v1/cards/{old}/topups",
                {"amount": late.fare + rest, "reference": f"late-{old}"}, admin)[0] == 201
    swept = {**moved, "balance": BALANCE + rest, "moved": BALANCE + rest}
    assert replace(old, new, new_code) == (200, swept)
    assert replace(old, new, new_code) == (200, swept)  # nothing new: nothing moves
    cards = {c["card"]: c for c in call(riders, "GET", "/api/v1/rider/cards",
                                        token=token)[1]["cards"]}
    assert (cards[old]["balance"], cards[new]["balance"]) == (0, BALANCE + rest), cards

    engine = riders.engine()
    try:
        with session_factory(engine)() as s:
            assert check_invariants(s) == []
            assert s.scalar(select(func.sum(Posting.amount))) == 0  # no rupiah made or lost
            assert s.execute(select(Entry.kind, Entry.amount, Entry.reference)
                             .where(Entry.card == old, Entry.kind == "transfer")
                             .order_by(Entry.id)).all() == [
                ("transfer", BALANCE, new), ("transfer", rest, new)]
    finally:
        engine.dispose()
    assert "reconciled: no mismatch" in riders.transit("reconcile").stdout
    policy = policy_from_setting("")
    today = BusinessCalendar(policy.timezone, policy.service_day_start_min).day_of(
        replaced_ms).isoformat()
    riders.transit("settle", today, "--out", str(tmp_path), "--quiet")
    manifest = json.loads((tmp_path / f"settlement-{today}.json").read_text())
    assert manifest["totals"]["transfer"] == BALANCE + rest, manifest
    lines = list(csv.DictReader(io.StringIO(
        (tmp_path / f"settlement-{today}.csv").read_text())))
    assert [(r["count"], r["amount"], r["operator_id"], r["route_id"]) for r in lines
            if r["line_type"] == "transfer"] == [("2", str(BALANCE + rest), "", "")], lines

