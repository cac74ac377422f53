"""Card use cases shared by the HTTP API and the command line: issue, top up, block.

Each runs in one transaction that also brings the deny list in step.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fare_gateway.denylist import refresh_denylist
from fare_gateway.fares.policy import FarePolicy
from ledger.adapters.models import Card
from ledger.services import CardNotFound, Ledger, TopupResult


class CardError(ValueError):
    """A card request that cannot be done; `code` says which kind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def issue_card(session: Session, ledger: Ledger, policy: FarePolicy, card: str,
               category: str | None) -> Card:
    """Issue a card; with no money on it, it starts on the deny list."""
    category = policy.default_category if category is None else category
    if category not in policy.categories:
        raise CardError("bad_category",
                        f"category must be one of {', '.join(policy.categories)}")
    row = ledger.open_card(session, card, category)
    refresh_denylist(session, policy, [card])
    return row


def topup_card(session: Session, ledger: Ledger, policy: FarePolicy, card: str, amount: int,
               reference: str) -> TopupResult:
    """Credit a card once per reference; a card back above its lowest fare leaves the list."""
    result = ledger.topup(session, card, amount, reference)
    if result.created:
        refresh_denylist(session, policy, [card])
    return result


def set_card_status(session: Session, policy: FarePolicy, card: str, status: str) -> Card:
    """Block (`blocked`) or unblock (`active`) a card."""
    row = session.get(Card, card, with_for_update=True)
    if row is None:
        raise CardNotFound(f"no card {card}")
    row.status = status
    session.flush()
    refresh_denylist(session, policy, [card])
    return row
