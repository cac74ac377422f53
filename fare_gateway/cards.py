"""Card use cases shared by the HTTP API and the command line: issue, top up, block,
show a card and list its taps.

The functions run in the caller's transaction and bring the deny list in step; the
`CardOffice` runs each use case in a transaction of its own, retries a lost race on a
unique key and says what went wrong in the card's terms, so that the views and the
commands only parse, call and show. The checks of a card token and of a top-up live
here too, so that every way in refuses the same input with the same words.

Every change is written to the audit trail (`ledger.audit`) in the change's own
transaction, after its writes, naming the `Actor` the caller must give (there is no
unaudited way to change a card): `card.issued`, `card.topped_up`, `card.blocked`,
`card.unblocked`, `card.check_code_reissued`, or the action a caller names for a block
of its own (`rider.card_lost`). A request that changes nothing (a top-up replayed, a
card blocked twice) writes nothing. A check code never reaches the trail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import CardLoss, CheckCode, TapRecord
from fare_gateway.denylist import refresh_denylist
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.riders.passwords import hash_secret, new_check_code
from ledger import audit, services
from ledger.adapters.db import Sessions
from ledger.adapters.models import Card, Entry
from ledger.audit import Actor
from ledger.domain import CardState
from ledger.fingerprint import Fingerprints
from ledger.services import CardNotFound, Ledger, TopupResult, now_ms, retry_once_on_race
from transit.wire import CARD_PATTERN

REFERENCE = re.compile(r"[A-Za-z0-9._:/-]{1,64}")
MAX_TOPUP = 10_000_000  # one top-up; a registered e-money account in Indonesia holds at most this


class CardError(ValueError):
    """A card request that cannot be done; `code` says which kind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def card_state(row: Card) -> CardState:
    """A snapshot of a card row, safe to use after its session has closed."""
    return CardState(row.card, row.category, row.status, row.balance, row.account_id)


@dataclass(frozen=True)
class CardTap:
    """One tap of a card, with what it costs now (after any later correction)."""

    tap_id: str
    ts: int
    device_id: str
    vehicle_id: str
    route_id: str
    kind: str
    accepted: bool
    fare: int
    status: str
    service_date: str
    reason: str | None = None  # why the reader refused it (a denied tap), else None


def parse_card(value: object) -> str:
    """A card token (8-32 upper-case hex digits); raises CardError("bad_card") otherwise."""
    if not isinstance(value, str) or not CARD_PATTERN.fullmatch(value):
        raise CardError("bad_card", "card must be 8-32 upper-case hex digits")
    return value


def parse_topup(amount: object, reference: object) -> tuple[int, str]:
    """A top-up's amount and reference, checked; raises CardError saying what is wrong."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise CardError("bad_amount", "amount must be a whole number of rupiah")
    if not 0 < amount <= MAX_TOPUP:
        raise CardError("bad_amount", f"amount must be between 1 and {MAX_TOPUP}")
    if not isinstance(reference, str) or not REFERENCE.fullmatch(reference):
        raise CardError("bad_reference",
                        "reference must be 1-64 characters of A-Z a-z 0-9 . _ : / -")
    return amount, reference


@dataclass(frozen=True)
class IssuedCard:
    """A card just issued, and its check code: the one time the code is shown."""

    state: CardState
    check_code: str


def issue_card(session: Session, ledger: Ledger, policy: FarePolicy, card: str,
               category: str | None, code_hash: str | None = None, *,
               actor: Actor) -> Card:
    """Issue a card, audited as `actor`'s (`card.issued`); with no money on it, it starts
    on the deny list. With `code_hash` (`hash_secret` of its check code, made before the
    transaction: it is slow) the card gets that check code."""
    category = policy.default_category if category is None else category
    if category not in policy.categories:
        raise CardError("bad_category",
                        f"category must be one of {', '.join(policy.categories)}")
    row = ledger.open_card(session, card, category)
    if code_hash is not None:
        _store_code(session, card, code_hash)
    refresh_denylist(session, policy, [card], fingerprints=ledger.fingerprints)
    audit.record(session, ledger.fingerprints, actor, "card.issued", card,
                 {"category": category})
    return row


def store_check_code(session: Session, fingerprints: Fingerprints, card: str,
                     code_hash: str, *, actor: Actor) -> None:
    """Give a card the check code of this hash, voiding the one it had; audited as
    `actor`'s (`card.check_code_reissued`, the code itself never recorded)."""
    _store_code(session, card, code_hash)
    audit.record(session, fingerprints, actor, "card.check_code_reissued", card)


def _store_code(session: Session, card: str, code_hash: str) -> None:
    if session.get(Card, card, with_for_update=True) is None:
        raise CardNotFound(f"no card {card}")
    row = session.get(CheckCode, card)
    if row is None:
        session.add(CheckCode(card=card, code_hash=code_hash, created_ms=now_ms()))
    else:
        row.code_hash, row.created_ms = code_hash, now_ms()
    session.flush()


def topup_card(session: Session, ledger: Ledger, policy: FarePolicy, card: str, amount: int,
               reference: str, *, actor: Actor) -> TopupResult:
    """Credit a card once per reference, audited as `actor`'s (`card.topped_up`); a card
    back above its lowest fare leaves the list. A replay credits and records nothing."""
    result = ledger.topup(session, card, amount, reference)
    if result.created:
        refresh_denylist(session, policy, [card], fingerprints=ledger.fingerprints)
        audit.record(session, ledger.fingerprints, actor, "card.topped_up", card,
                     {"amount": result.amount, "reference": result.reference,
                      "entry_id": result.entry_id})
    return result


STATUS_ACTIONS = {"blocked": "card.blocked", "active": "card.unblocked"}


