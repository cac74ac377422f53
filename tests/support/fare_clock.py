"""Tap times and fares under the built-in policy's regular fares (contract section 5):
2,000 for an entry from 05:00 to 07:00 Asia/Jakarta, 5,000 at any other time. Written
out here, not asked of the fare engine, so that a test holds the engine to the contract."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

WIB = ZoneInfo("Asia/Jakarta")
EARLY_FARE = 2000
REGULAR_FARE = 5000
EARLY_HOURS = range(5, 7)  # [05:00, 07:00) local: whole hours
REGULAR_HOUR = 10  # hours clear of the early window on either side


def regular_fare_at(ts_ms: int) -> int:
    """What a regular card's entry at `ts_ms` (epoch ms) costs as a full fare."""
    local = datetime.fromtimestamp(ts_ms // 1000, WIB)
    return EARLY_FARE if local.hour in EARLY_HOURS else REGULAR_FARE


def full_fare_time(age_ms: int = 0, now_ms: int | None = None) -> int:
    """The latest local 10:00 at least `age_ms` before now (epoch ms): taps a few minutes
    either side of it pay the regular 5,000 at any hour a test runs."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    # Whole seconds, rounded down: the answer is never later than now - age_ms.
    latest = datetime.fromtimestamp((now - age_ms) // 1000, WIB)
    ten = latest.replace(hour=REGULAR_HOUR, minute=0, second=0, microsecond=0)
    if ten > latest:
        ten -= timedelta(days=1)
    return int(ten.timestamp()) * 1000
