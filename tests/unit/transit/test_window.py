"""The span of believable event times (contract section 10), at its edges."""

from __future__ import annotations

import pytest

from transit.window import DAY_MS, DEFAULT_WINDOW, MAX_AHEAD_MS, EventWindow

NOW = 1_764_313_202_123  # 2025-11-28 14:00:02 WIB


def test_the_contract_window_is_seven_days_back_and_five_minutes_ahead() -> None:
    assert DEFAULT_WINDOW.max_age_days == 7 and MAX_AHEAD_MS == 300_000
    assert DEFAULT_WINDOW.contains(NOW, NOW)
    assert DEFAULT_WINDOW.contains(NOW + 300_000, NOW)
    assert not DEFAULT_WINDOW.contains(NOW + 300_001, NOW)
    assert DEFAULT_WINDOW.contains(NOW - 7 * DAY_MS, NOW)
    assert not DEFAULT_WINDOW.contains(NOW - 7 * DAY_MS - 1, NOW)


@pytest.mark.parametrize("ts", [0, 32_503_680_000_000, 253_402_300_800_000, 2**63 - 1])
def test_times_no_calendar_can_take_are_out_of_range(ts: int) -> None:
    assert DEFAULT_WINDOW.refusal(ts, NOW) == "ts_out_of_range"
    assert DEFAULT_WINDOW.refusal(NOW - 1000, NOW) is None


def test_the_age_limit_is_a_setting() -> None:
    assert EventWindow(30).contains(NOW - 29 * DAY_MS, NOW)
    assert not EventWindow(1).contains(NOW - DAY_MS - 1, NOW)
    with pytest.raises(ValueError):
        EventWindow(0)
