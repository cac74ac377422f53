"""The tap path: verify, de-duplicate, price and post a batch of taps in one transaction.

The transaction is a unit of work (`ports.TapUnitOfWork`): it loads what the batch
needs, `planning` decides, and the unit writes what was decided, then commits.

Verification sorts messages three ways. A message that cannot be trusted (malformed, an
unknown or revoked device, a bad signature) is quarantined and gets no receipt: there is
no key to sign one with; its outcome (and its `transit_taps_total` label) is
`quarantined`. A trusted tap that breaks a rule of contract section 10 (it names another
vehicle than its device's, or its `ts` is outside `EventWindow`) is answered `rejected`,
signed, so that the validator stops sending it; it is kept in the inbox and in the
quarantine and never charged. Every other tap is priced. The window is checked before
anything reads a date from `ts`, with one reading of the clock per batch.
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
from fare_gateway.taps.periods import period_keys
from fare_gateway.taps.planning import Arrival, Decision, Plan
from fare_gateway.taps.ports import Quarantined, TapUnitOfWork
from ledger.domain import CardState
from transit.topics import Topics
from transit.window import DEFAULT_WINDOW, MAX_AHEAD_MS, EventWindow
from transit.wire import Receipt, Tap, WireError


def now_ms() -> int:
    """The gateway's clock: epoch milliseconds."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Inbound:
    """A message as it came off the broker."""

    topic: str
    payload: bytes
    received_ms: int = field(default_factory=now_ms)


QUARANTINED = "quarantined"
"""The status of a message kept for inspection with no receipt (`transit_taps_total`'s
label): apart from `rejected`, a trusted tap answered with a signed receipt."""


@dataclass(frozen=True)
class Outcome:
    """What became of one inbound message; `receipt` is signed and ready to publish."""

    status: str  # a receipt's status, or QUARANTINED (no receipt)
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


@dataclass(frozen=True)
class _Trusted:
    """A tap signed by a known, active device: `device` signs its receipt; `broken` is
    the rule of section 10 it breaks, kept for inspection if the tap is new."""

    tap: Tap
    device: KnownDevice
    broken: _Reject | None = None


