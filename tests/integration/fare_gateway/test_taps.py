"""The tap path from outside: a real MQTT client, the private Mosquitto, `transit gateway`,
the ledger on PostgreSQL and on SQLite."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from fare_gateway.adapters.models import QuarantineRecord
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from tests.conftest import System
from tests.support.clients import make_tap
from transit.wire import Receipt

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

CARD = "04A1B2C3D4E5F6"


def receipts(messages: list[tuple[str, bytes]]) -> list[Receipt]:
    return [Receipt.parse(p) for t, p in messages if t.endswith("/receipt")]


def fare_entries(system: System, tap_id: str) -> int:
    with session_factory(system.engine())() as s:
        return int(s.scalar(select(func.count()).select_from(Entry).where(
            Entry.tap_id == tap_id)) or 0)


def test_a_tap_is_charged_once_and_receipted(system: System) -> None:
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    tap = make_tap(system.secret, system.device_id, 1, CARD)
    peer.publish(system.tap_topic(), tap.encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 1))
    assert got[0].status == "charged"
    assert (got[0].fare, got[0].balance, got[0].currency) == (5000, 45_000, "IDR")
    assert got[0].verify(system.secret)

    # The same tap again, as a validator re-publishing it: a duplicate, no second charge.
    peer.publish(system.tap_topic(), tap.encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 2))
    assert (got[1].status, got[1].fare, got[1].balance) == ("duplicate", 5000, 45_000)
    assert fare_entries(system, tap.tap_id) == 1
    status, card = system.http.get(f"/api/v1/cards/{CARD}", system.token("finance"))
    assert status == 200 and card["balance"] == 45_000
    with session_factory(system.engine())() as s:
        assert check_invariants(s) == []
    peer.close()


def test_bad_messages_are_quarantined_and_the_consumer_lives_on(system: System) -> None:
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    peer.subscribe(system.receipt_topic("SBY-9999-X"))
    good = make_tap(system.secret, system.device_id, 1, CARD)
    body = good.to_dict()
    forged = dict(body, sig="0" * 64)
    wrong_type = dict(body, seq="7")
    wrong_type["sig"] = make_tap(system.secret, system.device_id, 7, CARD).sig
    unknown = make_tap(b"k" * 32, "SBY-9999-X", 1, CARD)
    bad = [
        (system.tap_topic(), json.dumps(forged).encode()),           # bad signature
        (system.tap_topic("SBY-9999-X"), unknown.encode()),          # unknown device
        (system.tap_topic(), b'{"v": 1, "device_id": '),             # malformed JSON
        (system.tap_topic(), json.dumps(wrong_type).encode()),       # wrong type
        (system.tap_topic(), b"x" * (1024 * 1024)),                  # 1 MB payload
        (system.tap_topic(), b"\xff\xfe not utf-8"),
        (system.tap_topic(), b"[1, 2, 3]"),
    ]
    for topic, payload in bad:
        peer.publish(topic, payload)
    peer.publish(system.tap_topic(), good.encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 1))
    assert [(r.seq, r.status, r.fare) for r in got] == [(1, "charged", 5000)]

    with session_factory(system.engine())() as s:
        reasons = sorted(s.scalars(select(QuarantineRecord.reason)).all())
        sizes = s.scalars(select(QuarantineRecord.size)).all()
        charged = s.scalar(select(func.count()).select_from(Entry).where(Entry.kind == "fare"))
    assert reasons == sorted(["bad_signature", "unknown_device", "malformed", "wrong_type",
                              "too_large", "malformed", "malformed"])
    assert 1024 * 1024 in sizes
    assert charged == 1
    status, metrics = system.http.get("/metrics")
    text = metrics.decode()
    assert status == 200
    assert 'transit_quarantined_total{reason="bad_signature"} 1.0' in text
    assert 'transit_quarantined_total{reason="malformed"} 3.0' in text
    assert system.gateway.alive()
    peer.close()


def test_same_tap_id_with_another_body_is_a_conflict(system: System) -> None:
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    first = make_tap(system.secret, system.device_id, 5, CARD)
    other = make_tap(system.secret, system.device_id, 5, CARD, ts=first.ts + 60_000)
    peer.publish(system.tap_topic(), first.encode())
    peer.wait_for(lambda m: len(m) >= 1)
    peer.publish(system.tap_topic(), other.encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 2))
    assert [r.status for r in got] == ["charged", "conflict"]
    assert got[1].fare == 0 and got[1].balance is None  # a conflict tells no balance
    assert fare_entries(system, first.tap_id) == 1
    with session_factory(system.engine())() as s:
        assert s.scalars(select(QuarantineRecord.reason)).all() == ["conflict"]
    peer.close()


def test_unknown_card_and_reader_denials_are_not_charged(system: System) -> None:
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 1,
                                              "0499999999").encode())
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 2, CARD,
                                              accepted=False, reason="denylisted").encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 2))
    assert {(r.seq, r.status, r.fare, r.balance) for r in got} == {
        (1, "unknown_card", 0, None), (2, "not_charged", 0, None)}
    status, taps = system.http.get(f"/api/v1/cards/{CARD}/taps", system.token("finance"))
    assert status == 200
    assert [(t["tap_id"], t["accepted"], t["fare"]) for t in taps["taps"]] == [
        (f"{system.device_id}:2", False, 0)]
    peer.close()
