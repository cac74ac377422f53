"""The tap path: verify, de-duplicate, price and post a batch of taps in one transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import QuarantineRecord, TapRecord
from fare_gateway.devices import DeviceDirectory, KnownDevice
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from ledger.adapters.models import Card
from ledger.adapters.bulk import bulk_insert
from ledger.adapters.sql import chunks
from ledger.domain import fare_entry
from ledger.services import Ledger
from transit.topics import Topics
from transit.wire import Receipt, Tap, WireError

QUARANTINE_KEEP_BYTES = 4096


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


@dataclass(frozen=True)
class _Reject:
    index: int
    inbound: Inbound
    reason: str
    detail: str
    device_id: str | None = None
    tap_id: str | None = None


@dataclass(frozen=True)
class _CardState:
    card: str
    category: str
    status: str
    balance: int
    account_id: int


class TapService:
    """Turns batches of tap messages into ledger entries and receipts, exactly once per tap_id."""

    def __init__(self, sessions: sessionmaker[Session], ledger: Ledger, policy: FarePolicy,
                 devices: DeviceDirectory, routes: RouteDirectory, topics: Topics,
                 metrics: Metrics | None = None) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy
        self.devices = devices
        self.routes = routes
        self.topics = topics
        self.metrics = metrics or Metrics()

    # -- verification (no database writes) -----------------------------------
    def _verify(self, index: int, msg: Inbound) -> tuple[Tap, KnownDevice] | _Reject:
        try:
            tap = Tap.parse(msg.payload)
        except WireError as exc:
            return _Reject(index, msg, exc.reason, exc.detail, self.topics.device_of(msg.topic))
        topic_device = self.topics.device_of(msg.topic)
        if topic_device != tap.device_id:
            return _Reject(index, msg, "topic_mismatch",
                           f"tap of {tap.device_id} published on {msg.topic}",
                           topic_device, tap.tap_id)
        device = self.devices.get(tap.device_id)
        if device is None:
            return _Reject(index, msg, "unknown_device", f"no device {tap.device_id}",
                           tap.device_id, tap.tap_id)
        if not device.active:
            return _Reject(index, msg, "inactive_device", f"device {tap.device_id} is revoked",
                           tap.device_id, tap.tap_id)
        if not tap.verify(device.secret):
            return _Reject(index, msg, "bad_signature", "signature does not match the device key",
                           tap.device_id, tap.tap_id)
        return tap, device

    # -- the batch ------------------------------------------------------------
    def handle(self, batch: Sequence[Inbound]) -> list[Outcome]:
        """Process a batch in one transaction; returns one outcome per message, in order.

        Raises on a database error, having committed nothing: the caller retries.
        """
        started = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(batch)
        rejects: list[_Reject] = []
        verified: list[tuple[int, Tap, KnownDevice]] = []
        for i, msg in enumerate(batch):
            result = self._verify(i, msg)
            if isinstance(result, _Reject):
                rejects.append(result)
            else:
                verified.append((i, result[0], result[1]))
        # Looked up before the transaction: on SQLite a second connection inside it would
        # wait for the write lock this thread holds.
        operators = {t.route_id: self.routes.operator(t.route_id) for _, t, _ in verified}
        with self.sessions.begin() as session:
            self._process(session, batch, verified, rejects, outcomes, operators)
            if rejects:
                bulk_insert(session, QuarantineRecord.__table__, [{
                    "received_ms": r.inbound.received_ms, "topic": r.inbound.topic[:300],
                    "reason": r.reason, "detail": r.detail[:2000], "device_id": r.device_id,
                    "tap_id": r.tap_id, "size": len(r.inbound.payload),
                    "payload": r.inbound.payload[:QUARANTINE_KEEP_BYTES]} for r in rejects])
        for r in rejects:
            self.metrics.quarantined.labels(r.reason).inc()
            if outcomes[r.index] is None:
                outcomes[r.index] = Outcome("rejected", None, r.reason)
        done = [o or Outcome("rejected", None, "internal") for o in outcomes]
        for o in done:
            self.metrics.taps.labels(o.status).inc()
            if o.status == "charged" and o.receipt is not None and o.receipt.fare > 0:
                self.metrics.fare_amount.inc(o.receipt.fare)
        self.metrics.batches.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return done

    def quarantine_failure(self, msg: Inbound, reason: str) -> None:
        """Keep a message that could not be processed, in a transaction of its own."""
        with self.sessions.begin() as session:
            session.add(QuarantineRecord(
                received_ms=msg.received_ms, topic=msg.topic[:300], reason=reason,
                detail="processing failed; see the gateway log", device_id=self.topics.device_of(
                    msg.topic), tap_id=None, size=len(msg.payload),
                payload=msg.payload[:QUARANTINE_KEEP_BYTES]))
        self.metrics.quarantined.labels(reason).inc()

    def _receipt(self, tap: Tap, device: KnownDevice, status: str, fare: int,
                 balance: int) -> Receipt:
        return Receipt(device_id=tap.device_id, seq=tap.seq, status=status, fare=fare,
                       balance=balance, currency=self.policy.currency).signed(device.secret)

    def _existing(self, session: Session, tap_ids: list[str]) -> dict[str, TapRecord]:
        found: dict[str, TapRecord] = {}
        for part in chunks(tap_ids):
            for row in session.execute(select(TapRecord).where(TapRecord.tap_id.in_(part))
                                       ).scalars():
                found[row.tap_id] = row
        return found

    def _lock_cards(self, session: Session, cards: set[str]) -> dict[str, _CardState]:
        """Lock the batch's cards in sorted order, so concurrent gateways cannot deadlock."""
        out: dict[str, _CardState] = {}
        for part in chunks(sorted(cards)):
            stmt = (select(Card.card, Card.category, Card.status, Card.balance, Card.account_id)
                    .where(Card.card.in_(part)).order_by(Card.card).with_for_update())
            for row in session.execute(stmt).tuples():
                out[row[0]] = _CardState(*row)
        return out

    def _process(self, session: Session, batch: Sequence[Inbound],
                 verified: list[tuple[int, Tap, KnownDevice]],
                 rejects: list[_Reject], outcomes: list[Outcome | None],
                 operators: dict[str, str]) -> None:
        if not verified:
            return
        existing = self._existing(session, sorted({t.tap_id for _, t, _ in verified}))
        fresh: dict[str, tuple[int, Tap, KnownDevice]] = {}
        repeats: list[tuple[int, Tap, KnownDevice]] = []
        for item in verified:
            tap_id = item[1].tap_id
            if tap_id in existing or tap_id in fresh:
                repeats.append(item)
            else:
                fresh[tap_id] = item
        cards = self._lock_cards(session, {t.card for _, t, _ in verified}
                                 | {r.card for r in existing.values()})
        balances = {c: s.balance for c, s in cards.items()}

        # The inbox rows go in first, in tap_id order: a tap another gateway is inserting
        # at this moment makes us wait for its commit and then skip it here.
        rows = []
        drafts = []
        planned: dict[str, tuple[str, int]] = {}
        for tap_id in sorted(fresh):
            _, tap, _ = fresh[tap_id]
            state = cards.get(tap.card)
            service_date = self.policy.service_date(tap.ts).isoformat()
            if state is None:
                status, fare = "unknown_card", 0
            elif not tap.accepted:
                status, fare = "not_charged", 0
            elif tap.kind == "exit":
                status, fare = "charged", 0
            else:
                status = "charged"
                fare = self.policy.full_fare(tap.route_id, tap.ts, state.category)
            planned[tap_id] = (status, fare)
            rows.append({
                "tap_id": tap_id, "device_id": tap.device_id, "seq": tap.seq,
                "digest": tap.digest, "card": tap.card, "kind": tap.kind,
                "accepted": tap.accepted, "reason": tap.reason, "ts": tap.ts,
                "vehicle_id": tap.vehicle_id, "route_id": tap.route_id, "trip_id": tap.trip_id,
                "lat_e6": tap.lat_e6, "lon_e6": tap.lon_e6, "service_date": service_date,
                "status": status, "fare": fare, "received_ms": int(time.time() * 1000)})
        inserted = {row[0] for row in bulk_insert(
            session, TapRecord.__table__, rows, ignore_conflicts=True, returning=("tap_id",))}
        raced = sorted(set(fresh) - inserted)
        if raced:  # committed meanwhile by another gateway: now a repeat like any other
            existing.update(self._existing(session, raced))
            for tap_id in raced:
                repeats.append(fresh.pop(tap_id))
        for tap_id in sorted(fresh):
            index, tap, device = fresh[tap_id]
            status, fare = planned[tap_id]
            state = cards.get(tap.card)
            if status == "charged" and state is not None:
                drafts.append(fare_entry(
                    tap_id=tap_id, card=tap.card, fare=fare, digest=tap.digest,
                    currency=self.policy.currency,
                    operator_id=operators[tap.route_id], route_id=tap.route_id,
                    category=state.category, service_date=self.policy.service_date(
                        tap.ts).isoformat()))
                balances[tap.card] -= fare
            outcomes[index] = Outcome(status, self._receipt(
                tap, device, status, fare, balances.get(tap.card, 0)))
        self.ledger.post(session, drafts, {c: s.account_id for c, s in cards.items()})
        batch_first: dict[str, str] = {t.tap_id: t.digest for _, t, _ in fresh.values()}
        for index, tap, device in repeats:
            prior = existing.get(tap.tap_id)
            digest = prior.digest if prior is not None else batch_first[tap.tap_id]
            if digest == tap.digest:
                fare = prior.fare if prior is not None else planned[tap.tap_id][1]
                card = prior.card if prior is not None else tap.card
                outcomes[index] = Outcome("duplicate", self._receipt(
                    tap, device, "duplicate", fare, balances.get(card, 0)))
            else:
                rejects.append(_Reject(index, batch[index],
                                       "conflict", "same tap_id, different body",
                                       tap.device_id, tap.tap_id))
                outcomes[index] = Outcome("conflict", self._receipt(
                    tap, device, "conflict", 0, balances.get(tap.card, 0)), "conflict")
