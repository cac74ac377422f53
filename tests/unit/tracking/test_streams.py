"""The stream caps: per holder first, then the gateway's; a released slot is taken again.
The hub: each batch rendered once for every stream, a stream far behind loses its oldest,
the reading ends with the last stream and starts again with the next."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from tracking.store import Stop
from tracking.streams import EventHub, Refusal, StreamSlots, stream_lines


def test_a_holder_is_refused_beyond_its_cap_and_everyone_beyond_the_gateways() -> None:
    slots = StreamSlots(total=3, per_holder=2)
    assert slots.take("a") is None and slots.take("a") is None
    assert slots.take("a") is Refusal.HOLDER_FULL
    assert slots.take("b") is None
    assert slots.open() == 3
    # Full: the holder's own cap is named first, then the gateway's.
    assert slots.take("a") is Refusal.HOLDER_FULL
    assert slots.take("b") is Refusal.GATEWAY_FULL
    assert slots.take("c") is Refusal.GATEWAY_FULL


def test_a_released_slot_is_free_again_for_anyone() -> None:
    slots = StreamSlots(total=2, per_holder=2)
    assert slots.take("a") is None and slots.take("a") is None
    slots.release("a")
    assert slots.open() == 1
    assert slots.take("c") is None
    assert slots.take("a") is Refusal.GATEWAY_FULL
    slots.release("a")
    slots.release("c")
    assert slots.open() == 0
    assert slots.take("a") is None and slots.take("a") is None


def test_a_stream_far_behind_loses_its_oldest_batches_only() -> None:
    hub = EventHub(lambda stop: iter(()), lambda batch: "", threading.Event(), backlog=4)
    sub = hub.subscribe()
    for n in range(6):
        sub.put(f"{n};")
    assert sub.get(timeout=0) == "2;3;4;5;" and sub.dropped == 2
    assert sub.get(timeout=0.01) is None
    sub.close()


def test_the_hub_renders_each_batch_once_for_every_stream_and_ends_with_the_last() -> None:
    batches: queue.Queue[list[dict[str, Any]] | None] = queue.Queue()
    rendered: list[int] = []
    ended = threading.Event()

    def source(stop: Stop) -> Iterator[list[dict[str, Any]] | None]:
        while not stop.is_set():
            try:
                yield batches.get(timeout=0.05)
            except queue.Empty:
                continue
        ended.set()

    def render(batch: list[dict[str, Any]]) -> str:
        rendered.append(len(batch))
        return "".join(f"{e['n']};" for e in batch)

    hub = EventHub(source, render, threading.Event())
    subs = [hub.subscribe() for _ in range(3)]
    batches.put([{"n": 1}, {"n": 2}])
    batches.put(None)  # a quiet spell: nothing rendered
    batches.put([{"n": 3}])
    for sub in subs:
        got = ""
        while got != "1;2;3;":
            chunk = sub.get(timeout=5)
            assert chunk is not None, got
            got += chunk
    assert rendered == [2, 1]
    for sub in subs:
        sub.close()
    assert ended.wait(5), "the hub went on reading with no stream open"
    # A stream opened later starts the reading again.
    later = hub.subscribe()
    batches.put([{"n": 4}])
    assert later.get(timeout=5) == "4;"
    later.close()


def test_a_stream_writes_its_first_text_then_batches_and_keep_alives_until_it_ends() -> None:
    hub = EventHub(lambda stop: iter(()), lambda batch: "", threading.Event())
    sub = hub.subscribe()
    ending = threading.Event()
    lines = stream_lines(sub, "first", ending, quiet_s=0.0)
    assert next(lines) == "first"
    sub.put("a;")
    assert next(lines) == "a;"
    assert next(lines) == ": keep-alive\n\n"  # nothing came within a second
    ending.set()
    assert list(lines) == []
    assert hub.is_set()  # no subscription left: the hub's reading ends
