"""The log of when validators were heard: noted without I/O, written in one go, kept
when Redis cannot take it (a hand-written store; no Redis)."""

from __future__ import annotations

from collections.abc import Mapping

from tracking.heard import HeardLog


class Store:
    def __init__(self) -> None:
        self.written: list[dict[str, int]] = []
        self.failing = False

    def heard(self, when: Mapping[str, int]) -> None:
        if self.failing:
            raise ConnectionError("Redis away")
        self.written.append(dict(when))


def test_the_newest_time_per_device_is_written_once() -> None:
    store = Store()
    log = HeardLog(store)
    log.note(["A", "B"], 2_000)
    log.note(["A"], 1_000)  # older: does not win
    log.flush()
    log.flush()  # nothing new: nothing written
    assert store.written == [{"A": 2_000, "B": 2_000}]


def test_what_could_not_be_written_is_kept_for_the_next_try() -> None:
    store = Store()
    log = HeardLog(store)
    store.failing = True
    log.note(["A"], 1_000)
    log.flush()
    log.note(["A", "B"], 3_000)
    store.failing = False
    log.flush()
    assert store.written == [{"A": 3_000, "B": 3_000}]


def test_stop_writes_what_is_held() -> None:
    store = Store()
    log = HeardLog(store, interval_s=60)
    log.start()
    log.note(["A"], 5)
    log.stop()
    assert store.written == [{"A": 5}]
