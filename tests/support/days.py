"""Business days relative to today, for tests that need closed days inside the age a tap
may still have (contract section 10)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

WIB = ZoneInfo("Asia/Jakarta")
DAY_START = timedelta(hours=3)  # the built-in policy's service_day_start


def business_days_back(n: int) -> str:
    """The business day `n` days before the current one, YYYY-MM-DD."""
    return ((datetime.now(WIB) - DAY_START).date() - timedelta(days=n)).isoformat()
