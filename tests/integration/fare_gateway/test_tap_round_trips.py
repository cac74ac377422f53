"""What a batch of taps costs PostgreSQL in round trips, so that the figure cannot grow
unnoticed (docs/benchmarks.md: twelve a batch; ten before the weekly and monthly caps'
checkpoints, fifteen before the tap path was tuned).

The real tap service on a real PostgreSQL database, driven in-process with signed taps;
every round trip the batch makes is counted through SQLAlchemy's events: the pool's
connection check (a ping on each checkout), BEGIN, each statement, COMMIT. Device and
route caches are warmed first and live for the whole test, so that only the batch's own
work is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from fare_gateway.cards import issue_card, topup_card
from fare_gateway.devices import DeviceDirectory, add_device
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from fare_gateway.schema import load_all_models, upgrade
from fare_gateway.taps import Inbound, Outcome, TapService
from fare_gateway.taps.sql import sql_units
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import Entry
from ledger.audit import Actor
from ledger.services import Ledger, check_invariants
from tests.support.clients import make_tap
from tracking.adapters.models import Route
from transit.topics import Topics
from transit.wire import Tap

WIB = timezone(timedelta(hours=7))
BUSES = {"SBY-0042-A": ("SBY-0042", bytes(range(32))),
         "SBY-0077-B": ("SBY-0077", bytes(range(32, 64)))}
CARDS = [f"04AB{i:012X}" for i in range(20)]
FUNDS = 500_000  # far above any fare: no card moves on or off the deny list here

# Round trips measured on the tap path before it was split into a planning step and a
# unit of work (statements in brackets); the split must not add any.
# New taps (7): ping, begin, lock, inbox, day taps, amounts, post, deny list, fares, commit;
# since weekly and monthly caps, two more: read the cards' week and month totals, and keep
# the new ones (fare_gateway/taps/periods.py).
NEW_TAPS = 12
MIXED_DUPLICATES = 13   # (8) the same, and a look-up of the tap ids already in the inbox
ONLY_DUPLICATES = 6     # (3) ping, begin, lock, inbox, look-up, commit: nothing to price
LATE_TAP_REPRICES = 12  # (7) its corrections ride in the same posting statement


def at(day: int, hh: int, mm: int = 0) -> int:
    """Epoch ms of a local (Asia/Jakarta) time in November 2025."""
    return int(datetime(2025, 11, day, hh, mm, tzinfo=WIB).timestamp() * 1000)


@dataclass
class Counted:
    """Round trips seen on an engine while `on` is set."""

    on: bool = False
    trips: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if self.on:
            self.trips.append(what)


@dataclass
class Rig:
    engine: Engine
    service: TapService
    counted: Counted
    seqs: dict[str, int] = field(default_factory=lambda: {d: 0 for d in BUSES})

    def tap(self, device_id: str, card: str, ts: int) -> Tap:
        self.seqs[device_id] += 1
        vehicle_id, secret = BUSES[device_id]
        return make_tap(secret, device_id, self.seqs[device_id], card, ts=ts,
                        vehicle_id=vehicle_id)

    def run(self, taps: list[Tap]) -> tuple[list[Outcome], list[str]]:
        """One batch; its outcomes and the round trips it made."""
        self.counted.trips.clear()
        self.counted.on = True
        try:
            outcomes = self.service.handle([
                Inbound(f"transit/v1/dev/{t.device_id}/tap", t.encode()) for t in taps])
        finally:
            self.counted.on = False
        return outcomes, list(self.counted.trips)


@pytest.fixture
def rig(pg_url: str) -> Iterator[Rig]:
    load_all_models()
    engine = make_engine(pg_url)
    upgrade(engine)
    sessions = session_factory(engine)
    policy = builtin_policy()
    ledger = Ledger(engine, policy.currency)
    with sessions.begin() as s:
        for device_id, (vehicle_id, secret) in BUSES.items():
            add_device(s, device_id, vehicle_id, secret.hex(), key=None)
        s.add(Route(route_id="R1", agency_id="SBY", short_name="R1"))
        for card in CARDS:
            issue_card(s, ledger, policy, card, "regular", actor=Actor.command())
    with sessions.begin() as s:
        for card in CARDS:
            topup_card(s, ledger, policy, card, FUNDS, f"fund-{card}", actor=Actor.command())
    devices = DeviceDirectory(sessions, ttl_s=3600, key=None)
    # The gateway's clock: the day after the last taps below (November 1-5).
    service = TapService(sql_units(sessions, ledger, policy), policy, devices,
                         RouteDirectory(sessions, ttl_s=3600), Topics(), Metrics(),
                         clock=lambda: at(6, 12))
    counted = Counted()

    def statement(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        counted.note(" ".join(sql.split()[:4]))

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "begin", lambda _conn: counted.note("BEGIN"))
    event.listen(engine, "commit", lambda _conn: counted.note("COMMIT"))
    # pool_pre_ping: each checkout pings the server before the connection is handed out.
    event.listen(engine.pool, "checkout", lambda *_args: counted.note("ping"))
    b = Rig(engine, service, counted)
    # Warm up: both devices and the routes cached, the operator's revenue account made.
    for device_id in BUSES:
        outcomes, _ = b.run([b.tap(device_id, CARDS[-1], at(1, 8))])
        assert outcomes[0].status in {"charged", "not_charged"}
    yield b
    with session_factory(engine)() as s:
        assert check_invariants(s) == []
    engine.dispose()


def test_a_batch_of_new_taps(rig: Rig) -> None:
    taps = [rig.tap("SBY-0042-A", card, at(2, 8, i)) for i, card in enumerate(CARDS[:13])]
    outcomes, trips = rig.run(taps)
    assert [(o.status, o.receipt and o.receipt.fare, o.receipt and o.receipt.balance)
            for o in outcomes] == [("charged", 5000, FUNDS - 5000)] * 13
    assert len(trips) <= NEW_TAPS, trips
    assert trips.count("BEGIN") == 1 and trips.count("COMMIT") == 1, trips


def test_a_batch_with_duplicates(rig: Rig) -> None:
    first = [rig.tap("SBY-0042-A", card, at(3, 8, i)) for i, card in enumerate(CARDS[:5])]
    rig.run(first)
    again = [rig.tap("SBY-0042-A", card, at(4, 8, i)) for i, card in enumerate(CARDS[:5])]
    outcomes, trips = rig.run([*first, *again, again[-1]])
    assert [o.status for o in outcomes] == ["duplicate"] * 5 + ["charged"] * 5 + ["duplicate"]
    assert {o.receipt.fare for o in outcomes if o.receipt} == {5000}
    assert len(trips) <= MIXED_DUPLICATES, trips

    outcomes, trips = rig.run(first[:3])
    assert [o.status for o in outcomes] == ["duplicate"] * 3
    assert len(trips) <= ONLY_DUPLICATES, trips


def test_a_late_tap_that_reprices_its_day(rig: Rig) -> None:
    card = CARDS[15]
    later = rig.tap("SBY-0077-B", card, at(5, 10, 30))
    outcomes, _ = rig.run([later])
    assert (outcomes[0].status, outcomes[0].receipt and outcomes[0].receipt.fare) == (
        "charged", 5000)
    # The 09:45 tap arrives after the 10:30 one: it starts the journey and pays, and the
    # 10:30 tap becomes a transfer within 120 minutes: 5000 back by a correction.
    late = rig.tap("SBY-0042-A", card, at(5, 9, 45))
    outcomes, trips = rig.run([late])
    receipt = outcomes[0].receipt
    assert receipt is not None
    assert (outcomes[0].status, receipt.fare, receipt.balance) == ("charged", 5000,
                                                                   FUNDS - 5000)
    assert len(trips) <= LATE_TAP_REPRICES, trips
    with session_factory(rig.engine)() as s:
        corrections = s.execute(select(Entry.idem_key, Entry.amount).where(
            Entry.kind == "correction")).all()
    assert [tuple(c) for c in corrections] == [(f"corr:{later.tap_id}:{late.tap_id}", -5000)]
