"""Dispute use cases on the database: open one, list them, show one with its evidence,
answer it (a refund posts one ledger entry), and count the backlog for the metrics.

Each use case runs in one transaction of its own. Opening locks the card, so that two
disputes on one tap cannot both be the open one; answering locks the dispute row first
(two answers at once: the second waits, then finds it answered, 409) and then the card
with the card that replaced it, in sorted order (as the tap path locks), whose charges
and earlier refunds bound the refund. The refund, the answer, the deny list and the
audit trail's record move together in that transaction, or not at all.

The audit trail (`ledger.audit`) gets `dispute.opened` (by the rider's account) and
`dispute.answered` (by the staff token that answered, or by the gateway itself, `auto`,
for a `charged_twice` it proved), with the decision and the amount, never the
messages: what a rider writes may name people, and the trail cannot be edited.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import CardReplacement, Device, Dispute, TapRecord
from fare_gateway.cards import parse_card
from fare_gateway.denylist import refresh_denylist
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.riders import evidence, explain
from fare_gateway.riders.disputes import (
    AUTO,
    DUE_AFTER_MS,
    ESCALATE_AFTER_MS,
    Backlog,
    DisputeConflict,
    DisputeError,
    DisputeNotFound,
    DisputeRecord,
    NotAllowed,
    auto_refund,
    check_day,
    check_pending,
    check_refund,
    largest_charge,
    may_answer,
    overcharge,
    parse_answer,
    parse_category,
    parse_day,
    parse_decision,
    parse_message,
    refund_bound,
    state_window,
)
from fare_gateway.riders.links import own_card
from ledger import audit
from ledger.adapters.db import READS_ONLY, Sessions
from ledger.adapters.models import Card, Entry
from ledger.audit import Actor
from ledger.domain import CardState, refund_entry
from ledger.services import Ledger, now_ms

log = logging.getLogger(__name__)
TAP_ID = re.compile(r"[A-Za-z0-9._-]{1,64}:[0-9]{1,19}")
CHARGES = ("fare", "correction")  # what a tap costs: the net of these entries


def replacement_of(session: Session, card: str) -> str:
    """The card that holds a card's balance now: itself, or the end of its chain of
    replacements (`card_replacements`)."""
    seen = {card}
    while True:
        newer = session.scalar(select(CardReplacement.new_card)
                               .where(CardReplacement.old_card == card))
        if newer is None or newer in seen:
            return card
        seen.add(newer)
        card = newer


def record_of(row: Dispute) -> DisputeRecord:
    """A snapshot of a dispute row."""
    return DisputeRecord(row.id, row.account_id, row.card, row.tap_id, row.service_date,
                         row.category, row.message, row.created_ms, row.answered_ms,
                         row.decision, row.amount, row.answer, row.answered_by)


def auto_answer(amount: int, lang: str) -> str:
    """The text of the gateway's own answer to a charged_twice dispute it proved."""
    paid = explain.rupiah(amount)
    if lang == "id":
        return (f"Dijawab otomatis: buku besar mencatat {paid} lebih banyak daripada tarif "
                "menurut aturan untuk perjalanan ini; selisihnya dikembalikan ke kartu.")
    return (f"Answered automatically: the ledger held {paid} more than the fare rules "
            "charge for this journey; the difference was refunded to the card.")


@dataclass(frozen=True)
class Shown:
    """A dispute with its evidence."""

    record: DisputeRecord
    evidence: dict[str, Any]


