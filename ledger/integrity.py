"""The ledger's tamper evidence: what the keyed fingerprints of entries, cards and
settlement records cover, the chain of each card's entries, and the sealing of rows
written before fingerprints existed.

Every entry is fingerprinted (`ledger.fingerprint`) over its fields, its postings and
the fingerprint of the entry posted before it for the same card (`prev_mac`); the
card's `head` holds the fingerprint of its newest entry, under the card's own
fingerprint. Walking back from the head must reach every entry of the card exactly
once: an entry inserted, removed or re-linked behind the application's back breaks
the walk, in a settled day or in the open one. A settlement record is fingerprinted
over every column that says what was settled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from ledger.adapters.bulk import bulk_set
from ledger.adapters.models import Card, Entry, Posting, SettlementRecord
from ledger.fingerprint import Fingerprints, card_mac

# An entry's fields in the order its fingerprint takes them (its id is not among them:
# it is given by the database after the fingerprint is made).
ENTRY_FIELDS = ("idem_key", "kind", "digest", "amount", "posted_ms", "currency", "card",
                "tap_id", "reference", "service_date", "operator_id", "route_id",
                "category")
SETTLEMENT_FIELDS = ("business_date", "sha256", "previous_sha256", "entries_sha256",
                     "chain_sha256", "entries", "manifest")
# Cards (or entries without a card) sealed per statement: a part's entries are held in
# memory until they are written.
SEAL_ROWS = 500
# At most this many entry ids are named in one message; the rest are counted.
NAMED = 10


def entry_mac(fingerprints: Fingerprints, fields: Sequence[object], prev_mac: str | None,
              postings: Sequence[tuple[int, int]]) -> str:
    """The fingerprint of an entry: its ENTRY_FIELDS values, the fingerprint of its card's
    entry before it, and its postings as (account id, amount) in posting order."""
    return fingerprints.of("entries", *fields, prev_mac,
                           [[account_id, amount] for account_id, amount in postings])


def settlement_mac(fingerprints: Fingerprints, fields: Sequence[object]) -> str:
    """The fingerprint of a settlement record over its SETTLEMENT_FIELDS values."""
    return fingerprints.of("settlements", *fields)


def settlement_fields(record: SettlementRecord) -> list[object]:
    """A stored settlement record's SETTLEMENT_FIELDS values."""
    return [getattr(record, name) for name in SETTLEMENT_FIELDS]


# -- a card's chain, walked (pure) ------------------------------------------------------

@dataclass(frozen=True)
class Chained:
    """An entry as its card's chain sees it."""

    entry_id: int
    mac: str | None
    prev_mac: str | None


def _ids(entries: Sequence[Chained]) -> str:
    named = ", ".join(str(e.entry_id) for e in entries[:NAMED])
    more = len(entries) - NAMED
    return named + (f" and {more} more" if more > 0 else "")


def chain_problems(card: str, head: str | None, entries: Sequence[Chained]) -> list[str]:
    """What is wrong with a card's chain: from `head` back through each entry's
    `prev_mac`, every entry of the card (`entries`) must be reached exactly once, and the
    walk must end at the card's first entry (whose `prev_mac` is None)."""
    by_mac: dict[str, Chained] = {}
    for entry in entries:
        if entry.mac is not None:
            by_mac.setdefault(entry.mac, entry)
    problems: list[str] = []
    reached: set[int] = set()
    link: str | None = head
    after: Chained | None = None
    while link is not None:
        found = by_mac.get(link)
        if found is None:
            problems.append(
                f"card {card}: its chain's head is the fingerprint of no entry (its newest "
                "entries were removed, or the head was changed)" if after is None else
                f"card {card}: entry {after.entry_id} follows an entry that is not there "
                "(an entry was removed from the card's chain)")
            break
        if found.entry_id in reached:
            problems.append(f"card {card}: its chain loops back to entry {found.entry_id}")
            break
        reached.add(found.entry_id)
        link, after = found.prev_mac, found
    off = [e for e in entries if e.entry_id not in reached]
    if off:
        problems.append(f"card {card}: entry {_ids(off)} is not on the card's chain (posted "
                        "behind the application's back, or re-linked)" if len(off) == 1 else
                        f"card {card}: entries {_ids(off)} are not on the card's chain "
                        "(posted behind the application's back, or re-linked)")
    return problems


# -- sealing rows written before fingerprints ----------------------------------------

def _entries_of(session: Session, where: ColumnElement[bool]
                ) -> Iterator[tuple[Any, list[tuple[int, int]]]]:
    """The entries `where` selects, with their postings, in (card, id) order; one query,
    streamed. Consume it before writing: SQLite leaves a write to a table being read
    undefined."""
    e, p = Entry.__table__.c, Posting.__table__.c
    stmt = (select(*(e[name] for name in ("id", *ENTRY_FIELDS, "prev_mac", "mac")),
                   p.account_id.label("p_account"), p.amount.label("p_amount"))
            .select_from(Entry.__table__.outerjoin(Posting.__table__, p.entry_id == e.id))
            .where(where).order_by(e.card, e.id, p.id))
    current: Any = None
    postings: list[tuple[int, int]] = []
    for row in session.connection().execute(
            stmt.execution_options(stream_results=True, max_row_buffer=5000)):
        if current is None or row.id != current.id:
            if current is not None:
                yield current, postings
            current, postings = row, []
        if row.p_account is not None:
            postings.append((row.p_account, row.p_amount))
    if current is not None:
        yield current, postings