class TapService:
    """Turns batches of tap messages into ledger entries and receipts, exactly once per tap_id.

    `window` is the span of believable tap times around `clock` (epoch ms), the
    gateway's clock, read once per batch.
    """

    def __init__(self, units: Callable[[], TapUnitOfWork], policy: FarePolicy,
                 devices: DeviceVerifier, routes: OperatorLookup, topics: Topics,
                 metrics: Metrics | None = None, *, window: EventWindow = DEFAULT_WINDOW,
                 clock: Callable[[], int] = now_ms) -> None:
        self.units = units
        self.policy = policy
        self.devices = devices
        self.routes = routes
        self.topics = topics
        self.metrics = metrics or Metrics()
        self.window = window
        self.clock = clock

    # -- verification (no database writes) -----------------------------------
    def _verify(self, index: int, msg: Inbound, now: int) -> _Trusted | _Reject:
        topic_device = self.topics.device_of(msg.topic)
        try:
            tap = Tap.parse(msg.payload)
        except WireError as exc:
            return _Reject(index, msg, exc.reason, exc.detail, topic_device)
        verdict = self.devices.verify(tap, topic_device)
        if isinstance(verdict, Refusal):
            if verdict.signer is not None:  # trusted, but naming another vehicle
                return _Trusted(tap, verdict.signer, _Reject(
                    index, msg, verdict.reason, verdict.detail, tap.device_id, tap.tap_id))
            # A message on another device's topic is kept under the topic's device.
            device_id = topic_device if verdict.reason == "topic_mismatch" else tap.device_id
            return _Reject(index, msg, verdict.reason, verdict.detail, device_id, tap.tap_id)
        rule = self.window.refusal(tap.ts, now)
        if rule is not None:
            return _Trusted(tap, verdict, _Reject(
                index, msg, rule, f"ts {tap.ts} is not within {self.window.max_age_days} "
                f"days before and {MAX_AHEAD_MS // 60_000} minutes after the gateway's "
                f"clock ({now})", tap.device_id, tap.tap_id))
        return _Trusted(tap, verdict)

    # -- the batch ------------------------------------------------------------
    def handle(self, batch: Sequence[Inbound]) -> list[Outcome]:
        """Process a batch in one transaction; returns one outcome per message, in order.

        Raises on a database error, having committed nothing: the caller retries.
        """
        started = time.perf_counter()
        now = self.clock()
        outcomes: list[Outcome | None] = [None] * len(batch)
        rejects: list[_Reject] = []
        trusted: dict[int, _Trusted] = {}
        for i, msg in enumerate(batch):
            result = self._verify(i, msg, now)
            if isinstance(result, _Reject):
                rejects.append(result)
            else:
                trusted[i] = result
        # Looked up before the transaction: on SQLite a second connection inside it would
        # wait for the write lock this thread holds.
        self.routes.refresh_if_stale()
        with self.units() as uow:
            if trusted:
                self._process(uow, batch, trusted, self.policy.service_date(now).isoformat(),
                              rejects, outcomes)
            if rejects:
                uow.quarantine([Quarantined(
                    r.inbound.received_ms, r.inbound.topic, r.reason, r.detail, r.device_id,
                    r.tap_id, r.inbound.payload) for r in rejects])
            uow.commit()
        for reason, count in Counter(r.reason for r in rejects).items():
            self.metrics.quarantined.labels(reason).inc(count)
        for r in rejects:
            if outcomes[r.index] is None:
                outcomes[r.index] = Outcome(QUARANTINED, None, r.reason)
        done = [o or Outcome(QUARANTINED, None, "internal") for o in outcomes]
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
                 trusted: dict[int, _Trusted], arrived_on: str,
                 rejects: list[_Reject], outcomes: list[Outcome | None]) -> None:
        arrivals = [Arrival(i, t.tap, t.broken.reason if t.broken else None)
                    for i, t in trusted.items()]
        # Only the batch's own cards: a duplicate's receipt tells the balance of the card
        # of its own body, the same card as the first copy's (another body is a conflict,
        # which tells none).
        cards = uow.lock_cards({a.tap.card for a in arrivals})
        # The inbox rows go in first, in tap_id order; the insert says which are new.
        admission = planning.admit(arrivals, cards, self.policy, arrived_on)
        inserted = uow.admit(admission.rows)
        skipped = sorted(set(admission.first) - inserted)
        inbox = uow.inbox(skipped) if skipped else {}
        new = admission.to_price(inserted)
        first = planning.first_days(new)
        # The new taps are in the inbox already: their days' history leaves them out.
        history = uow.charged_taps(first, {r.tap.tap_id for r in new}) if first else {}
        days = planning.days_in_play(new, history)
        amounts = uow.tap_amounts(days) if days else {}
        periods = uow.period_totals(period_keys(days)) if days else {}
        operators = {route: self.routes.operator(route, refresh=False)
                     for route in planning.routes_of(new, history)}
        plan = planning.plan(admission, inserted, inbox, cards, history, amounts, operators,
                             periods, self.policy)
        posted = uow.post(plan.drafts, {c: s.account_id for c, s in cards.items()}) \
            if plan.drafts else None
        balances = planning.balances_after(cards, posted.balances if posted else {})
        if plan.touched:
            uow.refresh_denylist(_deny_states(plan, cards, balances))
        if plan.fares:
            uow.set_fares(plan.fares)
        if plan.periods:
            uow.save_periods(plan.periods)
        for arrival in plan.conflicts:
            rejects.append(_Reject(arrival.position, batch[arrival.position], "conflict",
                                   "same tap_id, different body", arrival.tap.device_id,
                                   arrival.tap.tap_id))
        # A rejected tap is kept for inspection once, when it is new; sent again, it is
        # answered from its inbox row.
        rejects.extend(broken for a in plan.rejected
                       if (broken := trusted[a.position].broken) is not None)
        for decision in plan.decisions:
            outcomes[decision.position] = Outcome(
                decision.status,
                self._receipt(decision, trusted[decision.position].device, balances),
                "conflict" if decision.status == "conflict" else decision.reason)

    def _receipt(self, decision: Decision, device: KnownDevice,
                 balances: dict[str, int]) -> Receipt:
        # Always signed with the device's CURRENT key, even for a tap signed with the
        # previous key during a rotation's grace period.
        return Receipt(device_id=decision.tap.device_id, seq=decision.tap.seq,
                       status=decision.status, fare=decision.fare,
                       currency=self.policy.currency,
                       balance=None if decision.card is None else balances.get(decision.card),
                       reason=decision.reason).signed(device.secret)


def _deny_states(plan: Plan, cards: dict[str, CardState], balances: dict[str, int]
                 ) -> dict[str, tuple[str, str, int]]:
    return {c: (cards[c].category, cards[c].status, balances[c]) for c in plan.touched}
