"""A simulated card reader (`--reader sim`): card UIDs, one per line, on a text stream
(standard input), for drills, the demo and tests without a PC/SC reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from transit.wire import CARD_PATTERN

# (uid, or None when the line is not a card token; monotonic time the card was seen)
CardHandler = Callable[[str | None, float], object]


def present_cards(lines: Iterable[str], on_card: CardHandler) -> int:
    """Present each non-blank line as a card (upper-cased); returns how many were."""
    presented = 0
    for line in lines:
        uid = line.strip().upper()
        if not uid:
            continue
        # A line that is no card token reads like an unreadable card: refused at the reader.
        on_card(uid if CARD_PATTERN.fullmatch(uid) else None, time.monotonic())
        presented += 1
    return presented


class LineCardSource:
    """Reads cards from a stream in a thread of its own until the stream ends."""

    def __init__(self, lines: Iterable[str], on_card: CardHandler) -> None:
        self.lines = lines
        self.on_card = on_card
        self._thread = threading.Thread(target=present_cards, args=(lines, on_card),
                                        name="sim-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Nothing to release: a blocked read of standard input ends with the process."""
