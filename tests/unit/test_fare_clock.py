"""The test clock's own rules: the time it picks is never in the early window, never
ahead of now, and within a day of it, whatever the hour."""

from __future__ import annotations

from datetime import datetime

from tests.support.fare_clock import WIB, full_fare_time, regular_fare_at

MIN = 60_000
DAY = 86_400_000


def wib_ms(hour: int, minute: int = 0, ms: int = 0) -> int:
    return int(datetime(2026, 12, 1, hour, minute, tzinfo=WIB).timestamp()) * 1000 + ms


def test_the_early_window_is_from_five_to_seven_local() -> None:
    assert [regular_fare_at(wib_ms(4, 59, 59_999)), regular_fare_at(wib_ms(5)),
            regular_fare_at(wib_ms(6, 59, 59_999)), regular_fare_at(wib_ms(7)),
            regular_fare_at(wib_ms(0)), regular_fare_at(wib_ms(23, 59))] == [
        5000, 2000, 2000, 5000, 5000, 5000]


def test_the_chosen_time_pays_the_regular_fare_at_every_hour() -> None:
    start = wib_ms(0, 0, 123)
    for now in range(start, start + DAY, 7 * MIN):
        for age in (0, 3 * MIN, 10 * MIN):
            t = full_fare_time(age, now_ms=now)
            assert now - age - DAY < t <= now - age, (now, age, t)
            assert datetime.fromtimestamp(t / 1000, WIB).strftime("%H:%M:%S.%f") == \
                "10:00:00.000000"
            # The offsets the tests take from it: a minute before, up to 4 minutes after.
            assert {regular_fare_at(t + d) for d in (-MIN, 0, 4 * MIN)} == {5000}


def test_at_ten_oclock_itself_it_is_now() -> None:
    assert full_fare_time(0, now_ms=wib_ms(10)) == wib_ms(10)
    assert full_fare_time(1, now_ms=wib_ms(10)) == wib_ms(10) - DAY
