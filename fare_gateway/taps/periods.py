"""A card's weeks and months in a batch: where each day's weekly and monthly caps start.

A day's charges depend on its own taps and on two figures from before it: what the
card's earlier days of the same week, and of the same month, were charged
(`fares.engine.Earlier`). The gateway keeps each week's and month's total per card
(`fare_periods`, written in the batch that posts the charges, under the card's lock),
so that a new tap re-prices its own day alone, from those totals less what the days
loaded in the batch hold, instead of re-pricing a month from its first tap.

A late tap can change what later days of its week and month cost. The batch loads
every charged day of the card from its earliest new tap on (no more than the tap window,
`TRANSIT_TAP_MAX_AGE_DAYS`, 7 days by default); a later day is priced again when the
totals it starts from have moved enough to change what its weekly or monthly cap leaves
it, and left alone when they have not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from functools import lru_cache

from fare_gateway.fares.engine import DayPrice, Earlier, PricedTap, price_day
from fare_gateway.fares.policy import FarePolicy, month_of, week_of

PeriodKey = tuple[str, str, str]
"""A card, `week` or `month`, and the period's first service date (ISO)."""

WEEK, MONTH = "week", "month"


@lru_cache(maxsize=1024)
def periods_of(service_date: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """The (kind, start) of a service date's week and month (cached: a batch asks for the
    same few dates at every tap, and parsing one costs 1.7 µs)."""
    day = date.fromisoformat(service_date)
    return (WEEK, week_of(day).isoformat()), (MONTH, month_of(day).isoformat())


def period_keys(card_days: Iterable[tuple[str, str]]) -> set[PeriodKey]:
    """The weeks and months these (card, service date) pairs fall in."""
    return {(card, kind, start) for card, day in card_days
            for kind, start in periods_of(day)}


class CardPeriods:
    """One card's days in a batch, from its earliest new tap on, and what they hold.

    `days` holds the charged taps of every such day, `held` what the ledger holds for
    each of those taps, `stored` the card's week and month totals as kept.
    """

    def __init__(self, policy: FarePolicy, category: str,
                 days: Mapping[str, Mapping[str, PricedTap]], held: Mapping[str, int],
                 stored: Mapping[tuple[str, str], int]) -> None:
        self.policy = policy
        self.category = category
        self.days = {d: dict(taps) for d, taps in days.items()}
        self.totals = {d: sum(held.get(t, 0) for t in taps) for d, taps in days.items()}
        self._periods = {d: periods_of(d) for d in self.days}
        # What each week and month holds from days before those loaded.
        self.before: dict[tuple[str, str], int] = dict(stored)
        for d, total in self.totals.items():
            for period in self._periods[d]:
                self.before[period] = self.before.get(period, 0) - total
        # The totals each loaded day's charges were worked out from.
        self._used = {d: self.earlier(d) for d in self.days}

    def earlier(self, service_date: str) -> Earlier:
        """What the card was charged before this day in its week and in its month."""
        week, month = self._periods.get(service_date) or periods_of(service_date)
        in_week = self.before.get(week, 0)
        in_month = self.before.get(month, 0)
        for d, total in self.totals.items():
            if d < service_date:
                week_d, month_d = self._periods[d]
                if week_d == week:
                    in_week += total
                if month_d == month:
                    in_month += total
        return Earlier(in_week, in_month)

    def _same_either_way(self, service_date: str, was: Earlier, now: Earlier) -> bool:
        """Would the day cost what it holds whether it starts from `was` or `now`?

        Yes when neither total moved; and when neither the weekly nor the monthly cap
        bound it before nor can bind it now. A cap that bound leaves its period's total
        at the cap (it lowers a charge to what is left), so a total below the cap says it
        did not; and a day whose taps stayed within a cap from `now` on is charged
        exactly what it was (the daily cap alone decided it, then as now).
        """
        if was == now:
            return True
        total = self.totals[service_date]
        caps = self.policy.caps(self.category)
        for cap, before, after in ((caps.weekly, was.week, now.week),
                                   (caps.monthly, was.month, now.month)):
            if cap is not None and not (before + total < cap and after + total <= cap):
                return False
        return True

    def add(self, service_date: str, tap: PricedTap) -> Iterator[tuple[str, DayPrice]]:
        """Add a new tap; yield its day priced again, then each later day whose starting
        totals have moved, priced again (the caller posts the differences)."""
        if service_date not in self.days:
            self.days[service_date] = {}
            self.totals[service_date] = 0
            self._periods[service_date] = periods_of(service_date)
        self.days[service_date][tap.tap_id] = tap
        for d in sorted(self.days):
            if d < service_date:
                continue
            earlier = self.earlier(d)
            if d != service_date and self._same_either_way(d, self._used[d], earlier):
                self._used[d] = earlier
                continue
            price = price_day(self.policy, self.category, self.days[d].values(), earlier)
            self._used[d] = earlier
            self.totals[d] = price.total
            yield d, price