class _Links:
    """One card's chain as sealing walks its entries in id order."""

    def __init__(self) -> None:
        self.head: str | None = None  # the fingerprint of the newest entry, as sealed
        self.stored: str | None = None  # the fingerprint it had before (None: had none)
        self.legacy_only = True  # every entry so far had no fingerprint
        self.relinked = False  # the newest entry was re-linked

    def next(self, fingerprints: Fingerprints, entry_id: int, fields: Sequence[object],
             postings: Sequence[tuple[int, int]], prev_mac: str | None, mac: str | None
             ) -> list[tuple[int, str | None, str]]:
        """The entry's (id, prev_mac, mac) to write, if it changes."""
        if mac is None:
            new = entry_mac(fingerprints, fields, self.head, postings)
            out = [(entry_id, self.head, new)]
            self.head, self.stored, self.relinked = new, None, False
            return out
        # An entry the ledger fingerprinted while the card's head was still empty (its
        # legacy entries not yet sealed) started a chain of its own; it, and the
        # entries that followed it, are linked on after those legacy entries. Nothing
        # else is: an entry whose link is broken stays broken, for reconcile to name.
        follows = (prev_mac is None and self.legacy_only and self.head is not None) or (
            prev_mac is not None and self.relinked and prev_mac == self.stored)
        if follows and fingerprints.matches(mac, "entries", *fields, prev_mac,
                                            [[a, n] for a, n in postings]):
            new = entry_mac(fingerprints, fields, self.head, postings)
            out = [(entry_id, self.head, new)]
            self.head, self.stored, self.relinked = new, mac, True
        else:
            out = []
            self.head, self.stored, self.relinked = mac, mac, False
        self.legacy_only = False
        return out


def seal_legacy(session: Session, fingerprints: Fingerprints) -> dict[str, int]:
    """Fingerprint the rows written before fingerprints existed (a NULL `mac`), with
    this run's key, in the caller's transaction: each card's entries chained in id
    order, the cards, the settlement records. Returns how many of each it sealed;
    running it again seals nothing.

    A row already fingerprinted is fingerprinted anew only when its fingerprint holds
    and its card's legacy entries came before it unsealed (`_Links`): a changed row,
    or a chain broken, stays caught.
    """
    counts = {"entries": 0, "cards": 0, "settlements": 0}
    c = Card.__table__.c
    e = Entry.__table__.c
    legacy_cards = set(session.scalars(select(c.card).where(c.mac.is_(None))))
    legacy_cards.update(session.scalars(
        select(e.card).where(e.mac.is_(None), e.card.is_not(None)).distinct()))
    todo = sorted(legacy_cards)
    for start in range(0, len(todo), SEAL_ROWS):
        part = todo[start:start + SEAL_ROWS]
        cards = {row.card: row for row in session.execute(
            select(c.card, c.category, c.status, c.account_id, c.head, c.mac)
            .where(c.card.in_(part)).order_by(c.card).with_for_update())}
        sealed: list[tuple[Any, ...]] = []
        links: dict[str, _Links] = {}
        for entry, postings in _entries_of(session, e.card.in_(part)):
            fields = [getattr(entry, name) for name in ENTRY_FIELDS]
            if entry.card not in cards:
                # An entry naming no card was never posted by the ledger: reconcile
                # names it; it is sealed alone, on no chain.
                if entry.mac is None:
                    sealed.append((entry.id, None,
                                   entry_mac(fingerprints, fields, None, postings)))
                continue
            link = links.setdefault(entry.card, _Links())
            sealed += link.next(fingerprints, entry.id, fields, postings, entry.prev_mac,
                                entry.mac)
        bulk_set(session, Entry.__table__, "id", ("prev_mac", "mac"), sealed)
        counts["entries"] += len(sealed)
        cards_sealed = []
        for card, row in cards.items():
            link = links.get(card, _Links())
            genuine = fingerprints.matches(row.mac, "cards", card, row.category, row.status,
                                           row.account_id, row.head)
            # A card fingerprinted already moves only with a chain re-linked behind
            # legacy entries, and only from the head it held, its own.
            if row.mac is None or (genuine and link.relinked and row.head == link.stored):
                head = link.head if link.head is not None else row.head
                cards_sealed.append((card, head, card_mac(fingerprints, card, row.category,
                                                          row.status, row.account_id, head)))
        bulk_set(session, Card.__table__, "card", ("head", "mac"), cards_sealed)
        counts["cards"] += len(cards_sealed)
    while True:  # entries of no card: sealed alone, on no chain
        ids = session.scalars(select(e.id).where(e.card.is_(None), e.mac.is_(None))
                              .order_by(e.id).limit(SEAL_ROWS)).all()
        if not ids:
            break
        batch = [(entry.id, None, entry_mac(fingerprints, [
            getattr(entry, name) for name in ENTRY_FIELDS], None, postings))
            for entry, postings in _entries_of(session, e.id.in_(ids))]
        bulk_set(session, Entry.__table__, "id", ("prev_mac", "mac"), batch)
        counts["entries"] += len(batch)
    records = session.scalars(select(SettlementRecord)
                              .where(SettlementRecord.mac.is_(None))).all()
    for record in records:
        record.mac = settlement_mac(fingerprints, settlement_fields(record))
    session.flush()
    counts["settlements"] = len(records)
    return counts


def sealed_counts(counts: Mapping[str, int]) -> str:
    """`counts` as one phrase: `entries 3, cards 1` (`nothing` when all are 0)."""
    return ", ".join(f"{what} {n}" for what, n in counts.items() if n) or "nothing"
