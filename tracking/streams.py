"""The live vehicle streams one gateway serves: how many at once, and one hub that feeds
them all.

An open stream holds one of the HTTP server's threads for as long as it lasts; the
gateway has threads for every stream slot plus the rest of the API, so the caps are what
keep the API answering however many streams are asked for, and the per-token cap stops
one client from taking every slot (docs/operations.md, "Serving many clients"). A stream
beyond a cap is refused at once, before it holds a thread for longer than that answer.

The hub (`EventHub`) is the gateway's one subscription to the position events: each
batch is rendered once, as one piece of text, and handed to every open stream, which
writes it in one go: per stream, a queue append and a write a batch, where each stream
had its own subscription, decoding, and a rendering and a write a position (docs/benchmarks.md,
"Mixed load after the stream hub and the feed cache").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from enum import Enum
from typing import Any

from tracking.store import Stop

log = logging.getLogger(__name__)

STREAM_BACKLOG = 256  # batches a stream may fall behind before its oldest are dropped


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


Batch = list[dict[str, Any]]


class Subscription:
    """One stream's queue of rendered batches, oldest first; a stream `STREAM_BACKLOG`
    batches behind loses its oldest (a later position of each bus follows)."""

    def __init__(self, hub: EventHub, backlog: int) -> None:
        self._hub = hub
        self._chunks: deque[str] = deque()
        self._backlog = backlog
        self._ready = threading.Condition()
        self.dropped = 0  # batches lost to a reader this far behind

    def put(self, chunk: str) -> None:
        with self._ready:
            if len(self._chunks) >= self._backlog:
                self._chunks.popleft()
                self.dropped += 1
            self._chunks.append(chunk)
            self._ready.notify()

    def get(self, timeout: float) -> str | None:
        """Every batch rendered since the last call, as one text, or None after
        `timeout` seconds with nothing."""
        with self._ready:
            if not self._chunks:
                self._ready.wait(timeout)
            if not self._chunks:
                return None
            out = "".join(self._chunks)
            self._chunks.clear()
            return out

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    """The gateway's one reader of the position events (`source`, such as
    `TrackingStore.events`), running while any stream is open: each batch is rendered
    once by `render` and queued for every subscription. A Redis away is retried every
    second; the streams stay open meanwhile (their keep-alives go on)."""

    def __init__(self, source: Callable[[Stop], Iterator[Batch | None]],
                 render: Callable[[Batch], str], stopping: threading.Event,
                 backlog: int = STREAM_BACKLOG) -> None:
        self.source, self.render, self.stopping = source, render, stopping
        self.backlog = backlog
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def subscribe(self) -> Subscription:
        """A queue of the batches from now on; `close` it when the stream ends."""
        sub = Subscription(self, self.backlog)
        with self._lock:
            self._subs.add(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stream-hub",
                                                daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def is_set(self) -> bool:
        """The source's stop: the gateway stopping, or no stream left to feed."""
        return self.stopping.is_set() or not self._subs

    def _run(self) -> None:
        failing = False
        while True:
            try:
                for batch in self.source(self):
                    if batch is None:
                        continue
                    with self._lock:
                        subs = list(self._subs)
                    if subs:
                        chunk = self.render(batch)
                        for sub in subs:
                            sub.put(chunk)
                    if failing:
                        log.info("vehicle streams fed again")
                        failing = False
            except Exception as exc:  # Redis away: the streams wait, then go on
                if not failing:
                    log.warning("vehicle streams wait for the position events: %s", exc)
                failing = True
                self.stopping.wait(1.0)
            with self._lock:
                if self.is_set():
                    self._thread = None
                    return


def stream_lines(sub: Subscription, first: str, ending: Stop,
                 quiet_s: float = 15.0) -> Iterator[str]:
    """A stream's text: `first`, then each batch rendered since the last write, and a
    `: keep-alive` comment after each quiet spell of `quiet_s`, until `ending` is set;
    the subscription is closed however the stream ends."""
    try:
        yield first
        quiet_since = time.monotonic()
        while not ending.is_set():
            chunk = sub.get(timeout=1.0)
            if chunk is None:
                if time.monotonic() - quiet_since >= quiet_s:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            quiet_since = time.monotonic()
            yield chunk
    finally:
        sub.close()