class DisputeOffice:
    """The dispute use cases, each in one transaction: what the API calls.

    Raises `DisputeError` (bad input, 422), `CardError` (a malformed card, 422),
    `CardNotFound` and `DisputeNotFound` (404), `DisputeConflict` (409) and `NotAllowed`
    (403). `key` is the at-rest key device secrets are sealed with (to verify a tap's
    signature again); `track` where the vehicles' positions come from.
    """

    def __init__(self, sessions: Sessions, ledger: Ledger, policy: FarePolicy, *,
                 key: bytes | None = None, track: evidence.PositionSource | None = None,
                 clock: Callable[[], int] = now_ms) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy
        self.key = key
        self.track = track if track is not None else evidence.InboxTrack(sessions)
        self.clock = clock
        self._backlog_failing = False

    # -- riders ------------------------------------------------------------------------------
    def open(self, account_id: int, card: object, tap_id: object, day: object,
             category: object, message: object, actor: Actor) -> DisputeRecord:
        """Open a dispute on a tap of the account's card, or on one of its service days
        (today's when neither is named); a charged_twice the ledger proves is answered at
        once."""
        token = parse_card(card)
        checked_category = parse_category(category)
        text = parse_message(message)
        if tap_id is not None and day is not None:
            raise DisputeError("bad_date", "name a tap or a date, not both")
        if tap_id is not None and (not isinstance(tap_id, str) or not TAP_ID.fullmatch(tap_id)):
            raise DisputeError("bad_tap_id", "tap_id must be DEVICE:SEQ, as the statement "
                                             "shows it")
        named = tap_id if isinstance(tap_id, str) else None
        now = self.clock()
        today = self.policy.service_date(now).isoformat()
        checked_day = parse_day(day, today) if day is not None else None
        with self.sessions.begin() as session:
            own_card(session, account_id, token)
            # The card's lock (with its replacement's): one open dispute per tap (or day)
            # even when two are asked at once, and the balance an automatic refund changes.
            states = self._lock(session, token)
            if named is not None:
                tap = session.get(TapRecord, named)
                if tap is None or tap.card != token or tap.status == evidence.REJECTED:
                    raise DisputeNotFound(f"no tap {named} of card {token}")
                # A tap the card was charged for shows the card existed then, whatever
                # the card row's own time says (a validator's clock, a day's boundary).
                check_day(tap.service_date, today, None)
                service_date = tap.service_date
            else:
                service_date = checked_day or today
                check_day(service_date, today, self._issued(session, token))
            check_pending(int(session.scalar(
                select(func.count()).select_from(Dispute).where(
                    Dispute.account_id == account_id, Dispute.answered_ms.is_(None))) or 0))
            same = Dispute.tap_id == named if named is not None else (
                Dispute.tap_id.is_(None) & (Dispute.service_date == service_date))
            pending = session.scalar(select(Dispute.id).where(
                Dispute.card == token, Dispute.answered_ms.is_(None), same).limit(1))
            if pending is not None:
                raise DisputeConflict("dispute_pending", f"dispute {pending} on this "
                                      f"{'day' if named is None else 'tap'} is not "
                                      "answered yet")
            row = Dispute(account_id=account_id, card=token, tap_id=named,
                          service_date=service_date, category=checked_category,
                          message=text, created_ms=now)
            session.add(row)
            session.flush()
            proved = checked_category == "charged_twice" and self._answer_if_proved(
                session, row, states)
            # Recorded last, once the refund (if any) is posted: the trail's head stays
            # locked from the first record to the commit.
            audit.record(session, self.ledger.fingerprints, actor, "dispute.opened",
                         f"dispute:{row.id}", {"card": token, "tap_id": named,
                                               "service_date": service_date,
                                               "category": checked_category})
            if proved:
                self._audit_answer(session, row, Actor.system(AUTO))
            return record_of(row)

    def of_account(self, account_id: int) -> list[DisputeRecord]:
        """The account's disputes, newest first."""
        with self._reading() as session:
            return [record_of(r) for r in session.scalars(
                select(Dispute).where(Dispute.account_id == account_id)
                .order_by(Dispute.created_ms.desc(), Dispute.id.desc()))]

    # -- staff -------------------------------------------------------------------------------
    def in_state(self, status: str | None, as_of: int) -> list[DisputeRecord]:
        """The disputes in `status` as of `as_of` (every one opened by then, with None),
        oldest first."""
        query = select(Dispute)
        if status is None:
            query = query.where(Dispute.created_ms <= as_of)
        else:
            window = state_window(status, as_of)
            query = query.where(Dispute.created_ms <= window.created_until)
            if window.created_after is not None:
                query = query.where(Dispute.created_ms > window.created_after)
            answered = Dispute.answered_ms.is_not(None) & (Dispute.answered_ms <= as_of)
            query = query.where(answered if window.answered else ~answered)
        with self._reading() as session:
            return [record_of(r) for r in session.scalars(
                query.order_by(Dispute.created_ms, Dispute.id))]

    def show(self, dispute_id: int, lang: str) -> Shown:
        """A dispute with its evidence; the explanation in `lang` (id or en)."""
        with self._reading() as session:
            row = session.get(Dispute, dispute_id)
            if row is None:
                raise DisputeNotFound(f"no dispute {dispute_id}")
            record = record_of(row)
            return Shown(record, self._evidence(session, record, lang))

    def answer(self, dispute_id: int, role: str, answered_by: str, decision: object,
               amount: object, message: object, actor: Actor) -> DisputeRecord:
        """Answer a dispute once: a rejection with a message, or a refund posted as one
        ledger entry crediting the card (ops may only reject)."""
        if not may_answer(role, parse_decision(decision)):
            raise NotAllowed(f"the {role} role may only reject; finance refunds")
        with self.sessions.begin() as session:
            row = session.scalars(select(Dispute).where(Dispute.id == dispute_id)
                                  .with_for_update()).one_or_none()
            if row is None:
                raise DisputeNotFound(f"no dispute {dispute_id}")
            if row.answered_ms is not None:
                raise DisputeConflict("already_answered",
                                      f"dispute {dispute_id} was answered already")
            checked = parse_answer(decision, amount, message)
            if checked.decision == "refund":
                states = self._lock(session, row.card)
                check_refund(checked.amount, self._bound(session, row))
                self._refund(session, row, states, checked.amount, checked.message,
                             answered_by)
            else:
                self._record_answer(row, "reject", 0, checked.message, answered_by, None)
            self._audit_answer(session, row, actor)
            return record_of(row)

    def backlog(self) -> Backlog | None:
        """The unanswered disputes now by state, and the oldest one's age, in one query;
        None while the database cannot say (a scrape then shows no dispute figures)."""
        now = self.clock()
        d = Dispute.__table__.c

        def count(condition: Any) -> Any:
            return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

        query = (select(count(d.created_ms > now - ESCALATE_AFTER_MS),
                        count((d.created_ms <= now - ESCALATE_AFTER_MS)
                              & (d.created_ms > now - DUE_AFTER_MS)),
                        count(d.created_ms <= now - DUE_AFTER_MS), func.min(d.created_ms))
                 .where(or_(d.answered_ms.is_(None), d.answered_ms > now)))
        try:
            with self._reading() as session:
                opened, escalated, overdue, oldest = session.execute(query).one()
        except SQLAlchemyError as exc:
            if not self._backlog_failing:
                log.warning("dispute figures left out of /metrics: %s",
                            str(exc).splitlines()[0])
            self._backlog_failing = True
            return None
        self._backlog_failing = False
        age = 0.0 if oldest is None else max(0, now - int(oldest)) / 1000
        return Backlog(int(opened), int(escalated), int(overdue), age)

    # -- inside a transaction ----------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[Session]:
        """A session that only reads: on SQLite it takes no write lock, so that neither a
        scrape nor staff reading evidence ever waits for the tap path or makes it wait."""
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            yield session

    def _lock(self, session: Session, card: str) -> dict[str, CardState]:
        """Lock the card and the card that holds its balance now together, in sorted
        order as the tap path and a replacement do (so that none of them deadlocks with
        a refund), and return their states."""
        target = replacement_of(session, card)
        states = self.ledger.lock_cards(session, [card, target])
        # A replacement committed between the look-up and the lock: lock its card too.
        # Once both are held the chain cannot move (a replacement locks both its cards).
        newer = replacement_of(session, card)
        if newer != target:
            states = self.ledger.lock_cards(session, [card, target, newer])
        return states

    def _issued(self, session: Session, card: str) -> str | None:
        """The service date the card was issued on, or of its first tap when that is
        earlier (a tap it was charged for shows it existed then)."""
        created = session.scalar(select(Card.created_ms).where(Card.card == card))
        first = session.scalar(select(func.min(TapRecord.service_date)).where(
            TapRecord.card == card, TapRecord.status != evidence.REJECTED))
        days = [str(first)] if first is not None else []
        if created is not None:
            days.append(self.policy.service_date(int(created)).isoformat())
        return min(days) if days else None

    def _charged(self, session: Session, card: str, service_date: str | None,
                 tap_id: str | None) -> int:
        """What the card was charged: for the tap, or for the whole service day."""
        query = select(func.coalesce(func.sum(Entry.amount), 0)).where(
            Entry.card == card, Entry.kind.in_(CHARGES))
        query = query.where(Entry.tap_id == tap_id) if tap_id is not None else query.where(
            Entry.service_date == service_date)
        return int(session.scalar(query) or 0)

    def _refunded(self, session: Session, row: Dispute, tap_id: str | None) -> int:
        """What earlier answers refunded: for the tap, or for any dispute of the day."""
        query = select(func.coalesce(func.sum(Dispute.amount), 0)).where(
            Dispute.card == row.card, Dispute.decision == "refund", Dispute.id != row.id)
        query = query.where(Dispute.tap_id == tap_id) if tap_id is not None else query.where(
            Dispute.service_date == row.service_date)
        return int(session.scalar(query) or 0)

    def _refunded_day_only(self, session: Session, row: Dispute) -> int:
        """What earlier answers to disputes on the whole service day (no tap named)
        refunded."""
        return int(session.scalar(select(func.coalesce(func.sum(Dispute.amount), 0)).where(
            Dispute.card == row.card, Dispute.decision == "refund", Dispute.id != row.id,
            Dispute.tap_id.is_(None), Dispute.service_date == row.service_date)) or 0)

    def _bound(self, session: Session, row: Dispute) -> int:
        """The most a refund of this dispute may give back.

        A tap's bound is its net charge less its earlier refunds, and never more than
        what is left of its day's (a day's refund gives back part of every tap of it)."""
        bound = refund_bound(self._charged(session, row.card, row.service_date, None),
                             self._refunded(session, row, None))
        if row.tap_id is not None:
            bound = min(bound, refund_bound(
                self._charged(session, row.card, row.service_date, row.tap_id),
                self._refunded(session, row, row.tap_id)))
        return bound

    def _operator_route(self, session: Session, row: Dispute) -> tuple[str, str | None]:
        """Whose revenue a refund gives back: the disputed tap's fare entry's operator
        and route; for a day, those of the day's largest charge."""
        tap_id = row.tap_id
        if tap_id is None:
            nets = dict(session.execute(
                select(Entry.tap_id, func.sum(Entry.amount))
                .where(Entry.card == row.card, Entry.service_date == row.service_date,
                       Entry.kind.in_(CHARGES), Entry.tap_id.is_not(None))
                .group_by(Entry.tap_id)).all())
            tap_id = largest_charge({str(t): int(a) for t, a in nets.items()})
        found = None if tap_id is None else session.execute(
            select(Entry.operator_id, Entry.route_id)
            .where(Entry.tap_id == tap_id, Entry.card == row.card, Entry.kind.in_(CHARGES))
            # The fare entry first; a correction's only when there is none.
            .order_by(case((Entry.kind == "fare", 0), else_=1), Entry.id).limit(1)).first()
        return ("", None) if found is None else (found[0] or "", found[1])

    def _refund(self, session: Session, row: Dispute, states: dict[str, CardState],
                amount: int, message: str, answered_by: str) -> None:
        """Post the refund to the card that holds the balance now (locked by `_lock`) and
        record the answer."""
        operator_id, route_id = self._operator_route(session, row)
        # A card reported lost and replaced can no longer ride: its refund goes where its
        # balance went, to the card that replaced it (and on, should that one have been
        # replaced too), so the money reaches a card the rider holds.
        target = replacement_of(session, row.card)
        state = states[target]
        draft = refund_entry(dispute_id=row.id, card=target, amount=amount,
                             currency=self.policy.currency, operator_id=operator_id,
                             route_id=route_id, category=state.category,
                             service_date=row.service_date)
        posted = self.ledger.post(session, [draft], {target: state.account_id})
        # Back above the lowest fare, the card leaves the deny list (unless blocked).
        refresh_denylist(session, self.policy, [target],
                         fingerprints=self.ledger.fingerprints)
        self._record_answer(row, "refund", amount, message, answered_by, posted.entry_ids[0])

    def _record_answer(self, row: Dispute, decision: str, amount: int, message: str,
                       answered_by: str, entry_id: int | None) -> None:
        # Never before it was opened, should this host's clock be behind the opener's.
        row.answered_ms = max(self.clock(), row.created_ms)
        row.decision, row.amount, row.answer = decision, amount, message
        row.answered_by, row.entry_id = answered_by, entry_id

    def _audit_answer(self, session: Session, row: Dispute, actor: Actor) -> None:
        """Record an answer in its transaction, after the refund's and the answer's
        writes."""
        audit.record(session, self.ledger.fingerprints, actor, "dispute.answered",
                     f"dispute:{row.id}", {"card": row.card, "decision": row.decision,
                                           "amount": row.amount, "entry_id": row.entry_id})

    def _answer_if_proved(self, session: Session, row: Dispute,
                          states: dict[str, CardState]) -> bool:
        """Refund a charged_twice dispute at once when the ledger holds more for the tap
        (or the day) than the fare rules charge now, up to the refund bound, and only
        when no earlier answer refunded anything for it (a person answers then); whether
        it was answered."""
        assert row.service_date is not None
        # Refund entries carry no tap, so the overcharge the ledger shows stays after a
        # refund: what the tap's and its day's disputes refunded must count against it.
        refunded = self._refunded(session, row, None) if row.tap_id is None else (
            self._refunded(session, row, row.tap_id) + self._refunded_day_only(session, row))
        taps = evidence.day_taps(session, row.card, row.service_date)
        price = evidence.price_of_day(self.policy, states[row.card].category, taps)
        held = {t: a.net for t, a in self.ledger.tap_amounts(
            session, [(row.card, row.service_date)]).items()}
        excess = overcharge(held, {t: c.amount for t, c in price.charges.items()},
                            row.tap_id)
        amount = auto_refund(excess, refunded, self._bound(session, row))
        if amount > 0:
            self._refund(session, row, states, amount,
                         auto_answer(amount, explain.DEFAULT_LANGUAGE), AUTO)
        return amount > 0

    def _evidence(self, session: Session, record: DisputeRecord, lang: str) -> dict[str, Any]:
        category = session.scalar(select(Card.category).where(Card.card == record.card)) \
            or self.policy.default_category
        day = record.service_date or ""
        taps = evidence.day_taps(session, record.card, day)
        price = evidence.price_of_day(self.policy, category, taps)
        held = {t: a.net for t, a in self.ledger.tap_amounts(
            session, [(record.card, day)]).items()}
        tap = None if record.tap_id is None else session.get(TapRecord, record.tap_id)
        if tap is None:
            return {"tap": None, "receipt": None, "positions": None, "validator": None,
                    "explanation": evidence.explain_day(self.policy, taps, price, held, lang)}
        device = session.get(Device, tap.device_id)
        return {
            "tap": evidence.tap_evidence(tap, device, self.key),
            "receipt": evidence.receipt_evidence(tap, self.policy.currency),
            "positions": evidence.positions_evidence(self.track, tap),
            "validator": evidence.validator_evidence(session, tap, device),
            "explanation": evidence.explain_charge(tap, price.charges.get(tap.tap_id),
                                                   held.get(tap.tap_id, 0), lang),
        }

