"""Manual adjustments under four eyes (contract section 9): one finance holder asks for
an adjustment of a card's balance, another approves it, and only then is it posted.

    pending --approve (another holder)--> posted    (one `adjustment` entry)
    pending --reject  (another holder)--> rejected  (nothing posted)

* Asking posts nothing. The `reference` names the adjustment for good: asking again
  with the same reference and the same card, amount and reason gives the same
  adjustment back; with anything else, a conflict.
* Every step is taken with a named finance token (`transit tokens create --role finance
  --name NAME`): an unnamed token is refused, as two unnamed tokens of one person could
  not be told apart. The holder who asked may neither approve nor reject it: not with
  the same token, nor with another token naming the same holder (names compared as a
  person reads them, `fare_gateway.finance.text.holder_key`).
* A card lost and replaced holds nothing any more (its balance moved to the card that
  replaced it): asking for, or approving, an adjustment of it is refused, naming the
  replacement. A card merely blocked may still be adjusted.
* Each row carries a keyed fingerprint of all its fields (`FIELDS`), set on every write;
  a row that does not match it (inserted or edited with plain SQL: a pending adjustment
  "asked by" a colleague, an amount raised) is neither approved nor rejected, and
  `transit reconcile` names it (`fare_gateway.finance.integrity`).
* Approving locks the adjustment's row, so of two approvals at once one posts and the
  other, let in once the first has committed, finds it posted and answers the same:
  the entry (`ledger.domain.adjustment_entry`, keyed by the reference) is posted once.
* A debit may not take the card below zero: approving one larger than the card's
  balance at that moment is refused and the adjustment stays pending (it may be
  approved once the card holds enough, or rejected).
* Every step that changes something is written to the audit trail in its own
  transaction (`adjustment.requested`, `adjustment.approved`, `adjustment.rejected`);
  a replay that changes nothing writes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import Adjustment
from fare_gateway.cards import MAX_TOPUP, REFERENCE, CardError, parse_card
from fare_gateway.denylist import refresh_denylist
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.finance.errors import (
    BadValue,
    Conflict,
    NotFound,
    SameHolder,
    UnnamedHolder,
)
from fare_gateway.finance.text import has_control, holder_key
from fare_gateway.riders.dispute_office import replacement_of
from fare_gateway.riders.times import iso_z
from ledger import audit
from ledger.adapters.db import READS_ONLY, Sessions
from ledger.adapters.models import Card
from ledger.audit import Actor
from ledger.domain import adjustment_entry
from ledger.fingerprint import Fingerprints
from ledger.services import Ledger, retry_once_on_race

MAX_REASON = 500
MAX_AMOUNT = MAX_TOPUP  # either way: a registered e-money account holds at most this
STATUSES = ("pending", "posted", "rejected")
MAX_LISTED = 500
TABLE = "adjustments"
# What a row's fingerprint covers: every field, the decision included, so that no field
# of a pending or a decided adjustment can be changed behind the application's back.
FIELDS = ("id", "card", "amount", "reason", "reference", "requested_by", "requested_name",
          "requested_ms", "status", "decided_by", "decided_name", "decided_ms", "entry_id")
UNNAMED = ("adjustments need a named finance token: transit tokens create --role finance "
           "--name NAME")


@dataclass(frozen=True)
class Ask:
    """An adjustment as asked for, checked."""

    card: str
    amount: int  # what the card gains; negative: a debit
    reason: str
    reference: str


@dataclass(frozen=True)
class Holder:
    """Who holds a staff token: its id and the name it was made for."""

    token_id: str
    name: str = ""


@dataclass(frozen=True)
class AdjustmentRecord:
    """An adjustment as recorded, safe to use once its session has closed."""

    adjustment_id: int
    card: str
    amount: int
    reason: str
    reference: str
    status: str
    requested_ms: int
    requested_by: Holder
    decided_ms: int | None = None
    decided_by: Holder | None = None
    entry_id: int | None = None

    def as_json(self, currency: str) -> dict[str, Any]:
        """The adjustment as the API shows it."""
        decided = self.decided_by
        return {"adjustment_id": self.adjustment_id, "status": self.status,
                "card": self.card, "amount": self.amount, "currency": currency,
                "reason": self.reason, "reference": self.reference,
                "requested_by": {"token_id": self.requested_by.token_id,
                                 "name": self.requested_by.name},
                "requested_at": iso_z(self.requested_ms),
                "decided_by": None if decided is None else {"token_id": decided.token_id,
                                                            "name": decided.name},
                "decided_at": None if self.decided_ms is None else iso_z(self.decided_ms),
                "entry_id": self.entry_id}


# -- the rules -------------------------------------------------------------------------

def parse_ask(card: object, amount: object, reason: object, reference: object) -> Ask:
    """An adjustment's card, amount, reason and reference, checked; BadValue (a 422)
    saying what is wrong."""
    try:
        token = parse_card(card)
    except CardError as exc:
        raise BadValue(exc.code, str(exc)) from None
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise BadValue("bad_amount", "amount must be a whole number of rupiah")
    if amount == 0 or abs(amount) > MAX_AMOUNT:
        raise BadValue("bad_amount", f"amount must be from -{MAX_AMOUNT} to {MAX_AMOUNT} and "
                                     "not 0 (negative: a debit)")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise BadValue("bad_reason", f"reason must say why, in 1-{MAX_REASON} characters")
    if has_control(reason):
        raise BadValue("bad_reason", "reason must be one line of text, without control "
                                     "characters")
    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        raise BadValue("bad_reference",
                       "reference must be 1-64 characters of A-Z a-z 0-9 . _ : / -")
    return Ask(token, amount, reason, reference)


def same_holder(a: Holder, b: Holder) -> bool:
    """Whether two tokens stand for one holder: the same token, or the same non-empty
    name as a person reads it (`holder_key`)."""
    if a.token_id == b.token_id:
        return True
    name_a, name_b = holder_key(a.name), holder_key(b.name)
    return bool(name_a) and name_a == name_b


def check_named(holder: Holder) -> None:
    """Refuse a token made without a holder's name (UnnamedHolder, a 403): four eyes
    cannot tell two unnamed tokens of one person apart."""
    if not holder_key(holder.name):
        raise UnnamedHolder("unnamed_holder", UNNAMED)


def same_ask(record: AdjustmentRecord, ask: Ask) -> bool:
    """Whether an ask repeats the adjustment already recorded under its reference."""
    return (record.card, record.amount, record.reason) == (ask.card, ask.amount, ask.reason)


def check_decider(record: AdjustmentRecord, decider: Holder) -> None:
    """Refuse a decision by the holder who asked (SameHolder, a 403)."""
    if same_holder(record.requested_by, decider):
        raise SameHolder("same_holder", f"adjustment {record.adjustment_id} was asked for by "
                                        "this holder: another finance holder must decide it")


def may_post(amount: int, balance: int) -> bool:
    """Whether an adjustment of `amount` may be posted on a card holding `balance`: a
    debit may not take the card below zero."""
    return amount >= 0 or balance + amount >= 0


def holder_of(actor: Actor) -> Holder:
    """The holder a token's actor stands for."""
    return Holder(actor.id, actor.name)


