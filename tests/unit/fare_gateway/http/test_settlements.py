"""The settlement date's description admits exactly the business calendar's days."""

from __future__ import annotations

import re
from datetime import timedelta

from fare_gateway.http.settlements import DAY
from ledger.settlement import MAX_DAY, MIN_DAY, SettlementError, parse_day


def test_the_day_pattern_admits_the_calendar_years_and_no_other() -> None:
    pattern = re.compile(DAY["pattern"])
    for year in range(0, 10_000):
        day = f"{year:04d}-06-15"
        admitted = pattern.fullmatch(day) is not None
        assert admitted == (MIN_DAY.year <= year <= MAX_DAY.year), day
    assert pattern.fullmatch(MIN_DAY.isoformat()) and pattern.fullmatch(MAX_DAY.isoformat())
    for outside in (MIN_DAY - timedelta(days=1), MAX_DAY + timedelta(days=1)):
        assert not pattern.fullmatch(outside.isoformat()), outside
        try:
            parse_day(outside.isoformat())
        except SettlementError:
            pass
        else:
            raise AssertionError(f"{outside} is refused by the description but settleable")
