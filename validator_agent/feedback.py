"""What the passenger sees and hears: a console line, an LED, a buzzer.

The agent speaks to a `Feedback`; the console one writes one JSON line per event on
standard output (what the tests and the demo read), and the GPIO-style one drives a
green/red LED and a buzzer through callables supplied by the board's adapter.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Protocol, TextIO

from transit.wire import Receipt
from validator_agent.domain import Decision


class Feedback(Protocol):
    def decided(self, card: str | None, seq: int | None, decision: Decision,
                latency_ms: float) -> None:
        """Shown at once, when the card is read."""

    def receipted(self, receipt: Receipt) -> None:
        """Shown when the gateway's receipt arrives: fare, and the balance when the
        receipt tells one (only a charge does), or why the tap was rejected."""

    def alarm(self, name: str, active: bool) -> None:
        """A fault the crew should know about (spool full, no GPS fix, ...)."""


class ConsoleFeedback:
    """One JSON object per line on a stream."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def _emit(self, event: dict[str, object]) -> None:
        with self._lock:
            self.stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.stream.flush()

    def decided(self, card: str | None, seq: int | None, decision: Decision,
                latency_ms: float) -> None:
        self._emit({"event": "tap", "card": card, "seq": seq, "accepted": decision.accepted,
                    "reason": decision.reason, "latency_ms": round(latency_ms, 2)})

    def receipted(self, receipt: Receipt) -> None:
        # `balance` and `reason` are null where the receipt has none.
        self._emit({"event": "receipt", "seq": receipt.seq, "status": receipt.status,
                    "fare": receipt.fare, "balance": receipt.balance,
                    "currency": receipt.currency, "reason": receipt.reason})

    def alarm(self, name: str, active: bool) -> None:
        self._emit({"event": "alarm", "alarm": name, "active": active})


class SignalFeedback:
    """Green LED and one beep for accepted, red LED and two beeps for refused."""

    def __init__(self, led: Callable[[str], None], beep: Callable[[int], None]) -> None:
        self.led = led
        self.beep = beep

    def decided(self, card: str | None, seq: int | None, decision: Decision,
                latency_ms: float) -> None:
        self.led("green" if decision.accepted else "red")
        self.beep(1 if decision.accepted else 2)

    def receipted(self, receipt: Receipt) -> None:
        if receipt.status not in ("charged", "duplicate", "not_charged"):
            self.led("amber")

    def alarm(self, name: str, active: bool) -> None:
        if active:
            self.led("amber")