def fields_of(row: Adjustment) -> dict[str, object]:
    """A row's fingerprinted fields, by name."""
    return {name: getattr(row, name) for name in FIELDS}


def adjustment_mac(fingerprints: Fingerprints, fields: Mapping[str, object]) -> str:
    """The keyed fingerprint of an adjustment's row (its `FIELDS`)."""
    return fingerprints.of(TABLE, *(fields[name] for name in FIELDS))


def seal(row: Adjustment, fingerprints: Fingerprints) -> None:
    """Set a row's fingerprint once its fields are final (its id assigned)."""
    row.mac = adjustment_mac(fingerprints, fields_of(row))


def check_sealed(row: Adjustment, fingerprints: Fingerprints) -> None:
    """Refuse to decide a row that does not match its fingerprint (Conflict, a 409)."""
    fields = fields_of(row)
    if not fingerprints.matches(row.mac, TABLE, *(fields[name] for name in FIELDS)):
        raise Conflict("adjustment_tampered", f"adjustment {row.id} does not match its "
                       "fingerprint: it was written or changed behind the application's "
                       "back, and cannot be decided (transit reconcile names it)")


def check_not_replaced(session: Session, card: str, step: str) -> None:
    """Refuse an adjustment of a card lost and replaced (Conflict, a 409): its balance
    is on the replacement now, and a credit to the dead card would help no one."""
    now = replacement_of(session, card)
    if now != card:
        raise Conflict("card_replaced", f"card {card} was replaced by card {now}, which "
                       f"holds its balance now: {step} an adjustment of card {now}")


