"""A burst of 20,000 signed taps published at once: every one charged exactly once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from fare_gateway.adapters.models import TapRecord
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from testbed.cards import fund_cards
from tests.conftest import System
from tests.support.clients import make_tap

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

TAPS = 20_000
CARDS = 400


def test_a_burst_of_20000_taps_is_charged_completely(system: System) -> None:
    sessions = session_factory(system.engine())
    cards = [f"04B0{i:08X}" for i in range(CARDS)]
    fund_cards(system.env["TRANSIT_DATABASE_URL"], cards, 10_000_000)

    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    # One service day; a card's taps 121 s apart, so none is a repeat and every tap is
    # an entry of its own (transfers and the daily cap make most of them free).
    payloads = [(system.tap_topic(), make_tap(system.secret, system.device_id, seq,
                                              cards[seq % CARDS],
                                              ts=1764313202123 + (seq // CARDS) * 121_000
                                              ).encode())
                for seq in range(1, TAPS + 1)]
    started = time.monotonic()
    peer.publish_many(payloads)
    published = time.monotonic()
    peer.wait_for(lambda m: len(m) >= TAPS, timeout=300)
    done = time.monotonic()
    print(f"published {TAPS} in {published - started:.1f}s; all receipted after "
          f"{done - started:.1f}s ({TAPS / (done - started):.0f} taps/s)")

    with sessions() as s:
        taps = s.scalar(select(func.count()).select_from(TapRecord))
        fares = s.scalar(select(func.count(func.distinct(Entry.tap_id))).where(
            Entry.kind == "fare"))
        entries = s.scalar(select(func.count()).select_from(Entry).where(Entry.kind == "fare"))
        assert check_invariants(s) == []
    assert (taps, fares, entries) == (TAPS, TAPS, TAPS)
    # Each card pays exactly the day's price: 10,000 (the regular daily cap).
    with sessions() as s:
        from ledger.adapters.models import Card
        balances = set(s.scalars(select(Card.balance).where(Card.card.in_(cards))).all())
    assert balances == {10_000_000 - 10_000}
    statuses = {}
    from transit.wire import Receipt
    for _, payload in peer.messages:
        r = Receipt.parse(payload)
        statuses[r.seq] = r.status
    assert len(statuses) == TAPS and set(statuses.values()) == {"charged"}
    peer.close()
