"""Keeping a card's week and month totals in step when a test posts a fare outside the
tap path (a day seeded by the ledger itself, a double charge staged for a dispute), as
the gateway does in the batch that posts it (fare_gateway/taps/periods.py)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from fare_gateway.adapters.models import FarePeriod
from fare_gateway.taps.periods import periods_of


def count_in_periods(session: Session, card: str, service_date: str, amount: int) -> None:
    """Add `amount` to the card's week and month of `service_date`."""
    for kind, start in periods_of(service_date):
        kept = session.get(FarePeriod, (card, kind, start))
        if kept is None:
            session.add(FarePeriod(card=card, kind=kind, start=start, total=amount))
        else:
            kept.total += amount
    session.flush()
