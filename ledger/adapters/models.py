"""Ledger tables: accounts, cards (with their balance), entries and postings.

Entries and postings are append-only; the application never updates or deletes them.
A card's `balance` is a projection of its postings, kept in the same transaction, so it
reads in O(1); operator revenue has no such column (it would be a row every tap
updates) and is summed from postings.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ledger.adapters.db import Base, BigId


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("kind", "ref", name="uq_accounts_kind_ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # card | revenue | clearing
    ref: Mapped[str] = mapped_column(String(64))  # card token, operator id, clearing name
    currency: Mapped[str] = mapped_column(String(3))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Card(Base):
    __tablename__ = "cards"

    card: Mapped[str] = mapped_column(String(32), primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | blocked
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # The fingerprint of the card's last entry (the head of its chain of entries), and
    # the card's own keyed fingerprint over card, category, status, account and head
    # (ledger.fingerprint): a category or status set behind the application's back, or
    # a chain cut short, no longer matches it. The balance is not in it: the invariants
    # hold it to the postings, which the entries' fingerprints cover.
    head: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        Index("ix_entries_posted_ms", "posted_ms"),
        Index("ix_entries_tap_id", "tap_id"),
        Index("ix_entries_card_service_date", "card", "service_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    idem_key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # fare | correction | topup | refund | transfer
    digest: Mapped[str] = mapped_column(String(64))  # what the key stands for
    amount: Mapped[int] = mapped_column(BigInteger)  # headline: fare charged, topup credited
    posted_ms: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    card: Mapped[str | None] = mapped_column(String(32))
    tap_id: Mapped[str | None] = mapped_column(String(100))
    reference: Mapped[str | None] = mapped_column(String(64))
    service_date: Mapped[str | None] = mapped_column(String(10))
    operator_id: Mapped[str | None] = mapped_column(String(64))
    route_id: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(32))
    # The keyed fingerprint of the entry and its postings, chained to the card's entry
    # before it (`prev_mac`, None for a card's first entry): an entry inserted, changed or
    # removed behind the application's back breaks its card's chain, in an open day too.
    prev_mac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (Index("ix_postings_account_id", "account_id"),
                      Index("ix_postings_entry_id", "entry_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed; an entry's postings sum to 0


class SettlementRecord(Base):
    """A settled business day: the fingerprint of its file and of its ledger entries.

    The chain (`previous_sha256`) and the entries' root hash let `transit reconcile`
    prove that nothing posted in a settled day was changed or removed afterwards.
    """

    __tablename__ = "settlements"

    business_date: Mapped[str] = mapped_column(String(10), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    previous_sha256: Mapped[str | None] = mapped_column(String(64))
    entries_sha256: Mapped[str] = mapped_column(String(64))
    chain_sha256: Mapped[str] = mapped_column(String(64), default="")
    entries: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    # Keyed fingerprint of the record: recomputing the unkeyed hashes above after a
    # rewrite does not make this match without the key.
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ChainHead(Base):
    """The last link of a chained table (the audit trail, the quarantine): its number and
    fingerprint, under a keyed fingerprint of its own. Appending locks this row, so the
    links are numbered without gaps; a record removed, or the newest ones cut off, no
    longer reaches the head."""

    __tablename__ = "chain_heads"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    last_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditRecord(Base):
    """One change made by staff or a rider, through the API or a command (contract
    section 9): who, when, what, from where; chained to the record before it."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at_ms", "at_ms"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    actor_kind: Mapped[str] = mapped_column(String(16))  # token | command | rider | system
    actor_id: Mapped[str] = mapped_column(String(64))  # token id, OS user, account id
    actor_name: Mapped[str] = mapped_column(String(100), default="")
    actor_role: Mapped[str] = mapped_column(String(16), default="")
    source: Mapped[str] = mapped_column(String(100), default="")  # address or host
    action: Mapped[str] = mapped_column(String(48))
    subject: Mapped[str] = mapped_column(String(160), default="")
    detail: Mapped[str] = mapped_column(Text, default="{}")  # JSON object
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))
