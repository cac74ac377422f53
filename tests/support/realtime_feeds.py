"""Reading the gateway's GTFS-Realtime vehicle positions as they are after a change.

The feed is built at most once a second, however many poll it (tracking.feed_cache): a
read right after a position was stored may get the build of a moment before. These wait
for a build made after they were called (its header's time, whole seconds, past the
second the call began in), so that what a test stored before is in it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from google.transit import gtfs_realtime_pb2

from tests.support.clients import Http

PATH = "/gtfs-rt/vehicle-positions"
Feed = TypeVar("Feed")


def fresh_positions(http: Http, timeout: float = 10.0) -> gtfs_realtime_pb2.FeedMessage:
    """The protobuf feed of a build made after this call began."""
    def parsed(body: Any) -> tuple[int, gtfs_realtime_pb2.FeedMessage]:
        assert isinstance(body, bytes), body
        feed = gtfs_realtime_pb2.FeedMessage.FromString(body)
        return feed.header.timestamp, feed

    return _fresh(http, PATH, parsed, timeout)


def fresh_positions_json(http: Http, timeout: float = 10.0) -> dict[str, Any]:
    """The JSON feed (`?format=json`) of a build made after this call began."""
    def parsed(doc: Any) -> tuple[int, dict[str, Any]]:
        assert isinstance(doc, dict), doc
        return int(doc["header"]["timestamp"]), doc

    return _fresh(http, f"{PATH}?format=json", parsed, timeout)


def _fresh(http: Http, path: str, parsed: Callable[[Any], tuple[int, Feed]],
           timeout: float) -> Feed:
    after = int(time.time())
    deadline = time.monotonic() + timeout
    while True:
        status, body = http.get(path)
        assert status == 200, (status, body)
        built, feed = parsed(body)
        if built > after:
            return feed
        assert time.monotonic() < deadline, f"no build of {path} after {after} in {timeout}s"
        time.sleep(0.05)
