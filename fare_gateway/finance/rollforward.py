"""The float (contract section 9): the stored value owed to riders over a business day,
rolled forward from what cards held when the day began to what they held when it ended.

Every figure is a sum of postings on card accounts, so each is signed as it changes what
riders hold: top-ups and refunds add, fares take away, corrections move cards either
way, a transfer takes from one card what it gives another (0 in sum), an adjustment
moves its card by its signed amount. A business day is the settlement's (posting time,
`ledger.settlement.BusinessCalendar`), so an entry belongs to the float of the same day
whose settlement lines it is in.

    opening     = every card posting before the day began
    movements   = the card postings of the day's entries, by entry kind
    closing     = opening + the movements
    cards_total = the sum of the cards' balances now, less every card posting made
                  since the day ended

`closing` comes from the postings alone, `cards_total` from the `cards.balance` column
the ledger keeps beside them: the two agree exactly when every card's balance is the sum
of its postings, the ledger's own invariant. The reads share one snapshot
(`fare_gateway.finance.snapshot`), so taps committing meanwhile cannot break the tie.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.orm import Session

from fare_gateway.finance.errors import Conflict
from ledger.adapters.models import Account, Card, Entry, Posting
from ledger.domain import CARD
from ledger.settlement import CLOSE_MARGIN_MS, BusinessCalendar

# Entry kind -> the float's field for it, in the order the float shows them.
MOVEMENTS: tuple[tuple[str, str], ...] = (
    ("topup", "topups"), ("fare", "fares"), ("correction", "corrections"),
    ("refund", "refunds"), ("transfer", "transfers"), ("adjustment", "adjustments"))
FIELD_OF_KIND = dict(MOVEMENTS)


@dataclass(frozen=True)
class DayFloat:
    """A business day's float: what cards held at its start, what moved, at its end."""

    day: date
    currency: str
    opening: int
    movements: Mapping[str, int]  # the float's field (`topups`, ...) -> signed sum
    cards_total: int
    from_ms: int
    to_ms: int
    closed: bool  # the day is over (and past the settlement's close margin)

    @property
    def closing(self) -> int:
        """What cards held at the day's end, by the postings: opening + the movements."""
        return self.opening + sum(self.movements.values())

    @property
    def ties_out(self) -> bool:
        """Whether the postings and the cards' balances agree on the day's end."""
        return self.closing == self.cards_total

    def as_json(self) -> dict[str, Any]:
        """The float as `GET /api/v1/finance/float/{date}` shows it."""
        return {"date": self.day.isoformat(), "currency": self.currency,
                "status": "closed" if self.closed else "open",
                "opening": self.opening,
                **{name: self.movements.get(name, 0) for _, name in MOVEMENTS},
                "closing": self.closing, "cards_total": self.cards_total,
                "business_day": {"from_ms": self.from_ms, "to_ms": self.to_ms}}


def roll_forward(day: date, currency: str, all_postings: int,
                 since_start: Mapping[tuple[str, bool], int], balances: int,
                 bounds: tuple[int, int], closed: bool) -> DayFloat:
    """The float from three sums: every card posting (`all_postings`), the card postings
    since the day began by (entry kind, posted before the day's end) and the cards'
    balances now. An entry kind the float does not know is refused, as settling it is:
    its money would be in no figure."""
    unknown = sorted({kind for kind, _ in since_start if kind not in FIELD_OF_KIND})
    if unknown:
        raise Conflict("unknown_entry_kind", f"the ledger holds entries of a kind the float "
                                             f"does not know: {', '.join(unknown)}")
    during = {name: since_start.get((kind, True), 0) for kind, name in MOVEMENTS}
    after = sum(amount for (_, in_day), amount in since_start.items() if not in_day)
    opening = all_postings - sum(during.values()) - after
    return DayFloat(day, currency, opening, during, balances - after, bounds[0], bounds[1],
                    closed)


def day_float(session: Session, calendar: BusinessCalendar, currency: str, day: date,
              now_ms: int) -> DayFloat:
    """The float of business day `day`, read in the session's snapshot (begin it with
    `fare_gateway.finance.snapshot.snapshot`). A day that has not begun is refused."""
    start, end = calendar.bounds(day)
    if now_ms < start:
        raise Conflict("day_not_begun", f"business day {day.isoformat()} has not begun")
    conn = session.connection()
    p, e, a = Posting.__table__.c, Entry.__table__.c, Account.__table__.c
    # (A sum of bigints is a numeric in PostgreSQL: cast it back.)
    total = cast(func.coalesce(func.sum(p.amount), 0), BigInteger)
    card_postings = Posting.__table__.join(Account.__table__,
                                           (a.id == p.account_id) & (a.kind == CARD))
    # Every card posting: one scan of the postings against the (small) accounts table,
    # without the entries, which only the day's postings and later ones need.
    all_postings = int(conn.execute(select(total).select_from(card_postings)).scalar_one())
    in_day = case((e.posted_ms < end, 1), else_=0)
    since = conn.execute(
        select(e.kind, in_day, total)
        .select_from(card_postings.join(Entry.__table__, e.id == p.entry_id))
        .where(e.posted_ms >= start).group_by(e.kind, in_day)).all()
    balances = int(conn.execute(select(cast(func.coalesce(func.sum(Card.__table__.c.balance),
                                                          0), BigInteger))).scalar_one())
    return roll_forward(day, currency, all_postings,
                        {(kind, bool(flag)): int(amount) for kind, flag, amount in since},
                        balances, (start, end), now_ms >= end + CLOSE_MARGIN_MS)
