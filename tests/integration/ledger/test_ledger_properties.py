"""Ledger invariants under random top-ups and tap batches, on PostgreSQL and on SQLite.

A Hypothesis state machine drives the real `Ledger` and `TapService` against a real
database and keeps its own model of what every card must hold. Each tap of a card lands
on a service day of its own, so that whatever the day-pricing rules of contract section 5
(repeats, transfers, caps), its fare is the full fare of the first matching rule, which
the model computes from the contract's table, not from the project's code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from fare_gateway.adapters.models import QuarantineRecord, TapRecord
from fare_gateway.devices import DeviceDirectory, add_device
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from fare_gateway.schema import load_all_models, upgrade
from fare_gateway.taps import Inbound, Outcome, TapService
from fare_gateway.taps.sql import sql_units
from ledger.adapters.db import Base, make_engine, session_factory
from ledger.adapters.models import Card, Entry
from ledger.services import CardNotFound, IdempotencyConflict, Ledger, check_invariants
from tests.support.clients import make_tap
from transit.topics import Topics
from transit.wire import Tap

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

WIB = timezone(timedelta(hours=7))
DAY0 = datetime(2025, 11, 1, tzinfo=WIB)  # local midnight in Jakarta

# Contract section 5, built-in policy: (early 05:00-07:00, otherwise) per category.
FARES = {"regular": (2000, 5000), "student": (1000, 2500), "senior": (0, 0)}


@dataclass(frozen=True)
class Dev:
    device_id: str
    vehicle_id: str
    secret: bytes


DEVICES = (Dev("SBY-0042-A", "SBY-0042", bytes(range(32))),
           Dev("SBY-0077-B", "SBY-0077", bytes(range(32, 64))))
CARDS = {"04A1B2C3D4E5F6": "regular", "04B0000000000001": "student",
         "04C0000000000002": "senior"}
UNKNOWN_CARD = "04DEADBEEF00"
ALL_CARDS = (*CARDS, UNKNOWN_CARD)
REFERENCES = tuple(f"ref-{i}" for i in range(6))
AMOUNTS = (1000, 5000, 20_000, 50_000)


def expected_fare(category: str, minute: int) -> int:
    """The contract's full fare at `minute` past local midnight of the service day's date."""
    local = minute % 1440
    early, regular = FARES[category]
    return early if 5 * 60 <= local < 7 * 60 else regular


def reset(engine: Engine) -> None:
    """Empty every table, so that each Hypothesis example starts from a fresh schema."""
    tables = [t.name for t in Base.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                conn.execute(text(f"DELETE FROM {name}"))


@dataclass
class Sent:
    """A signed tap some validator sent, and what the model expects of its tap_id."""

    tap: Tap
    device: Dev


@dataclass
class Recorded:
    """The first processed body of a tap_id and what it cost."""

    digest: str
    card: str
    status: str
    fare: int


def build_machine(engine: Engine) -> type[RuleBasedStateMachine]:
    sessions = session_factory(engine)
    policy = builtin_policy()

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            reset(engine)
            self.ledger = Ledger(engine, "IDR")
            with sessions.begin() as s:
                for dev in DEVICES:
                    add_device(s, dev.device_id, dev.vehicle_id, dev.secret.hex(), key=None)
                for card, category in CARDS.items():
                    self.ledger.open_card(s, card, category)
            # The gateway's clock: the day after the newest tap (each new tap is a day on).
            self.service = TapService(sql_units(sessions, self.ledger, policy), policy,
                                      DeviceDirectory(sessions, key=None), RouteDirectory(sessions),
                                      Topics(), Metrics(), clock=lambda: int(
                                          (DAY0 + timedelta(days=self.day + 1)).timestamp()
                                          * 1000))
            self.topups: dict[str, tuple[str, int]] = {}  # reference -> (card, amount)
            self.recorded: dict[str, Recorded] = {}       # tap_id -> first processed body
            self.sent: list[Sent] = []
            self.next_seq = {dev.device_id: 1 for dev in DEVICES}
            self.day = 0
            self.kept = 0  # messages the gateway must have kept for inspection

        # -- model ------------------------------------------------------------------
        def balance(self, card: str) -> int:
            credit = sum(a for c, a in self.topups.values() if c == card)
            debit = sum(r.fare for r in self.recorded.values()
                        if r.card == card and r.status == "charged")
            return credit - debit

        # -- top-ups ----------------------------------------------------------------
        @rule(card=st.sampled_from(ALL_CARDS), amount=st.sampled_from(AMOUNTS),
              reference=st.sampled_from(REFERENCES))
        def topup(self, card: str, amount: int, reference: str) -> None:
            before = self.balance(card) if card in CARDS else None
            if card not in CARDS:
                with pytest.raises(CardNotFound), sessions.begin() as s:
                    self.ledger.topup(s, card, amount, reference)
                return
            if reference in self.topups and self.topups[reference] != (card, amount):
                with pytest.raises(IdempotencyConflict), sessions.begin() as s:
                    self.ledger.topup(s, card, amount, reference)
                assert self.balance(card) == before
                return
            with sessions.begin() as s:
                result = self.ledger.topup(s, card, amount, reference)
            replay = reference in self.topups
            assert result.created is not replay, (reference, replay, result)
            self.topups[reference] = (card, amount)
            assert result.balance == self.balance(card)
            assert result.card == card and result.reference == reference

        @precondition(lambda self: bool(self.topups))
        @rule(data=st.data())
        def replay_topup(self, data: st.DataObject) -> None:
            """A clerk or a payment provider retrying a top-up it already made."""
            reference = data.draw(st.sampled_from(sorted(self.topups)), label="reference")
            card, amount = self.topups[reference]
            before = self.balance(card)
            with sessions.begin() as s:
                result = self.ledger.topup(s, card, amount, reference)
            assert not result.created
            assert result.balance == before == self.balance(card)

        # -- taps -------------------------------------------------------------------
        def new_tap(self, data: st.DataObject) -> Sent:
            dev = data.draw(st.sampled_from(DEVICES), label="device")
            card = data.draw(st.sampled_from((*CARDS, *CARDS, UNKNOWN_CARD)), label="card")
            accepted = data.draw(st.sampled_from((True, True, True, False)), label="accepted")
            # a minute of the service day: 03:00 up to 02:59 the next calendar day
            minute = data.draw(st.integers(3 * 60, 27 * 60 - 1), label="minute")
            ts = int((DAY0 + timedelta(days=self.day, minutes=minute)).timestamp() * 1000)
            self.day += 1
            seq = self.next_seq[dev.device_id]
            self.next_seq[dev.device_id] += 1
            extra: dict[str, Any] = {} if accepted else {"reason": "denylisted"}
            tap = make_tap(dev.secret, dev.device_id, seq, card, ts=ts,
                           vehicle_id=dev.vehicle_id, accepted=accepted, **extra)
            assert policy.service_date(ts) == (DAY0 + timedelta(days=self.day - 1)).date()
            return Sent(tap, dev)

        def variant(self, original: Sent, data: st.DataObject) -> Sent:
            """The same tap_id with another body, properly signed by the same device."""
            how = data.draw(st.sampled_from(["ts", "route", "accepted", "card"]), label="how")
            t = original.tap
            if how == "ts":
                changed = replace(t, ts=t.ts + 60_000, sig=None)
            elif how == "route":
                changed = replace(t, route_id=t.route_id + "X", sig=None)
            elif how == "accepted":
                changed = replace(t, accepted=not t.accepted,
                                  reason=None if not t.accepted else "repeat", sig=None)
            else:
                other = next(c for c in ALL_CARDS if c != t.card)
                changed = replace(t, card=other, sig=None)
            return Sent(changed.signed(original.device.secret), original.device)

        @rule(data=st.data(), size=st.integers(1, 6))
        def tap_batch(self, data: st.DataObject, size: int) -> None:
            batch: list[Inbound] = []
            expect: list[tuple[str, Sent | None]] = []
            pending: dict[str, Recorded] = {}
            for _ in range(size):
                action = data.draw(st.sampled_from(
                    ["new", "new", "resend", "conflict", "forged"] if self.sent else
                    ["new", "forged"]), label="action")
                if action == "new":
                    item = self.new_tap(data)
                    self.sent.append(item)
                elif action == "resend":
                    item = data.draw(st.sampled_from(self.sent), label="resend")
                elif action == "conflict":
                    item = self.variant(data.draw(st.sampled_from(self.sent), label="of"), data)
                    self.sent.append(item)
                else:  # signed with a key that is not the device's
                    base = data.draw(st.sampled_from(self.sent), label="forge") if (
                        self.sent and data.draw(st.booleans(), label="reuse")) else \
                        self.new_tap(data)
                    forged = base.tap.signed(b"\xee" * 32)
                    batch.append(Inbound(f"transit/v1/dev/{forged.device_id}/tap",
                                         forged.encode()))
                    expect.append(("quarantined", None))
                    continue
                tap = item.tap
                batch.append(Inbound(f"transit/v1/dev/{tap.device_id}/tap", tap.encode()))
                prior = self.recorded.get(tap.tap_id) or pending.get(tap.tap_id)
                if prior is None:
                    if not tap.accepted:  # whether or not the card exists
                        status, fare = "not_charged", 0
                    elif tap.card not in CARDS:
                        status, fare = "unknown_card", 0
                    else:
                        local = datetime.fromtimestamp(tap.ts / 1000, WIB)
                        minute = local.hour * 60 + local.minute
                        status, fare = "charged", expected_fare(CARDS[tap.card], minute)
                    pending[tap.tap_id] = Recorded(tap.digest, tap.card, status, fare)
                    expect.append((status, item))
                elif prior.digest == tap.digest:
                    expect.append(("duplicate", item))
                else:
                    expect.append(("conflict", item))

            outcomes = self.service.handle(batch)

            self.recorded.update(pending)
            self.kept += sum(1 for status, _ in expect if status in ("quarantined", "conflict"))
            assert [o.status for o in outcomes] == [status for status, _ in expect]
            charged_per_card = Counter(self.recorded[item.tap.tap_id].card
                                       for status, item in expect
                                       if status == "charged" and item is not None)
            for outcome, (status, item) in zip(outcomes, expect, strict=True):
                self.check_outcome(outcome, status, item, charged_per_card)

        def check_outcome(self, outcome: Outcome, status: str, item: Sent | None,
                          charged_per_card: Counter[str]) -> None:
            if status == "quarantined":
                assert outcome.receipt is None
                assert outcome.reason == "bad_signature"
                return
            assert item is not None
            receipt = outcome.receipt
            assert receipt is not None
            tap = item.tap
            assert (receipt.device_id, receipt.seq, receipt.status, receipt.currency) == (
                tap.device_id, tap.seq, status, "IDR")
            assert receipt.verify(item.device.secret)
            original = self.recorded[tap.tap_id]
            # A balance is told only where the tap charged the card.
            if status in ("charged", "unknown_card", "not_charged"):
                assert receipt.fare == original.fare, (tap, original, receipt)
                # with no other charge of the card in the batch, the balance is final
                others = charged_per_card[original.card] - (status == "charged")
                if status != "charged":
                    assert receipt.balance is None
                elif others == 0:
                    assert receipt.balance == self.balance(original.card)
            elif status == "duplicate":
                # repeats the original fare and the current balance
                assert receipt.fare == original.fare, (tap, original, receipt)
                assert receipt.balance == (self.balance(original.card)
                                           if original.status == "charged" else None)
            else:
                assert (receipt.fare, receipt.balance) == (0, None)

        # -- invariants -------------------------------------------------------------
        @invariant()
        def ledger_is_consistent(self) -> None:
            with sessions() as s:
                assert check_invariants(s) == []
                per_tap = s.execute(select(Entry.tap_id, func.count()).where(
                    Entry.kind == "fare").group_by(Entry.tap_id).having(func.count() > 1)).all()
                assert per_tap == [], f"tap_ids charged more than once: {per_tap}"
                fares = dict(s.execute(select(Entry.tap_id, Entry.amount).where(
                    Entry.kind == "fare")).all())
                balances = dict(s.execute(select(Card.card, Card.balance)).all())
                topups = sorted(tuple(row) for row in s.execute(
                    select(Entry.reference, Entry.card, Entry.amount)
                    .where(Entry.kind == "topup")).all())
                taps = dict(s.execute(select(TapRecord.tap_id, TapRecord.digest)).all())
                kinds = set(s.scalars(select(Entry.kind).distinct()).all())
                kept = s.scalar(select(func.count()).select_from(QuarantineRecord))

            charged = {tid: r.fare for tid, r in self.recorded.items() if r.status == "charged"}
            assert set(fares) <= set(charged), set(fares) - set(charged)
            assert {t for t, f in charged.items() if f} <= set(fares)
            assert all(fares[t] == charged[t] for t in fares), (fares, charged)
            assert balances == {card: self.balance(card) for card in CARDS}
            assert topups == sorted((ref, card, amount)
                                    for ref, (card, amount) in self.topups.items())
            assert taps == {tid: r.digest for tid, r in self.recorded.items()}
            assert kinds <= {"fare", "topup"}  # no correction can arise on separate days
            assert kept == self.kept

    return LedgerMachine


def test_ledger_stays_consistent_under_random_topups_and_taps(db_url: str) -> None:
    load_all_models()
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        machine = build_machine(engine)
        run_state_machine_as_test(machine, settings=settings(
            max_examples=25, stateful_step_count=20, deadline=None,
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        engine.dispose()
