"""Learned travel times and arrival predictions: cells, neighbouring hours, fallbacks,
the pace of the vehicle, arrivals strictly increasing and never in the past, delays."""

from __future__ import annotations

from datetime import date

import pytest

from tests.unit.tracking.test_learn import LAT, STOP_M, lon_at
from tracking.learn import SegmentRow
from tracking.predict import (
    PACE_RANGE,
    STAND_MS,
    Cell,
    ConstantSpeed,
    LearnedTimes,
    arrival_departure,
    delays_s,
    paced,
    parse_progress,
    predict_arrivals,
    recent_pace,
    scheduled_ms,
    standing,
)
from tracking.schedule import StopRow, TripRow, build_schedule

DAY = date(2026, 12, 1)
STOPS = {f"S{i}": StopRow(f"S{i}", f"Halte {i}", LAT, lon_at(m)) for i, m in enumerate(STOP_M)}
SHAPES = {"east": [(LAT, lon_at(-200)), (LAT, lon_at(2000))]}
SCHEDULE = build_schedule(
    [TripRow("T1", "R1", "daily", 0, "Timur", "east"),
     TripRow("T2", "R1", "daily", 0, "Timur", "east")], STOPS, SHAPES,
    {"T1": [(i + 1, f"S{i}", None) for i in range(4)],
     "T2": [(i + 1, f"S{i}", 8 * 3600 + i * 120) for i in range(4)]})
PATTERN = SCHEDULE.patterns["T1"]
AT_8 = SCHEDULE.day_start_ms(DAY) + 8 * 3_600_000


def learned(**cells: tuple[int, int]) -> LearnedTimes:
    """Cells named like `s0h8=(n, mean_ms)`."""
    out = {}
    for name, (n, mean_ms) in cells.items():
        seg, hour = name[1:].split("h")
        out[("T1", int(seg), int(hour))] = Cell(n, n * mean_ms)
    return LearnedTimes(out, SCHEDULE.patterns)


def seg_m(i: int) -> float:
    return PATTERN.stops[i + 1].dist_m - PATTERN.stops[i].dist_m


def test_a_learned_cell_gives_its_mean_and_part_of_it_pro_rata() -> None:
    times = learned(s0h8=(5, 100_000))
    assert times.seconds(PATTERN, PATTERN.stops[0].dist_m, PATTERN.stops[1].dist_m,
                         AT_8) == pytest.approx(100.0)
    half = PATTERN.stops[0].dist_m + seg_m(0) / 2
    assert times.seconds(PATTERN, half, PATTERN.stops[1].dist_m, AT_8) == pytest.approx(50.0)


def test_a_thin_cell_borrows_from_the_hours_around_it() -> None:
    times = learned(s0h8=(1, 100_000), s0h9=(3, 140_000))
    assert times.segment_s(PATTERN, 0, 8) == pytest.approx(130.0)
    assert times.segment_s(PATTERN, 0, 10) == pytest.approx(140.0)  # 9 is enough
    assert times.segment_s(PATTERN, 0, 14) is None


def test_an_unlearned_segment_runs_at_the_patterns_learned_speed_then_constant() -> None:
    times = learned(s0h8=(4, int(seg_m(0) / 5.0 * 1000)))  # 5 m/s
    assert times.seconds(PATTERN, PATTERN.stops[1].dist_m, PATTERN.stops[2].dist_m,
                         AT_8) == pytest.approx(seg_m(1) / 5.0, rel=0.01)
    nothing = LearnedTimes({}, SCHEDULE.patterns, ConstantSpeed(default_mps=10.0))
    assert nothing.seconds(PATTERN, 0, 1000, AT_8) == pytest.approx(100.0)


def test_rows_of_several_days_are_pooled() -> None:
    rows = [SegmentRow("T1", 0, 8, "2026-11-30", 2, 200_000, 0),
            SegmentRow("T1", 0, 8, "2026-12-01", 2, 280_000, 0)]
    times = LearnedTimes.from_rows(rows, SCHEDULE.patterns)
    assert times.segment_s(PATTERN, 0, 8) == pytest.approx(120.0)


def test_arrivals_at_every_stop_ahead_strictly_increasing_from_now() -> None:
    times = learned(s0h8=(5, 100_000), s1h8=(5, 100_000), s2h8=(5, 100_000))
    at = PATTERN.stops[0].dist_m + 10
    arrivals = predict_arrivals(PATTERN, at, AT_8, times)
    assert [i for i, _ in arrivals] == [1, 2, 3]
    stamps = [ms for _, ms in arrivals]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert stamps[1] - stamps[0] == pytest.approx(100_000, abs=1)
    assert predict_arrivals(PATTERN, PATTERN.stops[-1].dist_m + 1, AT_8, times) == []


def test_a_bus_standing_still_for_long_predicts_nothing_in_the_past() -> None:
    zero = LearnedTimes({}, SCHEDULE.patterns, ConstantSpeed(default_mps=1e9))
    # the same place an hour on: arrivals from now, a second apart at least
    later = AT_8 + 3_600_000
    arrivals = predict_arrivals(PATTERN, 5.0, later, zero, pace=PACE_RANGE[1])
    assert all(ms >= later for _, ms in arrivals)
    assert all(b - a >= 1000 for (_, a), (_, b) in zip(arrivals, arrivals[1:], strict=False))


