"""Which cards belong to which rider account: the one check every rider endpoint makes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import RiderCard
from ledger.services import CardNotFound


def linked_cards(session: Session, account_id: int) -> list[str]:
    """The cards linked to an account, in token order."""
    return list(session.scalars(select(RiderCard.card).where(
        RiderCard.account_id == account_id).order_by(RiderCard.card)))


def own_card(session: Session, account_id: int, card: str) -> str:
    """`card` if it is linked to this account; CardNotFound otherwise (a 404: another
    account's card and a card that does not exist look the same to a rider)."""
    owner = session.scalar(select(RiderCard.account_id).where(RiderCard.card == card))
    if owner != account_id:
        raise CardNotFound(f"no card {card} on this account")
    return card
