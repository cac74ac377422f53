"""The tap path: verify, de-duplicate, price and post a batch of taps in one transaction.

The transaction is a unit of work (`ports.TapUnitOfWork`): it loads what the batch
needs, `planning` decides, and the unit writes what was decided, then commits.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fare_gateway.devices import KnownDevice, Refusal, SignedMessage
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.metrics import Metrics
from fare_gateway.taps import planning
from fare_gateway.taps.planning import Arrival, Decision, Plan
from fare_gateway.taps.ports import Quarantined, TapUnitOfWork
from ledger.domain import CardState
from transit.topics import Topics
from transit.wire import Receipt, Tap, WireError


@dataclass(frozen=True)
class Inbound:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    received_ms: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass(frozen=True)
class Outcome:
    """What became of one inbound message; `receipt` is signed and ready to publish."""

    status: str  # charged | duplicate | not_charged | unknown_card | conflict | rejected
    receipt: Receipt | None = None
    reason: str | None = None


class DeviceVerifier(Protocol):
    """Who signed a message (the gateway's `DeviceDirectory`)."""

    def verify(self, message: SignedMessage, topic_device: str | None
               ) -> KnownDevice | Refusal: ...


class OperatorLookup(Protocol):
    """Which operator runs a route (the gateway's `RouteDirectory`)."""

    def refresh_if_stale(self) -> None: ...

    def operator(self, route_id: str, refresh: bool = True) -> str: ...


@dataclass(frozen=True)
class _Reject:
    index: int
    inbound: Inbound
    reason: str
    detail: str
    device_id: str | None = None
    tap_id: str | None = None


class TapService:
    """Turns batches of tap messages into ledger entries and receipts, exactly once per tap_id."""

    def __init__(self, units: Callable[[], TapUnitOfWork], policy: FarePolicy,
                 devices: DeviceVerifier, routes: OperatorLookup, topics: Topics,
                 metrics: Metrics | None = None) -> None:
        self.units = units
        self.policy = policy
        self.devices = devices
        self.routes = routes
        self.topics = topics
        self.metrics = metrics or Metrics()

    # -- verification (no database writes) -----------------------------------
    def _verify(self, index: int, msg: Inbound) -> tuple[Tap, KnownDevice] | _Reject:
        topic_device = self.topics.device_of(msg.topic)
        try:
            tap = Tap.parse(msg.payload)
        except WireError as exc:
            return _Reject(index, msg, exc.reason, exc.detail, topic_device)
        verdict = self.devices.verify(tap, topic_device)
        if isinstance(verdict, Refusal):
            # A message on another device's topic is kept under the topic's device.
            device_id = topic_device if verdict.reason == "topic_mismatch" else tap.device_id
            return _Reject(index, msg, verdict.reason, verdict.detail, device_id, tap.tap_id)
        return tap, verdict

    # -- the batch ------------------------------------------------------------
    def handle(self, batch: Sequence[Inbound]) -> list[Outcome]:
        """Process a batch in one transaction; returns one outcome per message, in order.

        Raises on a database error, having committed nothing: the caller retries.
        """
        started = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(batch)
        rejects: list[_Reject] = []
        arrivals: list[Arrival] = []
        devices: dict[int, KnownDevice] = {}
        for i, msg in enumerate(batch):
            result = self._verify(i, msg)
            if isinstance(result, _Reject):
                rejects.append(result)
            else:
                arrivals.append(Arrival(i, result[0]))
                devices[i] = result[1]
        # Looked up before the transaction: on SQLite a second connection inside it would
        # wait for the write lock this thread holds.
        self.routes.refresh_if_stale()
        with self.units() as uow:
            if arrivals:
                self._process(uow, batch, arrivals, devices, rejects, outcomes)
            if rejects:
                uow.quarantine([Quarantined(
                    r.inbound.received_ms, r.inbound.topic, r.reason, r.detail, r.device_id,
                    r.tap_id, r.inbound.payload) for r in rejects])
            uow.commit()
        for reason, count in Counter(r.reason for r in rejects).items():
            self.metrics.quarantined.labels(reason).inc(count)
        for r in rejects:
            if outcomes[r.index] is None:
                outcomes[r.index] = Outcome("rejected", None, r.reason)
        done = [o or Outcome("rejected", None, "internal") for o in outcomes]
        # No money in the metrics: Prometheus values are floats, money never is.
        for status, count in Counter(o.status for o in done).items():
            self.metrics.taps.labels(status).inc(count)
        self.metrics.batches.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return done

    def quarantine_failure(self, msg: Inbound, reason: str) -> None:
        """Keep a message that could not be processed, in a transaction of its own."""
        with self.units() as uow:
            uow.quarantine([Quarantined(
                msg.received_ms, msg.topic, reason, "processing failed; see the gateway log",
                self.topics.device_of(msg.topic), None, msg.payload)])
            uow.commit()
        self.metrics.quarantined.labels(reason).inc()

    def _process(self, uow: TapUnitOfWork, batch: Sequence[Inbound],
                 arrivals: list[Arrival], devices: dict[int, KnownDevice],
                 rejects: list[_Reject], outcomes: list[Outcome | None]) -> None:
        # Only the batch's own cards: a repeat's receipt names the card of its own body
        # (the same card as the first one's, or a conflict, answered with its own card).
        cards = uow.lock_cards({a.tap.card for a in arrivals})
        # The inbox rows go in first, in tap_id order; the insert says which are new.
        admission = planning.admit(arrivals, cards, self.policy)
        inserted = uow.admit(admission.rows)
        skipped = sorted(set(admission.first) - inserted)
        inbox = uow.inbox(skipped) if skipped else {}
        new = admission.to_price(inserted)
        days = planning.card_days(new)
        # The new taps are in the inbox already: their days' history leaves them out.
        history = uow.charged_taps(days, {r.tap.tap_id for r in new}) if days else {}
        amounts = uow.tap_amounts(days) if days else {}
        operators = {route: self.routes.operator(route, refresh=False)
                     for route in planning.routes_of(new, history)}
        plan = planning.plan(admission, inserted, inbox, cards, history, amounts, operators,
                             self.policy)
        posted = uow.post(plan.drafts, {c: s.account_id for c, s in cards.items()}) \
            if plan.drafts else None
        balances = planning.balances_after(cards, posted.balances if posted else {})
        if plan.touched:
            uow.refresh_denylist(_deny_states(plan, cards, balances))
        if plan.fares:
            uow.set_fares(plan.fares)
        for arrival in plan.conflicts:
            rejects.append(_Reject(arrival.position, batch[arrival.position], "conflict",
                                   "same tap_id, different body", arrival.tap.device_id,
                                   arrival.tap.tap_id))
        for decision in plan.decisions:
            outcomes[decision.position] = Outcome(
                decision.status, self._receipt(decision, devices[decision.position], balances),
                "conflict" if decision.status == "conflict" else None)

    def _receipt(self, decision: Decision, device: KnownDevice,
                 balances: dict[str, int]) -> Receipt:
        # Always signed with the device's CURRENT key, even for a tap signed with the
        # previous key during a rotation's grace period.
        return Receipt(device_id=decision.tap.device_id, seq=decision.tap.seq,
                       status=decision.status, fare=decision.fare,
                       balance=balances.get(decision.card, 0),
                       currency=self.policy.currency).signed(device.secret)


def _deny_states(plan: Plan, cards: dict[str, CardState], balances: dict[str, int]
                 ) -> dict[str, tuple[str, str, int]]:
    return {c: (cards[c].category, cards[c].status, balances[c]) for c in plan.touched}
