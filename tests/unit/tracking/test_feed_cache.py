"""A feed is built at most once per interval however many ask for it, callers during a
build wait for it, and its JSON is made once per build."""

from __future__ import annotations

import threading
import time

from google.transit import gtfs_realtime_pb2

from tracking.feed_cache import FeedCache


def test_a_feed_is_built_once_per_interval_and_once_for_callers_that_arrive_together() -> None:
    builds: list[float] = []
    release = threading.Event()

    def build() -> gtfs_realtime_pb2.FeedMessage:
        builds.append(time.monotonic())
        release.wait(5)  # a slow build: the others arrive meanwhile
        feed = gtfs_realtime_pb2.FeedMessage()
        feed.header.gtfs_realtime_version = "2.0"
        feed.header.timestamp = len(builds)
        return feed

    cache = FeedCache(build, max_age_s=0.3)
    bodies: list[bytes] = []
    callers = [threading.Thread(target=lambda: bodies.append(cache.body())) for _ in range(8)]
    for t in callers:
        t.start()
    while not builds:
        time.sleep(0.001)
    release.set()
    for t in callers:
        t.join(5)
    assert len(builds) == 1 and len(set(bodies)) == 1 and len(bodies) == 8
    first = cache.as_json()
    assert first["header"]["timestamp"] == "1"
    assert cache.as_json() is first  # made once per build
    assert cache.message().header.timestamp == 1
    deadline = time.monotonic() + 5
    while cache.message().header.timestamp == 1:
        assert time.monotonic() < deadline, "the feed was never built again"
        time.sleep(0.01)
    assert len(builds) == 2 and builds[1] - builds[0] >= 0.3
    assert cache.as_json()["header"]["timestamp"] == "2"
