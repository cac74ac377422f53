"""The decision at the reader: pure, instant, with no network on the path."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """What the passenger is shown at once."""

    accepted: bool
    reason: str | None = None  # denylisted | repeat | spool_full | unreadable | not_authentic


class RecentEntries:
    """The last accepted entry of each card on this bus, for repeat taps (bounded)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()

    def last(self, card: str) -> int | None:
        return self._last.get(card)

    def remember(self, card: str, ts_ms: int) -> None:
        self._last[card] = ts_ms
        self._last.move_to_end(card)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)


def decide(card: str, ts_ms: int, denied: bool, last_entry_ms: int | None,
           repeat_tap_seconds: int, spool_full: bool) -> Decision:
    """Accept unless the card is deny-listed, it is a repeat tap on this bus, or the
    spool cannot hold one more tap (an accepted tap must never be lost)."""
    if denied:
        return Decision(False, "denylisted")
    if last_entry_ms is not None and 0 <= ts_ms - last_entry_ms <= repeat_tap_seconds * 1000:
        return Decision(False, "repeat")
    if spool_full:
        return Decision(False, "spool_full")
    return Decision(True)
