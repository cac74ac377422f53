"""The span of event times the gateway believes (contract section 10).

A validator's clock can be wrong, and a signed message can lie about its time: a tap
dated 1970 would be priced in a day long settled, one dated past the year 9999 has no
calendar date at all. So a tap or a position is believed only when its `ts` lies between
`TRANSIT_TAP_MAX_AGE_DAYS` days before the gateway's clock and 5 minutes after it; the
tap path rejects the others (`ts_out_of_range`) before anything computes a date from
them, and tracking drops such positions.

Pure: the caller passes the clock's reading, so that one batch is judged at one instant.
"""

from __future__ import annotations

from dataclasses import dataclass

OUT_OF_RANGE = "ts_out_of_range"
"""The reason code of an event time outside the window."""

MAX_AHEAD_MS = 5 * 60_000
"""How far ahead of the gateway's clock a validator's may run (contract section 10)."""

DAY_MS = 86_400_000
DEFAULT_MAX_AGE_DAYS = 7


@dataclass(frozen=True)
class EventWindow:
    """Event times believed at a given instant: from `max_age_days` before it to
    `MAX_AHEAD_MS` after it, both ends included."""

    max_age_days: int = DEFAULT_MAX_AGE_DAYS

    def __post_init__(self) -> None:
        if self.max_age_days <= 0:
            raise ValueError(f"the oldest believable event must be in the past: "
                             f"{self.max_age_days} days")

    def contains(self, ts_ms: int, now_ms: int) -> bool:
        """Whether an event dated `ts_ms` may be believed when the clock reads `now_ms`."""
        return now_ms - self.max_age_days * DAY_MS <= ts_ms <= now_ms + MAX_AHEAD_MS

    def refusal(self, ts_ms: int, now_ms: int) -> str | None:
        """`ts_out_of_range` for an event time outside the window, else None."""
        return None if self.contains(ts_ms, now_ms) else OUT_OF_RANGE


DEFAULT_WINDOW = EventWindow()
"""The contract's window: 7 days back, 5 minutes ahead."""
