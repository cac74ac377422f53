"""The tap path: verify, de-duplicate, price and post a batch of taps in one transaction."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import QuarantineRecord, TapRecord
from fare_gateway.denylist import refresh_denylist
from fare_gateway.devices import DeviceDirectory, KnownDevice
from fare_gateway.fares.engine import PricedTap, price_day
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from ledger.adapters.bulk import bulk_insert, bulk_update
from ledger.adapters.models import Card, Entry
from ledger.adapters.sql import one_of, parts
from ledger.domain import EntryDraft, fare_entry
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


def _priced(tap: Tap) -> PricedTap:
    return PricedTap(tap.tap_id, tap.device_id, tap.seq, tap.ts, tap.vehicle_id, tap.route_id,
                     tap.kind, tap.lat_e6, tap.lon_e6)


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
        # The current key, or the previous one while a rotation's grace period lasts.
        if not any(tap.verify(key) for key in device.keys()):
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
        self.routes.refresh_if_stale()
        operators = {t.route_id: self.routes.operator(t.route_id, refresh=False)
                     for _, t, _ in verified}
        with self.sessions.begin() as session:
            self._process(session, batch, verified, rejects, outcomes, operators)
            if rejects:
                bulk_insert(session, QuarantineRecord.__table__, [{
                    "received_ms": r.inbound.received_ms, "topic": r.inbound.topic[:300],
                    "reason": r.reason, "detail": r.detail[:2000], "device_id": r.device_id,
                    "tap_id": r.tap_id, "size": len(r.inbound.payload),
                    "payload": r.inbound.payload[:QUARANTINE_KEEP_BYTES]} for r in rejects])
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
        with self.sessions.begin() as session:
            session.add(QuarantineRecord(
                received_ms=msg.received_ms, topic=msg.topic[:300], reason=reason,
                detail="processing failed; see the gateway log", device_id=self.topics.device_of(
                    msg.topic), tap_id=None, size=len(msg.payload),
                payload=msg.payload[:QUARANTINE_KEEP_BYTES]))
        self.metrics.quarantined.labels(reason).inc()

    def _receipt(self, tap: Tap, device: KnownDevice, status: str, fare: int,
                 balance: int) -> Receipt:
        # Always signed with the device's CURRENT key, even for a tap signed with the
        # previous key during a rotation's grace period.
        return Receipt(device_id=tap.device_id, seq=tap.seq, status=status, fare=fare,
                       balance=balance, currency=self.policy.currency).signed(device.secret)

    def _existing(self, session: Session, tap_ids: list[str]) -> dict[str, Row[Any]]:
        """Inbox rows already holding these tap ids: (tap_id, digest, fare, card)."""
        t = TapRecord.__table__.c
        conn = session.connection()
        found: dict[str, Row[Any]] = {}
        for part in parts(conn, tap_ids):
            for row in conn.execute(select(t.tap_id, t.digest, t.fare, t.card)
                                    .where(one_of(conn, t.tap_id, part))):
                found[row.tap_id] = row
        return found

    def _reprice(self, session: Session, taps: list[Tap], cards: dict[str, _CardState],
                 operators: dict[str, str], balances: dict[str, int]
                 ) -> dict[str, tuple[str, int]]:
        """Re-price each new tap's card-day; post its charge and corrections of earlier taps.

        Returns the receipt status and fare of each new tap: an entry's own charge
        (`not_charged` for a repeat tap), or for an exit the change it made to the day
        (usually a refund on its entry).
        """
        days: dict[tuple[str, str], list[Tap]] = defaultdict(list)
        for tap in taps:
            days[(tap.card, self.policy.service_date(tap.ts).isoformat())].append(tap)
        if not days:
            return {}
        new_ids = {t.tap_id for t in taps}
        known, ledger_now, routes, charged_to = self._load_days(session, set(days), new_ids)
        drafts: list[EntryDraft] = []
        receipt_fares: dict[str, tuple[str, int]] = {}
        for (card, service_date), new in sorted(days.items()):
            category = cards[card].category
            day = known[(card, service_date)]
            for tap in sorted(new, key=lambda t: (t.ts, t.device_id, t.seq)):
                day[tap.tap_id] = _priced(tap)
                routes[tap.tap_id] = tap.route_id
                price = price_day(self.policy, category, day.values())
                change = 0
                for tap_id, charge in sorted(price.charges.items()):
                    before = ledger_now.get(tap_id)
                    if tap_id == tap.tap_id:
                        if tap.kind != "entry" or charge.role == "repeat":
                            continue  # costs nothing now; a later tap may change that
                        kind, key = "fare", None
                    elif (before or 0) != charge.amount:
                        kind, key = "correction", f"corr:{tap_id}:{tap.tap_id}"
                    else:
                        continue
                    delta = charge.amount - (before or 0)
                    drafts.append(fare_entry(
                        tap_id=tap_id, card=card, fare=delta, digest=tap.digest,
                        currency=self.policy.currency, kind=kind, idem_key=key,
                        # A correction goes to whoever the fare went to, even if the
                        # route has changed hands in the GTFS data since.
                        operator_id=charged_to.get(tap_id) or operators.get(routes[tap_id])
                        or self.routes.operator(routes[tap_id], refresh=False),
                        route_id=routes[tap_id], category=category,
                        service_date=service_date))
                    ledger_now[tap_id] = charge.amount
                    balances[card] -= delta
                    change += delta
                role = price.charges[tap.tap_id].role
                receipt_fares[tap.tap_id] = (
                    "not_charged" if role == "repeat" else "charged",
                    price.amount(tap.tap_id) if tap.kind == "entry" else change)
        self.ledger.post(session, drafts, {c: s.account_id for c, s in cards.items()})
        touched = {card for card, _ in days}
        # The cards are locked and their balances are known here: no need to read them.
        refresh_denylist(session, self.policy, touched, {
            c: (cards[c].category, cards[c].status, balances[c]) for c in touched})
        return receipt_fares

    def _load_days(self, session: Session, days: set[tuple[str, str]], exclude: set[str]
                   ) -> tuple[dict[tuple[str, str], dict[str, PricedTap]], dict[str, int],
                              dict[str, str], dict[str, str]]:
        """Accepted taps already charged in these card-days, and what the ledger holds
        for each tap now."""
        known: dict[tuple[str, str], dict[str, PricedTap]] = {d: {} for d in days}
        ledger_now: dict[str, int] = {}
        routes: dict[str, str] = {}
        charged_to: dict[str, str] = {}  # tap -> operator its fare was credited to
        cards = sorted({c for c, _ in days})
        dates = sorted({d for _, d in days})
        t = TapRecord.__table__.c
        e = Entry.__table__.c
        # Core statements, not ORM ones: these rows are only read, and the ORM's row
        # handling cost more than the queries. (One statement joining the two reads was
        # tried: PostgreSQL planned it badly for large batches, 300 ms for 500 cards.)
        conn = session.connection()
        for part in parts(conn, cards):
            rows = conn.execute(select(
                t.tap_id, t.device_id, t.seq, t.ts, t.vehicle_id, t.route_id, t.kind,
                t.lat_e6, t.lon_e6, t.card, t.service_date).where(
                one_of(conn, t.card, part), one_of(conn, t.service_date, dates),
                # Written into the statement, not bound: PostgreSQL's generic plan for a
                # bound status scanned the whole table (1 ms instead of 0.1 for 13 cards).
                t.status == literal("charged", literal_execute=True))).all()
            for row in rows:
                key = (row[9], row[10])
                if key in known and row[0] not in exclude:
                    known[key][row[0]] = PricedTap(*row[:9])
                    routes[row[0]] = row[5]
            # One pass over the entries: each tap's net amount, and the operator its
            # fare went to (at most one fare entry per tap: its idempotency key is unique).
            fare_operator = func.max(case((e.kind == "fare", e.operator_id)))
            sums = conn.execute(
                select(e.tap_id, e.card, e.service_date, func.sum(e.amount), fare_operator)
                .where(one_of(conn, e.card, part), one_of(conn, e.service_date, dates),
                       e.tap_id.is_not(None))
                .group_by(e.tap_id, e.card, e.service_date)).all()
            for tap_id, card, service_date, amount, operator in sums:
                if operator is not None:
                    charged_to[tap_id] = operator
                if (card, service_date) in known:
                    ledger_now[tap_id] = int(amount)
        return known, ledger_now, routes, charged_to

    def _lock_cards(self, session: Session, cards: set[str]) -> dict[str, _CardState]:
        """Lock the batch's cards in sorted order, so concurrent gateways cannot deadlock."""
        out: dict[str, _CardState] = {}
        c = Card.__table__.c
        conn = session.connection()
        for part in parts(conn, sorted(cards)):
            stmt = (select(c.card, c.category, c.status, c.balance, c.account_id)
                    .where(one_of(conn, c.card, part)).order_by(c.card).with_for_update())
            for row in conn.execute(stmt):
                out[row[0]] = _CardState(*row)
        return out

    def _process(self, session: Session, batch: Sequence[Inbound],
                 verified: list[tuple[int, Tap, KnownDevice]],
                 rejects: list[_Reject], outcomes: list[Outcome | None],
                 operators: dict[str, str]) -> None:
        if not verified:
            return
        fresh: dict[str, tuple[int, Tap, KnownDevice]] = {}
        repeats: list[tuple[int, Tap, KnownDevice]] = []
        for item in verified:
            tap_id = item[1].tap_id
            if tap_id in fresh:
                repeats.append(item)
            else:
                fresh[tap_id] = item
        # Only the batch's own cards: a repeat's receipt names the card of its own body
        # (the same card as the first one's, or a conflict, answered with its own card).
        cards = self._lock_cards(session, {t.card for _, t, _ in verified})
        balances = {c: s.balance for c, s in cards.items()}

        # The inbox rows go in first, in tap_id order. A tap_id already in the inbox is
        # skipped by the insert itself (no look-up first: repeats are rare), and one that
        # another gateway is inserting at this moment makes us wait for its commit and
        # then skip it here.
        rows = []
        planned: dict[str, tuple[str, int]] = {}
        for tap_id in sorted(fresh):
            _, tap, _ = fresh[tap_id]
            state = cards.get(tap.card)
            service_date = self.policy.service_date(tap.ts).isoformat()
            if state is None:
                status, fare = "unknown_card", 0
            elif not tap.accepted:
                status, fare = "not_charged", 0
            else:
                status, fare = "charged", 0  # priced below, with the rest of its day
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
        known = sorted(set(fresh) - inserted)
        existing = self._existing(session, known) if known else {}
        for tap_id in known:  # processed before (or just now by another gateway): a repeat
            repeats.append(fresh.pop(tap_id))
        priced = self._reprice(session, [fresh[t][1] for t in sorted(fresh)
                                        if planned[t][0] == "charged"], cards, operators,
                              balances)
        if priced:
            bulk_update(session, TapRecord.__table__, "tap_id", "fare",
                        {tap_id: fare for tap_id, (_, fare) in priced.items()})
        for tap_id in sorted(fresh):
            index, tap, device = fresh[tap_id]
            status, fare = priced.get(tap_id, (planned[tap_id][0], 0))
            planned[tap_id] = (status, fare)
            outcomes[index] = Outcome(status, self._receipt(
                tap, device, status, fare, balances.get(tap.card, 0)))
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
