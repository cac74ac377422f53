"""The live vehicle streams one gateway serves at once, and one token may hold.

An open stream holds one of the HTTP server's threads for as long as it lasts; the
gateway has threads for every stream slot plus the rest of the API, so the caps are what
keep the API answering however many streams are asked for, and the per-token cap stops
one client from taking every slot (docs/operations.md, "Serving many clients"). A stream
beyond a cap is refused at once, before it holds a thread for longer than that answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from enum import Enum


class Refusal(Enum):
    """Why a stream was not opened."""

    HOLDER_FULL = "the token holds as many streams as it may"
    GATEWAY_FULL = "the gateway serves as many streams as it can"


class StreamSlots:
    """Counts open streams, in all and per holder (a token), under a lock."""

    def __init__(self, total: int, per_holder: int) -> None:
        self.total, self.per_holder = total, per_holder
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, holder: str) -> Refusal | None:
        """Take a slot for `holder`, or say why there is none; `release` gives it back."""
        with self._lock:
            if self._held[holder] >= self.per_holder:
                return Refusal.HOLDER_FULL
            if self._held.total() >= self.total:
                return Refusal.GATEWAY_FULL
            self._held[holder] += 1
            return None

    def release(self, holder: str) -> None:
        """Give back a slot `take` gave `holder`."""
        with self._lock:
            self._held[holder] -= 1
            if self._held[holder] <= 0:
                del self._held[holder]

    def open(self) -> int:
        """How many streams are open now."""
        with self._lock:
            return self._held.total()
