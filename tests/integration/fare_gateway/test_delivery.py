"""Delivery promises of contract section 2: MQTT 3.1.1 and 5 clients, taps queued while
the gateway restarts, several gateways splitting the load on a shared subscription."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from fare_gateway.adapters.models import TapRecord
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from testbed.cards import fund_cards
from testbed.gateway import Gateway
from tests.conftest import System
from tests.support.clients import MqttPeer, make_tap
from transit.wire import Receipt

CARD = "04D1D2D3D4"


def _counts(system: System) -> tuple[int, int]:
    with session_factory(system.engine())() as s:
        assert check_invariants(s) == []
        return (int(s.scalar(select(func.count()).select_from(TapRecord)) or 0),
                int(s.scalar(select(func.count()).select_from(Entry).where(
                    Entry.kind == "fare")) or 0))


def test_an_mqtt_311_validator_is_served(system: System) -> None:
    system.issue(CARD, 20_000, "student")
    peer = MqttPeer(system.broker.url, v5=False)
    peer.subscribe(system.receipt_topic())
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 1, CARD).encode())
    (topic, payload), = peer.wait_for(lambda m: len(m) >= 1)
    receipt = Receipt.parse(payload)
    assert (receipt.status, receipt.fare, receipt.balance) == ("charged", 2500, 17_500)
    peer.close()


def test_taps_queue_at_the_broker_while_the_gateway_is_down(system: System) -> None:
    system.issue(CARD, 100_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    system.gateway.stop()
    taps = [make_tap(system.secret, system.device_id, seq, CARD, ts=1764313202123 + seq * 600_000)
            for seq in range(1, 6)]
    peer.publish_many([(system.tap_topic(), t.encode()) for t in taps])
    assert _counts(system) == (0, 0)
    system.gateway.start()
    got = peer.wait_for(lambda m: len(m) >= 5)
    assert sorted(Receipt.parse(p).seq for _, p in got) == [1, 2, 3, 4, 5]
    assert _counts(system) == (5, 5)
    peer.close()


def test_a_killed_gateway_loses_nothing_and_charges_nothing_twice(system: System) -> None:
    cards = [f"04E0{i:06X}" for i in range(50)]
    fund_cards(system.env["TRANSIT_DATABASE_URL"], cards, 1_000_000)
    peer = system.peer()
    # A card's taps 150 s apart (one every 3 s, 50 cards in turn), so that none is a
    # repeat tap: every tap is a fare entry.
    taps = [make_tap(system.secret, system.device_id, seq, cards[seq % 50],
                     ts=1764313202123 + seq * 3000)
            for seq in range(1, 3001)]
    peer.publish_many([(system.tap_topic(), t.encode()) for t in taps[:1500]])
    system.gateway.stop(kill=True)  # mid-stream, whatever it had in hand
    peer.publish_many([(system.tap_topic(), t.encode()) for t in taps[1500:]])
    system.gateway.start()
    import time
    deadline = time.monotonic() + 120
    while _counts(system)[0] < 3000 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _counts(system) == (3000, 3000)
    peer.close()


def test_two_gateways_share_the_load_and_charge_each_tap_once(system: System) -> None:
    system.gateway.stop()
    group = f"g{uuid.uuid4().hex[:6]}"
    gateways = []
    for i in range(2):
        env = dict(system.env, TRANSIT_SHARE_GROUP=group,
                   TRANSIT_GATEWAY_ID=f"{system.env['TRANSIT_GATEWAY_ID']}-{i}")
        gateways.append(Gateway(env, system.gateway.log_path.with_name(f"gw{i}.log")).start())
    try:
        cards = [f"04F0{i:06X}" for i in range(40)]
        fund_cards(system.env["TRANSIT_DATABASE_URL"], cards, 1_000_000)
        peer = system.peer()
        peer.subscribe(system.receipt_topic())
        # A card's taps 160 s apart: none is a repeat tap.
        taps = [make_tap(system.secret, system.device_id, seq, cards[seq % 40],
                         ts=1764313202123 + seq * 4000)
                for seq in range(1, 2001)]
        # Every tap twice: the copies may land on either gateway, even at the same moment.
        payloads = [(system.tap_topic(), t.encode()) for t in taps]
        peer.publish_many(payloads + payloads)
        got = peer.wait_for(lambda m: len(m) >= 4000, timeout=120)
        statuses: dict[int, list[str]] = {}
        for _, p in got:
            r = Receipt.parse(p)
            statuses.setdefault(r.seq, []).append(r.status)
        assert all(sorted(v) == ["charged", "duplicate"] for v in statuses.values())
        assert len(statuses) == 2000
        assert _counts(system) == (2000, 2000)
        logs = [g.log_path.read_text() for g in gateways]
        peer.close()
    finally:
        for g in gateways:
            g.stop()
    assert all("Traceback" not in log for log in logs), logs
