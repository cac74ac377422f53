"""A GTFS-Realtime feed built at most once per interval, whoever asks for it.

A public feed is polled by every consumer that follows the city's buses (journey
planners, screens, the control room), each on its own clock; built per request, a fleet
of thousands would cost each poll the whole fleet's read and encoding, in the gateway's
interpreter beside the tap path. Cached, the cost is one build per interval per gateway,
however many poll (docs/benchmarks.md,
"Mixed load after the stream hub and the feed cache").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.transit import gtfs_realtime_pb2


class FeedCache:
    """`build()`'s FeedMessage, its protobuf and (once asked for) its JSON, made again
    when `max_age_s` old. Under a lock: callers arriving during a build wait for it
    instead of building again."""

    def __init__(self, build: Callable[[], gtfs_realtime_pb2.FeedMessage],
                 max_age_s: float) -> None:
        self.build, self.max_age_s = build, max_age_s
        self._lock = threading.Lock()
        self._built = 0.0
        self._message: gtfs_realtime_pb2.FeedMessage | None = None
        self._body = b""
        self._json: dict[str, Any] | None = None

    def message(self) -> gtfs_realtime_pb2.FeedMessage:
        """The feed as a message (not to be changed by the caller)."""
        with self._lock:
            return self._fresh()

    def body(self) -> bytes:
        """The feed as protobuf."""
        with self._lock:
            self._fresh()
            return self._body

    def as_json(self) -> dict[str, Any]:
        """The feed as JSON (`MessageToDict`), made once per build."""
        with self._lock:
            message = self._fresh()
            if self._json is None:
                self._json = MessageToDict(message)
            return self._json

    def _fresh(self) -> gtfs_realtime_pb2.FeedMessage:
        now = time.monotonic()
        if self._message is None or now - self._built >= self.max_age_s:
            self._message = self.build()
            self._body = self._message.SerializeToString()
            self._json = None
            self._built = now
        return self._message
