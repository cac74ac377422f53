"""Instants as the API shows and takes them: ISO-8601 UTC with `Z` out, ISO-8601 or epoch
milliseconds in. Pure, and here in the kernel so that every layer reads time alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# The instants a request may name: the years a ledger can hold (parsing further out
# would overflow `datetime`, and nothing there is ever true).
EARLIEST_MS = 0
LATEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

# An instant as the API describes it, exactly: epoch milliseconds (up to 14 digits), or
# an ISO-8601 instant of the years 1971-8999 with `Z` or an offset. The pattern admits
# only real dates (February 29 in leap years alone), so that every value it matches
# parses and every other is refused: the description and the server agree to the letter.
_YEAR = r"(?:197[1-9]|19[89][0-9]|[2-8][0-9]{3})"
_LEAP = (r"(?:19(?:7[26]|8[048]|9[26])|[2-8][0-9](?:0[48]|[2468][048]|[13579][26])"
         r"|(?:[2468][048]|[3579][26])00)")
_MONTH_DAY = (r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
              r"|(?:0[13578]|1[02])-31)")
DATE_PATTERN = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP}-02-29)"
_TIME = r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
_ZONE = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
AS_OF_PATTERN = rf"^(?:[0-9]{{1,14}}|{DATE_PATTERN}{_TIME}{_ZONE})$"
AS_OF = re.compile(AS_OF_PATTERN)


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
