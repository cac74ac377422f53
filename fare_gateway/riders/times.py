"""Instants as riders' and disputes' endpoints show and take them: ISO-8601 UTC with `Z`."""

from __future__ import annotations

from datetime import UTC, datetime

# The instants a request may name: the years a ledger can hold (parsing further out
# would overflow `datetime`, and nothing there is ever true).
EARLIEST_MS = 0
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def iso_z(ms: int) -> str:
    """Epoch milliseconds as `2026-12-01T08:15:02.123Z`."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_instant(text: str) -> int | None:
    """An instant given as ISO-8601 (with `Z` or an offset; a date alone is its midnight
    UTC) or as epoch milliseconds; None when it is neither or out of range."""
    text = text.strip()
    if not text or len(text) > 40:
        return None
    if text.isdigit():
        ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            if len(text) != 10:  # a time without its offset says nothing exact
                return None
            moment = moment.replace(tzinfo=UTC)
        ms = round(moment.timestamp() * 1000)
    return ms if EARLIEST_MS <= ms <= LATEST_MS else None