def record_of(row: Adjustment) -> AdjustmentRecord:
    """A snapshot of an adjustment's row."""
    decided = None if row.decided_by is None else Holder(row.decided_by,
                                                         row.decided_name or "")
    return AdjustmentRecord(row.id, row.card, row.amount, row.reason, row.reference,
                            row.status, row.requested_ms,
                            Holder(row.requested_by, row.requested_name or ""),
                            row.decided_ms, decided, row.entry_id)


# -- the use cases ---------------------------------------------------------------------

class AdjustmentOffice:
    """The adjustment use cases, each in one transaction of its own."""

    def __init__(self, sessions: Sessions, ledger: Ledger, policy: FarePolicy,
                 clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy
        self.clock = clock

    def ask(self, actor: Actor, card: object, amount: object, reason: object,
            reference: object) -> tuple[AdjustmentRecord, bool]:
        """Ask for an adjustment (nothing is posted); returns it and whether it is new.
        The same reference again, for the same adjustment, returns the first."""
        check_named(holder_of(actor))
        wanted = parse_ask(card, amount, reason, reference)
        fingerprints = self.ledger.fingerprints

        def ask() -> tuple[AdjustmentRecord, bool]:
            with self.sessions.begin() as session:
                if session.get(Card, wanted.card) is None:
                    raise NotFound("not_found", f"no card {wanted.card}")
                found = session.scalar(select(Adjustment)
                                       .where(Adjustment.reference == wanted.reference))
                if found is not None:
                    record = record_of(found)
                    if not same_ask(record, wanted):
                        raise Conflict("reference_conflict", f"reference {wanted.reference!r} "
                                       f"names adjustment {record.adjustment_id}, of another "
                                       "card, amount or reason")
                    return record, False
                check_not_replaced(session, wanted.card, "ask for")
                row = Adjustment(card=wanted.card, amount=wanted.amount, reason=wanted.reason,
                                 reference=wanted.reference, status="pending",
                                 requested_ms=self.clock(), requested_by=actor.id[:32],
                                 requested_name=actor.name[:100])
                session.add(row)
                session.flush()  # the id, which the fingerprint covers
                seal(row, fingerprints)
                audit.record(session, fingerprints, actor,
                             "adjustment.requested", f"adjustment:{row.id}",
                             {"card": row.card, "amount": row.amount, "reason": row.reason,
                              "reference": row.reference})
                return record_of(row), True

        # Two asks with one reference may race to its unique key: the loser, run again,
        # finds the winner's adjustment and answers as a replay (or a conflict).
        return retry_once_on_race(ask)

    def approve(self, actor: Actor, adjustment_id: int) -> tuple[AdjustmentRecord, bool]:
        """Approve and post an adjustment; returns it and whether this call posted it.
        Approving a posted one again returns it as it is."""
        decider = holder_of(actor)
        check_named(decider)
        with self.sessions.begin() as session:
            row = self._locked(session, adjustment_id)
            record = record_of(row)
            check_decider(record, decider)
            if row.status == "posted":
                return record, False
            if row.status == "rejected":
                raise Conflict("already_rejected",
                               f"adjustment {adjustment_id} was rejected: ask for a new one")
            state = self.ledger.lock_cards(session, [row.card])[row.card]
            # Under the card's lock: a replacement moves the balance holding it too, so
            # none can slip in between this check and the posting.
            check_not_replaced(session, row.card, "reject this one and ask for")
            if not may_post(row.amount, state.balance):
                raise Conflict("insufficient_balance",
                               f"card {row.card} holds {state.balance}, less than the debit "
                               f"of {-row.amount}: the adjustment stays pending")
            posted = self.ledger.post(session, [adjustment_entry(
                adjustment_id=row.id, card=row.card, amount=row.amount,
                reference=row.reference, currency=self.ledger.currency)],
                {row.card: state.account_id})
            row.status, row.entry_id = "posted", posted.entry_ids[0]
            row.decided_ms, row.decided_by = self.clock(), decider.token_id[:32]
            row.decided_name = decider.name[:100]
            seal(row, self.ledger.fingerprints)
            session.flush()
            # A credit may take the card off the deny list, a debit put it on.
            refresh_denylist(session, self.policy, [row.card],
                             fingerprints=self.ledger.fingerprints)
            audit.record(session, self.ledger.fingerprints, actor, "adjustment.approved",
                         f"adjustment:{row.id}",
                         {"card": row.card, "amount": row.amount, "reference": row.reference,
                          "entry_id": row.entry_id, "requested_by": row.requested_by,
                          "requested_name": row.requested_name})
            return record_of(row), True

    def reject(self, actor: Actor, adjustment_id: int, note: str = ""
               ) -> tuple[AdjustmentRecord, bool]:
        """Reject a pending adjustment; returns it and whether this call rejected it.
        Rejecting a rejected one again returns it as it is."""
        decider = holder_of(actor)
        check_named(decider)
        with self.sessions.begin() as session:
            row = self._locked(session, adjustment_id)
            record = record_of(row)
            check_decider(record, decider)
            if row.status == "rejected":
                return record, False
            if row.status == "posted":
                raise Conflict("already_posted", f"adjustment {adjustment_id} was posted "
                                                 f"(entry {row.entry_id}): ask for another "
                                                 "to undo it")
            row.status = "rejected"
            row.decided_ms, row.decided_by = self.clock(), decider.token_id[:32]
            row.decided_name = decider.name[:100]
            seal(row, self.ledger.fingerprints)
            session.flush()
            audit.record(session, self.ledger.fingerprints, actor, "adjustment.rejected",
                         f"adjustment:{row.id}",
                         {"card": row.card, "amount": row.amount, "reference": row.reference,
                          "note": note})
            return record_of(row), True

    def show(self, adjustment_id: int) -> AdjustmentRecord:
        """One adjustment; NotFound if there is none."""
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            row = session.get(Adjustment, adjustment_id)
            if row is None:
                raise NotFound("not_found", f"no adjustment {adjustment_id}")
            return record_of(row)

    def listed(self, status: str | None, limit: int = MAX_LISTED
               ) -> tuple[list[AdjustmentRecord], bool]:
        """Adjustments in `status` (None: all), oldest first, at most `limit`; and
        whether there were more."""
        stmt = select(Adjustment).order_by(Adjustment.id).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(Adjustment.status == status)
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            rows = [record_of(row) for row in session.scalars(stmt)]
        return rows[:limit], len(rows) > limit

    def _locked(self, session: Session, adjustment_id: int) -> Adjustment:
        # populate_existing: a second approver let in after the first's commit must see
        # the row as committed, not as this session may have loaded it before the lock.
        row = session.scalar(select(Adjustment).where(Adjustment.id == adjustment_id)
                             .with_for_update().execution_options(populate_existing=True))
        if row is None:
            raise NotFound("not_found", f"no adjustment {adjustment_id}")
        check_sealed(row, self.ledger.fingerprints)
        return row