def test_pace_of_a_late_bus_slows_the_near_stops_more_than_the_far() -> None:
    times = ConstantSpeed(default_mps=10.0)
    progress = [(AT_8 + k * 30_000, 150 * k) for k in range(11)]  # 5 m/s over 5 min
    pace = recent_pace(PATTERN, progress, times)
    assert pace == pytest.approx(2.0 if PACE_RANGE[1] >= 2 else PACE_RANGE[1])
    assert recent_pace(PATTERN, progress[:2], times) == 1.0  # 150 m: too little to tell
    assert paced(pace, 0) == pytest.approx(pace)
    assert 1.0 < paced(pace, 3600) < paced(pace, 600) < pace
    slow = predict_arrivals(PATTERN, 0.0, AT_8, times, pace)
    usual = predict_arrivals(PATTERN, 0.0, AT_8, times)
    assert all(s > u for (_, s), (_, u) in zip(slow, usual, strict=True))


def test_a_long_stand_is_left_out_of_the_pace_a_red_light_is_not() -> None:
    times = ConstantSpeed(default_mps=10.0)
    # As the vehicle's record keeps it: a point every 30 s. Broken down 6 minutes at
    # 400 m (a few metres of GPS noise), then 3 minutes on at the usual 10 m/s.
    stood = [(AT_8 + k * 30_000, 400 + k % 2 * 4) for k in range(13)]
    moving = [(stood[-1][0] + k * 30_000, 400 + 300 * k) for k in range(1, 7)]
    before = [(AT_8 - k * 10_000, 400 - 100 * k) for k in (4, 3, 2, 1)]  # 10 m/s too
    progress = before + stood + moving
    assert standing(progress) == [(4, 16)]
    assert recent_pace(PATTERN, progress, times) == pytest.approx(1.0)
    # Counted, the six minutes would have held the pace at its upper clamp.
    assert recent_pace(PATTERN, [(progress[4][0], 400), progress[-1]],
                       times) == PACE_RANGE[1]
    # Standing now: the pace is what it ran before it stopped.
    assert recent_pace(PATTERN, before + stood, times) == pytest.approx(1.0)
    # A minute at a red light every 600 m is the traffic: it stays in.
    light = []
    for k in range(4):
        t0 = AT_8 + k * 120_000
        light += [(t0, 600 * k), (t0 + 30_000, 600 * k), (t0 + 60_000, 600 * k + 600)]
    assert standing(light) == []
    assert recent_pace(PATTERN, light, times) == pytest.approx(420 / (2400 / 10.0))
    assert STAND_MS > 60_000


def test_the_arrival_is_a_dwell_before_the_departure_and_never_goes_back() -> None:
    departures = [(1, AT_8 + 5_000), (2, AT_8 + 100_000), (3, AT_8 + 108_000)]
    got = arrival_departure(departures, AT_8, dwell_s=15)
    assert got == [(1, AT_8, AT_8 + 5_000),  # not before now
                   (2, AT_8 + 85_000, AT_8 + 100_000),
                   (3, AT_8 + 101_000, AT_8 + 108_000)]  # after the stop before
    stamps = [t for _, a, d in got for t in (a, d)]
    assert stamps == sorted(stamps)
    assert all(a <= d for _, a, d in got)


def test_progress_text_is_read_and_bad_pairs_skipped() -> None:
    assert parse_progress("1000:5 2000:x 3000:17.0") == [(1000, 5), (3000, 17)]
    assert parse_progress("") == []


def test_delay_of_a_timed_trip_is_predicted_minus_scheduled() -> None:
    trip = SCHEDULE.trips["T2"]
    scheduled = scheduled_ms(SCHEDULE, trip, DAY)
    assert scheduled[0] == AT_8
    late = [(1, AT_8 + 120_000 + 90_000), (2, AT_8 + 240_000 - 30_000)]
    assert delays_s(late, scheduled) == [90, -30]
    assert delays_s(late, scheduled_ms(SCHEDULE, SCHEDULE.trips["T1"], DAY)) == [None, None]


def test_the_source_reads_the_last_days_once_per_ttl_and_survives_the_database_away(
) -> None:
    from tracking.predict import LearnedSource

    asked: list[str] = []
    away = False

    def rows(since: str) -> list[SegmentRow]:
        asked.append(since)
        if away:
            raise OSError("database away")
        return [SegmentRow("T1", 0, 8, "2026-11-30", 4, 400_000, 0)]

    source = LearnedSource(rows, lambda: SCHEDULE, days=14, ttl_s=0.0,
                           clock=lambda: AT_8 / 1000)
    assert source().segment_s(PATTERN, 0, 8) == pytest.approx(100.0)
    assert asked == ["2026-11-17"]
    away = True
    assert source().segment_s(PATTERN, 0, 8) == pytest.approx(100.0)  # kept
    cached = LearnedSource(rows, lambda: SCHEDULE, ttl_s=300.0)
    first = cached()
    assert cached() is first  # not read again within the TTL
