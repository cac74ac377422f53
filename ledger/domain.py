"""Pure posting rules: what an entry is, and the entries for fares, corrections and top-ups."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CARD = "card"
REVENUE = "revenue"
CLEARING = "clearing"
TOPUP_CLEARING = "topups"
ADJUSTMENT_CLEARING = "adjustments"
UNASSIGNED_OPERATOR = "unassigned"


class LedgerError(ValueError):
    """An entry that would break the ledger's rules."""


@dataclass(frozen=True)
class AccountKey:
    """An account by what it stands for: (kind, ref)."""

    kind: str
    ref: str


@dataclass(frozen=True)
class PostingDraft:
    account: AccountKey
    amount: int


@dataclass(frozen=True)
class EntryDraft:
    """An entry about to be posted: balanced postings under one idempotency key."""

    idem_key: str
    kind: str
    digest: str
    amount: int
    postings: tuple[PostingDraft, ...]
    currency: str
    card: str | None = None
    tap_id: str | None = None
    reference: str | None = None
    service_date: str | None = None
    operator_id: str | None = None
    route_id: str | None = None
    category: str | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.postings:
            raise LedgerError(f"{self.idem_key}: an entry needs postings")
        total = sum(p.amount for p in self.postings)
        if total != 0:
            raise LedgerError(f"{self.idem_key}: postings sum to {total}, not 0")
        for p in self.postings:
            if isinstance(p.amount, bool) or not isinstance(p.amount, int):
                raise LedgerError(f"{self.idem_key}: amounts are whole numbers")


@dataclass(frozen=True)
class CardState:
    """A card as a transaction that locked it found it."""

    card: str
    category: str
    status: str  # active | blocked
    balance: int
    account_id: int
    head: str | None = None  # the fingerprint of the card's last entry (its chain's head)


@dataclass(frozen=True)
class TapAmount:
    """What the ledger holds for one tap now: the net of its entries, and the operator
    its fare went to (None when it has no fare entry, only corrections)."""

    net: int
    operator_id: str | None


@dataclass(frozen=True)
class Posted:
    """What a posting did: the new entries' ids, in the order of the drafts, and the new
    balance of every card whose balance they changed."""

    entry_ids: tuple[int, ...] = ()
    balances: Mapping[str, int] = field(default_factory=dict)


def card_deltas(drafts: Iterable[EntryDraft]) -> dict[str, int]:
    """How much each card's balance moves when these entries are posted."""
    deltas: dict[str, int] = defaultdict(int)
    for draft in drafts:
        for p in draft.postings:
            if p.account.kind == CARD:
                deltas[p.account.ref] += p.amount
    return dict(deltas)


def card_account(card: str) -> AccountKey:
    """The stored-value account of a card."""
    return AccountKey(CARD, card)


def revenue_account(operator_id: str) -> AccountKey:
    """The revenue account of an operator; a route nobody runs credits `unassigned`."""
    return AccountKey(REVENUE, operator_id or UNASSIGNED_OPERATOR)


def digest_of(*parts: object) -> str:
    """A stable digest of what an idempotency key stands for."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def fare_entry(*, tap_id: str, card: str, fare: int, digest: str, currency: str,
               operator_id: str, route_id: str, category: str, service_date: str,
               kind: str = "fare", idem_key: str | None = None) -> EntryDraft:
    """A tap's charge (or a correction of it): the card pays the route's operator."""
    return EntryDraft(
        idem_key=idem_key or f"tap:{tap_id}",
        kind=kind,
        digest=digest,
        amount=fare,
        postings=(PostingDraft(card_account(card), -fare),
                  PostingDraft(revenue_account(operator_id), fare)),
        currency=currency,
        card=card,
        tap_id=tap_id,
        service_date=service_date,
        operator_id=operator_id or UNASSIGNED_OPERATOR,
        route_id=route_id,
        category=category,
    )


def topup_digest(card: str, amount: int) -> str:
    """What a top-up's reference stands for: this card, this amount."""
    return digest_of("topup", card, amount)


def topup_entry(*, card: str, amount: int, reference: str, currency: str) -> EntryDraft:
    """Money loaded onto a card, against the top-up clearing account."""
    if amount <= 0:
        raise LedgerError("a top-up amount must be positive")
    return EntryDraft(
        idem_key=f"topup:{reference}",
        kind="topup",
        digest=topup_digest(card, amount),
        amount=amount,
        postings=(PostingDraft(AccountKey(CLEARING, TOPUP_CLEARING), -amount),
                  PostingDraft(card_account(card), amount)),
        currency=currency,
        card=card,
        reference=reference,
    )


def refund_entry(*, dispute_id: int, card: str, amount: int, currency: str,
                 operator_id: str, route_id: str | None, category: str | None,
                 service_date: str | None) -> EntryDraft:
    """Money given back to a rider by a dispute's answer: the operator that took the fare
    returns it to the card. `amount` (the entry's headline) is negative, the revenue
    given back, as the settlement's `refund` line shows it.

    The entry names no `tap_id`: what a tap costs is the net of its fare and corrections,
    which re-pricing compares with the engine's answer, and a refund must not look like
    an overcharge to correct. Its `reference` names the dispute, which names the tap.
    """
    if amount <= 0:
        raise LedgerError("a refund must be more than 0")
    return EntryDraft(
        idem_key=f"refund:{dispute_id}",
        kind="refund",
        digest=digest_of("refund", dispute_id, card, amount),
        amount=-amount,
        postings=(PostingDraft(revenue_account(operator_id), -amount),
                  PostingDraft(card_account(card), amount)),
        currency=currency,
        card=card,
        reference=f"dispute:{dispute_id}",
        service_date=service_date,
        operator_id=operator_id or UNASSIGNED_OPERATOR,
        route_id=route_id,
        category=category,
    )


def transfer_entry(*, old_card: str, new_card: str, amount: int, currency: str
                   ) -> EntryDraft:
    """A lost card's whole balance moved to its replacement, in one entry keyed by the
    lost card, so that it can move once only."""
    if amount <= 0:
        raise LedgerError("a balance transfer must move more than 0")
    return EntryDraft(
        idem_key=f"transfer:{old_card}",
        kind="transfer",
        digest=digest_of("transfer", old_card, new_card, amount),
        amount=amount,
        postings=(PostingDraft(card_account(old_card), -amount),
                  PostingDraft(card_account(new_card), amount)),
        currency=currency,
        card=old_card,
        reference=new_card,
    )


def adjustment_entry(*, adjustment_id: int, card: str, amount: int, reference: str,
                     currency: str) -> EntryDraft:
    """A manual adjustment approved under four eyes (contract section 9): `amount` is what
    the card gains (negative: a debit), against the adjustments clearing account, keyed
    by the adjustment's reference so that it posts once however often it is approved."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise LedgerError("an adjustment moves a whole, non-zero amount")
    return EntryDraft(
        idem_key=f"adjustment:{reference}",
        kind="adjustment",
        digest=digest_of("adjustment", adjustment_id, card, amount),
        amount=amount,
        postings=(PostingDraft(AccountKey(CLEARING, ADJUSTMENT_CLEARING), -amount),
                  PostingDraft(card_account(card), amount)),
        currency=currency,
        card=card,
        reference=reference,
    )
