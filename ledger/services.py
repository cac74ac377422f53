"""Ledger use cases: open cards, post balanced entries exactly once, check invariants."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import case, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from ledger.adapters.bulk import bulk_insert, bulk_set, bulk_update, insert_entries_pg
from ledger.adapters.models import Account, Card, Entry, Posting
from ledger.adapters.sql import chunks, dialect_of, insert_ignore, one_of, parts
from ledger.domain import (
    CARD,
    AccountKey,
    CardState,
    EntryDraft,
    LedgerError,
    Posted,
    TapAmount,
    card_deltas,
    topup_entry,
)
from ledger.fingerprint import Fingerprints, card_mac
from ledger.integrity import entry_mac

T = TypeVar("T")
log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class CardExists(LedgerError):
    """A card with this token was already issued."""


class CardNotFound(LedgerError):
    """No card with this token."""


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for something else."""


@dataclass(frozen=True)
class TopupResult:
    card: str
    balance: int
    amount: int
    reference: str
    entry_id: int
    created: bool


class Ledger:
    """The only writer of money. Methods take the caller's session: one transaction per use."""

    def __init__(self, engine: Engine, currency: str,
                 clock: Callable[[], int] = lambda: now_ms(),
                 fingerprints: Fingerprints | None = None) -> None:
        self.engine = engine
        self.currency = currency
        self.clock = clock  # posting time, ms; settlement days follow it
        # Keyed under TRANSIT_SECRET_KEY (ledger.fingerprint); unkeyed when none is given.
        self.fingerprints = fingerprints or Fingerprints(None)
        self._accounts: dict[AccountKey, int] = {}
        self._lock = threading.Lock()

    # -- accounts -------------------------------------------------------------
    def account_ids(self, session: Session, keys: Iterable[AccountKey]) -> dict[AccountKey, int]:
        """Ids of non-card accounts, created on first use inside the caller's transaction.

        Ids enter the cache only once that transaction commits, so the cache never
        holds an account that a rolled-back transaction made.
        """
        wanted = set(keys)
        with self._lock:
            found = {k: self._accounts[k] for k in wanted if k in self._accounts}
        missing = wanted - found.keys()
        if missing:
            session.execute(insert_ignore(session, Account.__table__), [
                {"kind": k.kind, "ref": k.ref, "currency": self.currency,
                 "created_ms": now_ms()} for k in sorted(missing, key=lambda k: (k.kind, k.ref))])
            fresh: dict[AccountKey, int] = {}
            for kind, ref, account_id in session.execute(select(
                    Account.kind, Account.ref, Account.id).where(
                    Account.kind.in_({k.kind for k in missing}),
                    Account.ref.in_({k.ref for k in missing}))).all():
                key = AccountKey(kind, ref)
                if key in missing:
                    fresh[key] = account_id

            def remember(_session: Session) -> None:
                with self._lock:
                    self._accounts.update(fresh)

            event.listen(session, "after_commit", remember, once=True)
            found.update(fresh)
        return found

    # -- cards ----------------------------------------------------------------
    def open_card(self, session: Session, card: str, category: str) -> Card:
        """Issue a card with a zero balance and its own stored-value account."""
        if session.get(Card, card) is not None:
            raise CardExists(f"card {card} already exists")
        ts = now_ms()
        account = Account(kind=CARD, ref=card, currency=self.currency, created_ms=ts)
        session.add(account)
        session.flush()
        row = Card(card=card, category=category, status="active", account_id=account.id,
                   balance=0, created_ms=ts, head=None,
                   mac=card_mac(self.fingerprints, card, category, "active", account.id, None))
        session.add(row)
        session.flush()
        return row

    # -- reads for the tap path -------------------------------------------------
    def lock_cards(self, session: Session, cards: Iterable[str]) -> dict[str, CardState]:
        """Lock these cards in sorted order (so that concurrent gateways cannot deadlock)
        and return their state; a token that is no card is left out."""
        return card_states(session, cards, lock=True)

    def tap_amounts(self, session: Session, card_days: Collection[tuple[str, str]]
                    ) -> dict[str, TapAmount]:
        """What the ledger holds now for each tap of these (card, service date) pairs."""
        if not card_days:
            return {}
        wanted = set(card_days)
        cards = sorted({c for c, _ in wanted})
        dates = sorted({d for _, d in wanted})
        e = Entry.__table__.c
        conn = session.connection()
        # One pass over the entries: each tap's net amount, and the operator its fare
        # went to (at most one fare entry per tap: its idempotency key is unique).
        fare_operator = func.max(case((e.kind == "fare", e.operator_id)))
        found: dict[str, TapAmount] = {}
        for part in parts(conn, cards):
            sums = conn.execute(
                select(e.tap_id, e.card, e.service_date, func.sum(e.amount), fare_operator)
                .where(one_of(conn, e.card, part), one_of(conn, e.service_date, dates),
                       e.tap_id.is_not(None))
                .group_by(e.tap_id, e.card, e.service_date)).all()
            for tap_id, card, service_date, amount, operator in sums:
                if (card, service_date) in wanted:
                    found[tap_id] = TapAmount(int(amount), operator)
        return found

    # -- posting --------------------------------------------------------------
    def post(self, session: Session, drafts: Sequence[EntryDraft],
             card_accounts: Mapping[str, int] | None = None) -> Posted:
        """Append entries and their postings; keep card balances and the cards' chains in
        step. Returns the entry ids and the new balance of each card whose balance moved.

        Each entry is fingerprinted after the newest entry of its card (`entry.card`),
        whose fingerprint, the card's head, is read under the card's lock: the lock this
        transaction took with `lock_cards` (the head read then, no second read), or else
        taken here, in sorted order. Idempotency keys are unique in the database, so a
        second effect under the same key fails the whole transaction instead of moving
        money twice.
        """
        if not drafts:
            return Posted()
        for draft in drafts:
            if draft.currency != self.currency:
                raise LedgerError(f"{draft.idem_key}: currency {draft.currency} is not "
                                  f"the ledger's {self.currency}")
        chained = locked_states(session, {d.card for d in drafts if d.card is not None})
        card_accounts = {**{c: s.account_id for c, s in chained.items()},
                         **(card_accounts or {})}
        cards_needed = {p.account.ref for d in drafts for p in d.postings
                        if p.account.kind == CARD and p.account.ref not in card_accounts}
        if cards_needed:
            card_accounts.update(self._card_accounts(session, cards_needed))
        others = self.account_ids(session, (p.account for d in drafts for p in d.postings
                                  if p.account.kind != CARD))
        ts = self.clock()
        heads = {card: state.head for card, state in chained.items()}
        entry_rows: list[dict[str, Any]] = []
        postings: list[tuple[str, int, int]] = []  # (idem_key, account, amount)
        fp = self.fingerprints
        for d in drafts:
            own = [(card_accounts[p.account.ref] if p.account.kind == CARD
                    else others[p.account], p.amount) for p in d.postings]
            postings += [(d.idem_key, account, amount) for account, amount in own]
            prev = heads[d.card] if d.card is not None else None
            # The fields in ENTRY_FIELDS order (ledger.integrity), as the row below holds them.
            mac = entry_mac(fp, (d.idem_key, d.kind, d.digest, d.amount, ts, d.currency,
                                 d.card, d.tap_id, d.reference, d.service_date,
                                 d.operator_id, d.route_id, d.category), prev, own)
            if d.card is not None:
                heads[d.card] = mac  # the next entry of the card in this batch follows it
            entry_rows.append({
                "idem_key": d.idem_key, "kind": d.kind, "digest": d.digest,
                "amount": d.amount, "posted_ms": ts, "currency": d.currency, "card": d.card,
                "tap_id": d.tap_id, "reference": d.reference, "service_date": d.service_date,
                "operator_id": d.operator_id, "route_id": d.route_id, "category": d.category,
                "prev_mac": prev, "mac": mac})
        stored = _stored_macs(session)
        card_heads = {card: (head, _resigned(fp, state, stored.get(card),
                                             replace(state, head=head)))
                      for card, state in chained.items() if (head := heads[card]) is not None}
        deltas = card_deltas(drafts)
        if dialect_of(session) == "postgresql":
            keyed, balances = insert_entries_pg(session, Entry.__table__, Posting.__table__,
                                                Card.__table__, entry_rows, postings, deltas,
                                                card_heads)
        else:
            keyed = {key: entry_id for entry_id, key in bulk_insert(
                session, Entry.__table__, entry_rows, returning=("id", "idem_key"))}
            bulk_insert(session, Posting.__table__, [
                {"entry_id": keyed[key], "account_id": account_id, "amount": amount}
                for key, account_id, amount in postings])
            bulk_update(session, Card.__table__, "card", "balance", deltas, add=True)
            bulk_set(session, Card.__table__, "card", ("head", "mac"),
                     [(card, head, mac) for card, (head, mac) in sorted(card_heads.items())])
            moved = [card for card, delta in deltas.items() if delta]
            balances = {s.card: s.balance for s in card_states(session, moved).values()}
        _remember(session, {card: CardState(card, s.category, s.status, s.balance,
                                            s.account_id, heads[card])
                            for card, s in chained.items()},
                  {card: mac for card, (_, mac) in card_heads.items()})
        _expire_cards(session, {*deltas, *card_heads})
        return Posted(tuple(keyed[d.idem_key] for d in drafts), balances)

    def _card_accounts(self, session: Session, cards: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for part in chunks(sorted(cards)):
            found.update(session.execute(
                select(Card.card, Card.account_id).where(Card.card.in_(part))).all())
        missing = cards - found.keys()
        if missing:
            raise CardNotFound(f"no such card: {sorted(missing)[0]}")
        return found

    # -- top-ups --------------------------------------------------------------
    def topup(self, session: Session, card: str, amount: int, reference: str) -> TopupResult:
        """Credit a card once per reference: a replay returns the first result unchanged."""
        draft = topup_entry(card=card, amount=amount, reference=reference,
                            currency=self.currency)
        # Lock the card first: a concurrent top-up with the same reference then waits
        # here and, once it may go on, finds the first one's entry.
        state = self.lock_cards(session, [card]).get(card)
        if state is None:
            raise CardNotFound(f"no such card: {card}")
        existing = session.execute(
            select(Entry.id, Entry.digest).where(Entry.idem_key == draft.idem_key)).first()
        if existing is not None:
            if existing.digest != draft.digest:
                raise IdempotencyConflict(
                    f"reference {reference!r} was already used for another top-up")
            return TopupResult(card, state.balance, amount, reference, existing.id, False)
        posted = self.post(session, [draft])
        return TopupResult(card, posted.balances[card], amount, reference,
                           posted.entry_ids[0], True)


def card_states(session: Session, cards: Iterable[str], lock: bool = False
                ) -> dict[str, CardState]:
    """These cards' category, status, balance, account and chain head (locked in sorted
    order with `lock`, and then remembered for `Ledger.post` until the transaction
    ends)."""
    wanted = sorted(set(cards))
    if not wanted:
        return {}
    c = Card.__table__.c
    conn = session.connection()
    out: dict[str, CardState] = {}
    macs: dict[str, str | None] = {}
    for part in parts(conn, wanted):
        # The card's fingerprint comes with the same read (no round trip of its own):
        # `post` checks it before it signs the card's new head.
        stmt = (select(c.card, c.category, c.status, c.balance, c.account_id, c.head, c.mac)
                .where(one_of(conn, c.card, part)).order_by(c.card))
        for row in conn.execute(stmt.with_for_update() if lock else stmt):
            out[row[0]] = CardState(*row[:6])
            macs[row[0]] = row[6]
    if lock:
        _remember(session, out, macs)
    return out


# What this transaction read of the cards it locked, kept in the session for `post`:
# the tap path locks its cards first anyway, so their heads come with that read and the
# posting statement stays its one round trip. A lock lasts until the transaction ends,
# and every change this transaction makes to a locked card goes through this module
# (`post`, `set_card_status`), which keeps the record in step; a record from another
# transaction of the session is never used.
_LOCKED = "ledger.locked_cards"


def _kept(session: Session) -> tuple[dict[str, CardState], dict[str, str | None]] | None:
    kept = session.info.get(_LOCKED)
    if kept is None or kept[0] is not session.get_transaction():
        return None
    return kept[1], kept[2]


def _remembered(session: Session) -> dict[str, CardState]:
    kept = _kept(session)
    return {} if kept is None else kept[0]


def _stored_macs(session: Session) -> dict[str, str | None]:
    """The fingerprint each locked card holds now, as this transaction read or wrote it."""
    kept = _kept(session)
    return {} if kept is None else kept[1]


def _remember(session: Session, states: Mapping[str, CardState],
              macs: Mapping[str, str | None]) -> None:
    if not states:
        return
    transaction = session.get_transaction()
    kept = session.info.get(_LOCKED)
    if kept is None or kept[0] is not transaction:
        fresh: tuple[dict[str, CardState], dict[str, str | None]] = ({}, {})
        kept = session.info[_LOCKED] = (transaction, *fresh)
    kept[1].update(states)
    kept[2].update(macs)


# Cards this process has already warned about (bounded: a mass change is one warning per
# card up to this many, then silence; reconcile names every one of them anyway).
_WARNED: set[str] = set()
_WARNED_MAX = 10_000
_warned_lock = threading.Lock()


def _resigned(fingerprints: Fingerprints, was: CardState, stored: str | None,
              now: CardState) -> str | None:
    """The fingerprint a card read as `was`, holding `stored`, gets as `now` (a new head,
    category or status).

    A card whose stored fingerprint does not match the row as it was read was changed
    behind the application's back: signing the row anew would launder that change (a
    category set to senior, a blocked card set active, the head moved back over removed
    entries), so it keeps the fingerprint it has, which goes on failing, and reconcile
    goes on naming the card. Its money still moves: refusing its taps and top-ups would
    hand whoever can write the database a way to stop a card.
    """
    if fingerprints.matches(stored, "cards", was.card, was.category, was.status,
                            was.account_id, was.head):
        return card_mac(fingerprints, now.card, now.category, now.status, now.account_id,
                        now.head)
    with _warned_lock:
        first = was.card not in _WARNED and len(_WARNED) < _WARNED_MAX
        if first:
            _WARNED.add(was.card)
    if first:
        log.warning("card %s does not match its fingerprint (changed behind the "
                    "application's back?): it is not signed again; run transit reconcile",
                    was.card)
    return stored


def locked_states(session: Session, cards: Collection[str]) -> dict[str, CardState]:
    """These cards as this transaction holds them locked: those `lock_cards` (or this
    function) locked already, the others locked now in sorted order; CardNotFound for a
    token that is no card. Their `head` is current, their `balance` may not be."""
    known = _remembered(session)
    found = {card: known[card] for card in cards if card in known}
    missing = [card for card in cards if card not in known]
    if missing:
        found.update(card_states(session, missing, lock=True))
        absent = set(cards) - found.keys()
        if absent:
            raise CardNotFound(f"no such card: {sorted(absent)[0]}")
    return found


def _expire_cards(session: Session, cards: Iterable[str]) -> None:
    """Cards this session holds as objects no longer show what the Core statements above
    wrote: read them again on next use."""
    identities = session.identity_map
    if not identities:  # the tap path reads and writes cards through Core only
        return
    for card in cards:
        row = identities.get(identity_key(Card, card))
        if row is not None:
            session.expire(row, ["balance", "head", "mac"])


def set_card_status(session: Session, fingerprints: Fingerprints, card: str, status: str
                    ) -> Card:
    """Lock a card and set its status (`active` or `blocked`) and its fingerprint;
    CardNotFound if there is no such card."""
    return _set_card(session, fingerprints, card, status=status)


def set_card_category(session: Session, fingerprints: Fingerprints, card: str,
                      category: str) -> Card:
    """Lock a card and set its fare category and its fingerprint; CardNotFound if there
    is no such card."""
    return _set_card(session, fingerprints, card, category=category)


def _set_card(session: Session, fingerprints: Fingerprints, card: str, *,
              status: str | None = None, category: str | None = None) -> Card:
    row = session.get(Card, card, with_for_update=True, populate_existing=True)
    if row is None:
        raise CardNotFound(f"no card {card}")
    before = CardState(row.card, row.category, row.status, row.balance, row.account_id,
                       row.head)
    if status is not None:
        row.status = status
    if category is not None:
        row.category = category
    after = replace(before, category=row.category, status=row.status)
    row.mac = _resigned(fingerprints, before, row.mac, after)
    session.flush()
    _remember(session, {card: after}, {card: row.mac})
    return row


def retry_once_on_race(work: Callable[[], T]) -> T:
    """Run a transaction again if a concurrent one won a unique key race.

    The second run sees the winner's committed row and answers as a replay or conflict.
    """
    try:
        return work()
    except IntegrityError:
        return work()


def check_invariants(session: Session) -> list[str]:
    """Every entry balances and has postings; every card balance equals its postings."""
    problems: list[str] = []
    unbalanced = session.execute(
        select(Posting.entry_id, func.sum(Posting.amount)).group_by(Posting.entry_id)
        .having(func.sum(Posting.amount) != 0)).all()
    problems += [f"entry {eid} postings sum to {total}" for eid, total in unbalanced]
    bare = session.execute(
        select(Entry.id).where(~select(Posting.id).where(Posting.entry_id == Entry.id)
                               .exists())).scalars().all()
    problems += [f"entry {eid} has no postings" for eid in bare]
    sums = (select(Posting.account_id, func.coalesce(func.sum(Posting.amount), 0).label("s"))
            .group_by(Posting.account_id).subquery())
    drift = session.execute(
        select(Card.card, Card.balance, func.coalesce(sums.c.s, 0))
        .outerjoin(sums, sums.c.account_id == Card.account_id)
        .where(Card.balance != func.coalesce(sums.c.s, 0))).all()
    problems += [f"card {c} balance {b} but postings sum to {s}" for c, b, s in drift]
    return problems