def set_card_status(session: Session, ledger: Ledger, policy: FarePolicy, card: str,
                    status: str, *, actor: Actor, action: str | None = None,
                    detail: Mapping[str, object] | None = None) -> Card:
    """Block (`blocked`) or unblock (`active`) a card, its fingerprint with it; a change
    of status is audited as `actor`'s (`card.blocked`, `card.unblocked` with `from` and
    `to`, or `action` with `detail` when the caller names its own, such as a rider's
    report of a lost card). Setting the status it has records nothing."""
    if status not in STATUS_ACTIONS:
        raise CardError("bad_status", f"status must be one of {', '.join(STATUS_ACTIONS)}")
    # Locked and read afresh: the status it had until now, whatever this session held.
    current = session.get(Card, card, with_for_update=True, populate_existing=True)
    if current is None:
        raise CardNotFound(f"no card {card}")
    was = current.status
    # The ledger sets the status with the card's fingerprint (`cards.mac`), which
    # `transit reconcile` checks: a status written here alone would read as tampering.
    row = services.set_card_status(session, ledger.fingerprints, card, status)
    if status == "active":
        # A card found again and unblocked is no longer lost: a later block by staff
        # alone must not let it be replaced on the strength of the old report.
        loss = session.get(CardLoss, card)
        if loss is not None:
            session.delete(loss)
    session.flush()
    refresh_denylist(session, policy, [card], fingerprints=ledger.fingerprints)
    if was != status:
        audit.record(session, ledger.fingerprints, actor, action or STATUS_ACTIONS[status],
                     card, {"from": was, "to": status} if detail is None else detail)
    return row


def show_card(session: Session, card: str) -> CardState:
    """The card with this token; raises CardNotFound."""
    row = session.get(Card, card)
    if row is None:
        raise CardNotFound(f"no card {card}")
    return card_state(row)


def card_taps(session: Session, card: str) -> list[CardTap]:
    """Every tap of a card in event order, each with the net of its ledger entries.

    A rejected tap is left out: it broke a rule of contract section 10 (another
    vehicle's, or a time outside the window), so it says nothing true of the card; it is
    kept with the refused messages, for operations."""
    if session.get(Card, card) is None:
        raise CardNotFound(f"no card {card}")
    charged = (select(Entry.tap_id, func.sum(Entry.amount).label("fare"))
               .where(Entry.card == card, Entry.tap_id.is_not(None))
               .group_by(Entry.tap_id).subquery())
    rows = session.execute(
        select(TapRecord, func.coalesce(charged.c.fare, 0))
        .outerjoin(charged, charged.c.tap_id == TapRecord.tap_id)
        .where(TapRecord.card == card, TapRecord.status != "rejected")
        .order_by(TapRecord.ts, TapRecord.device_id, TapRecord.seq)).all()
    return [CardTap(t.tap_id, t.ts, t.device_id, t.vehicle_id, t.route_id, t.kind,
                    t.accepted, int(fare), t.status, t.service_date, t.reason)
            for t, fare in rows]


class CardOffice:
    """The card use cases, each in one transaction of its own: what the API and the
    commands call.

    It raises `CardError` for bad input, `CardExists`, `CardNotFound` and
    `IdempotencyConflict` (a reference used for another amount); a race lost on a
    unique key is run again, never shown.
    """

    def __init__(self, sessions: Sessions, ledger: Ledger, policy: FarePolicy) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy

    def issue(self, card: object, category: object, actor: Actor) -> IssuedCard:
        """Issue a card (the policy's default category when `category` is None), with a
        new check code."""
        token = parse_card(card)
        if category is not None and not isinstance(category, str):
            raise CardError("bad_category", "category must be a string")
        code = new_check_code()
        code_hash = hash_secret(code)

        def issue() -> IssuedCard:
            with self.sessions.begin() as session:
                return IssuedCard(card_state(issue_card(session, self.ledger, self.policy,
                                                        token, category, code_hash,
                                                        actor=actor)), code)

        # Issued by someone else at this very moment: run again, it finds that card.
        return retry_once_on_race(issue)

    def new_check_code(self, card: object, actor: Actor) -> str:
        """Give a card a new check code, voiding its old one; the code is shown once."""
        token = parse_card(card)
        code = new_check_code()
        code_hash = hash_secret(code)
        with self.sessions.begin() as session:
            store_check_code(session, self.ledger.fingerprints, token, code_hash,
                             actor=actor)
        return code

    def topup(self, card: object, amount: object, reference: object, actor: Actor
              ) -> TopupResult:
        """Credit a card once per reference; the same reference again credits nothing."""
        token = parse_card(card)
        checked_amount, checked_reference = parse_topup(amount, reference)

        def credit() -> TopupResult:
            with self.sessions.begin() as session:
                return topup_card(session, self.ledger, self.policy, token, checked_amount,
                                  checked_reference, actor=actor)

        # Two top-ups with one reference may race to its unique key: the loser, run
        # again, finds the winner's entry and answers as a replay (or a conflict).
        return retry_once_on_race(credit)

    def set_status(self, card: object, status: str, actor: Actor) -> CardState:
        """Block (`blocked`) or unblock (`active`) a card; doing it twice changes nothing."""
        token = parse_card(card)
        with self.sessions.begin() as session:
            return card_state(set_card_status(session, self.ledger, self.policy, token,
                                              status, actor=actor))

    def show(self, card: object) -> CardState:
        """The card with this token."""
        token = parse_card(card)
        with self.sessions() as session:
            return show_card(session, token)

    def taps(self, card: object) -> list[CardTap]:
        """Every tap of the card in event order, each with what it costs now."""
        token = parse_card(card)
        with self.sessions() as session:
            return card_taps(session, token)
