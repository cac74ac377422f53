"""Learning segment times from tracks: passages at stops, sums per segment and hour with
outliers left out, and the day learned into the database once."""

from __future__ import annotations

import logging
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from ledger.adapters.db import Base, make_engine, session_factory
from tracking.adapters.models import LearnedDay, SegmentDay, vehicle_positions
from tracking.learn import (
    GAP_MS,
    KEEP_DAYS,
    LEFT_M,
    Learner,
    SegmentDays,
    SegmentStats,
    closed_days,
    learn_command,
    learn_day,
    learn_pending,
    passages,
    pending_days,
)
from tracking.schedule import Schedule, StopRow, TripRow, build_schedule

LAT = -7_290_000
LON0 = 112_700_000
M_PER_E6 = 0.1113195 * 0.99191  # metres per micro-degree of longitude at 7.29 S
STOP_M = [0.0, 500.0, 1000.0, 1500.0]
DAY = date(2026, 12, 1)


def lon_at(dist_m: float) -> int:
    return LON0 + int(round(dist_m / M_PER_E6))


def schedule() -> Schedule:
    stops = {f"S{i}": StopRow(f"S{i}", f"Halte {i}", LAT, lon_at(m))
             for i, m in enumerate(STOP_M)}
    shapes = {"east": [(LAT, lon_at(0)), (LAT, lon_at(2000))]}
    times = {"T1": [(i + 1, f"S{i}", None) for i in range(len(STOP_M))]}
    return build_schedule([TripRow("T1", "R1", "daily", 0, "Timur", "east")], stops,
                          shapes, times)


SCHEDULE = schedule()
PATTERN = SCHEDULE.patterns["T1"]


def drive(t0: int, speed_mps: float, until_m: float, step_ms: int = 5_000,
          start_m: float = 0.0) -> list[tuple[int, int]]:
    out = []
    d, t = start_m, t0
    while d <= until_m:
        out.append((t, int(d)))
        t += step_ms
        d += speed_mps * step_ms / 1000
    return out


def test_a_steady_bus_passes_each_stop_when_it_is_just_beyond_it() -> None:
    passed = passages(PATTERN, drive(0, 10.0, 1600))
    assert [i for i, _ in passed] == [0, 1, 2, 3]
    for (_i, ts), stop_m in zip(passed, STOP_M, strict=True):
        assert ts == pytest.approx((stop_m + LEFT_M) * 100, abs=150)


def test_a_bus_standing_at_a_stop_passes_it_when_it_leaves() -> None:
    points = drive(0, 10.0, 490)
    t = points[-1][0]
    # 60 s at the stop, GPS a few metres either side of it
    points += [(t + 5_000 * k, 500 + (-6 if k % 2 else 7)) for k in range(1, 13)]
    leave = points[-1][0]
    points += [(leave + 5_000 * k, 500 + 50 * k) for k in range(1, 5)]
    passed = dict(passages(PATTERN, points))
    assert passed[1] >= leave
    assert passed[1] - leave <= 3_000


def test_jitter_backwards_and_a_lone_jump_ahead_pass_no_stop_early() -> None:
    points = [(0, 0), (5_000, 50), (10_000, 40), (15_000, 900), (20_000, 100),
              (25_000, 150), (30_000, 140), (35_000, 200)]
    passed = passages(PATTERN, points)
    assert [i for i, _ in passed] == [0]  # not stops 1 or 2, which it never reached


def test_no_passage_is_made_up_across_a_gap() -> None:
    points = drive(0, 10.0, 450) + [(45_000 + GAP_MS + 1_000, 1100),
                                    (45_000 + GAP_MS + 6_000, 1150)]
    passed = passages(PATTERN, points)
    assert [i for i, _ in passed] == [0]
    # ... but a stop passed after the gap is dated from positions on either side of it
    points += [(45_000 + GAP_MS + 11_000, 1530)]
    assert [i for i, _ in passages(PATTERN, points)] == [0, 3]


def test_starting_again_from_the_terminal_passes_the_stops_again() -> None:
    first = drive(0, 10.0, 1600)
    again = drive(first[-1][0] + 60_000, 10.0, 700)
    passed = passages(PATTERN, first + again)
    assert [i for i, _ in passed] == [0, 1, 2, 3, 0, 1]


def test_segment_stats_sum_per_hour_and_leave_a_breakdown_out() -> None:
    stats = SegmentStats()
    for ms in (60_000, 62_000, 58_000, 61_000, 59_000):
        stats.add("T1", 0, 8, "2026-12-01", ms)
    stats.add("T1", 0, 9, "2026-12-01", 40 * 60_000)  # broke down: 40 minutes
    stats.add("T1", 0, 9, "2026-12-01", 70_000)
    rows = {r.hour: r for r in stats.rows()}
    assert rows[8].n == 5 and rows[8].sum_ms == 300_000
    assert rows[8].sumsq_s == sum(round(s * s) for s in (60, 62, 58, 61, 59))
    assert rows[9].n == 1 and rows[9].sum_ms == 70_000
    assert stats.dropped == 1


def test_segment_times_come_from_consecutive_passages_only() -> None:
    stats = SegmentStats()
    noted = stats.add_passages("T1", [(0, 0), (1, 60_000), (3, 200_000), (0, 300_000),
                                      (1, 350_000)], "2026-12-01", lambda _ms: 7)
    assert noted == 2
    assert [(r.from_index, r.n, r.sum_ms) for r in stats.rows()] == [(0, 2, 110_000)]


def test_closed_days_end_an_hour_after_the_next_day_begins() -> None:
    start = SCHEDULE.day_start_ms(DAY + timedelta(days=1))
    assert closed_days(SCHEDULE, start + 30 * 60_000, 2) == [DAY - timedelta(days=1)]
    assert closed_days(SCHEDULE, start + 61 * 60_000, 2) == [DAY - timedelta(days=1), DAY]


@pytest.fixture()
def sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path}/learn.db")
    Base.metadata.create_all(engine)
    yield session_factory(engine)
    engine.dispose()


def test_a_day_of_positions_is_learned_once_and_again_replaces_it(sessions) -> None:  # type: ignore[no-untyped-def]
    zero = SCHEDULE.day_start_ms(DAY)
    rows = []
    for n, hour in enumerate((8, 8, 17)):
        for ts, d in drive(zero + hour * 3_600_000 + n * 600_000, 10.0, 1600):
            rows.append({"vehicle_id": f"B{n}", "ts": ts, "device_id": f"D{n}",
                         "route_id": "R1", "trip_id": "T1", "lat_e6": LAT + 30,
                         "lon_e6": lon_at(d)})
    # a bus on no trip, and one the day before: neither is learned
    rows.append({**rows[0], "vehicle_id": "X", "trip_id": None})
    rows.append({**rows[0], "vehicle_id": "Y", "ts": zero - 1})
    with sessions.begin() as session:
        session.execute(insert(vehicle_positions), rows)
    learned = learn_day(sessions, SCHEDULE, DAY)
    assert learned is not None and learned.passages == 12 and learned.segments == 9
    with sessions() as session:
        got = {(r.from_index, r.hour): (r.n, r.sum_ms // r.n)
               for r in session.scalars(select(SegmentDay))}
        (pattern_id,) = set(session.scalars(select(SegmentDay.pattern_id)))
        assert session.get(LearnedDay, "2026-12-01").passages == 12
    assert got[(0, 8)][0] == 2 and got[(2, 17)][0] == 1
    assert all(49_000 <= mean <= 51_000 for _n, mean in got.values())

    now = SCHEDULE.day_start_ms(DAY + timedelta(days=2)) + 7_200_000
    # A gateway stopping learns no further day.
    assert learn_pending(sessions, SCHEDULE, now, days=2, stopping=lambda: True) == []
    done = learn_pending(sessions, SCHEDULE, now, days=2)
    assert [d.day for d in done] == ["2026-12-02"]  # 1 December is learned already
    assert learn_pending(sessions, SCHEDULE, now, days=2) == []
    again = learn_day(sessions, SCHEDULE, DAY)
    assert again is not None and again.rows == learned.rows
    with sessions() as session:
        assert len(session.scalars(select(SegmentDay)).all()) == learned.rows

    # What predictions read: the rows of the days since, summed per segment and hour.
    with sessions.begin() as session:
        session.add(SegmentDay(pattern_id=pattern_id, from_index=0, hour=8, day="2026-11-30",
                               n=3, sum_ms=3 * 40_000, sumsq_s=3 * 1600))
    summed = {(r.from_index, r.hour): (r.n, r.sum_ms)
              for r in SegmentDays(sessions)("2026-11-30")}
    n, total = got[(0, 8)][0], got[(0, 8)][0] * got[(0, 8)][1]
    assert summed[(0, 8)][0] == n + 3
    assert abs(summed[(0, 8)][1] - (total + 120_000)) < n  # got keeps the mean, floored
    assert {k: v[0] for k, v in summed.items() if k != (0, 8)} == {
        k: v[0] for k, v in got.items() if k != (0, 8)}
    assert SegmentDays(sessions)("2026-12-03") == []


def test_the_terminal_at_the_shapes_end_is_passed_on_arriving() -> None:
    stops = {f"S{i}": StopRow(f"S{i}", f"Halte {i}", LAT, lon_at(m))
             for i, m in enumerate(STOP_M)}
    ends_there = build_schedule(
        [TripRow("T1", "R1", "daily", 0, "Timur", "short")], stops,
        {"short": [(LAT, lon_at(0)), (LAT, lon_at(1500))]},
        {"T1": [(i + 1, f"S{i}", None) for i in range(len(STOP_M))]})
    pattern = ends_there.patterns["T1"]
    points = [*drive(0, 10.0, pattern.length_m), (200_000, int(pattern.length_m))]
    passed = passages(pattern, points)
    assert [i for i, _ in passed] == [0, 1, 2, 3]
    assert passed[-1][1] == pytest.approx((pattern.length_m - LEFT_M) * 100, abs=600)


def test_pending_days_skip_the_learned_and_those_not_kept_and_take_the_newest() -> None:
    now = SCHEDULE.day_start_ms(DAY + timedelta(days=1)) + 7_200_000
    labels = [d.isoformat() for d in pending_days(SCHEDULE, now, 30, {"2026-11-30"})]
    assert labels[-2:] == ["2026-11-29", "2026-12-01"]
    assert len(labels) == KEEP_DAYS - 1  # back to today - KEEP_DAYS, one learned already
    assert labels[0] == (DAY + timedelta(days=1 - KEEP_DAYS)).isoformat()
    assert pending_days(SCHEDULE, now, 30, set(), most=1) == [DAY]


def test_learning_a_day_removes_the_rows_older_than_those_kept(sessions) -> None:  # type: ignore[no-untyped-def]
    old = (DAY - timedelta(days=KEEP_DAYS)).isoformat()
    kept = (DAY - timedelta(days=KEEP_DAYS - 2)).isoformat()
    with sessions.begin() as session:
        for day in (old, kept):
            session.add(SegmentDay(pattern_id="p", from_index=0, hour=8, day=day, n=1,
                                   sum_ms=1000, sumsq_s=1))
            session.add(LearnedDay(day=day, learned_ms=0, passages=0))
    now = SCHEDULE.day_start_ms(DAY + timedelta(days=1)) + 7_200_000
    assert [d.day for d in learn_pending(sessions, SCHEDULE, now, days=1)] == [DAY.isoformat()]
    with sessions() as session:
        assert set(session.scalars(select(SegmentDay.day))) == {kept}
        assert set(session.scalars(select(LearnedDay.day))) == {kept, DAY.isoformat()}


def test_the_gateways_learner_runs_its_command_in_a_child_and_logs_its_lines(
        caplog: pytest.LogCaptureFixture) -> None:
    said = "import sys; print('2026-12-01: 12 stop passages'); sys.exit(0)"
    learner = Learner([sys.executable, "-c", said], env={})
    with caplog.at_level(logging.INFO, logger="tracking.learn"):
        assert learner.run_once() == 0
    assert "learner: 2026-12-01: 12 stop passages" in caplog.text
    failing = Learner([sys.executable, "-c", "import sys; sys.exit('error: no database')"])
    with caplog.at_level(logging.INFO, logger="tracking.learn"):
        assert failing.run_once() == 1
    assert "exit status 1: error: no database" in caplog.text
    assert learn_command(7)[1:] == ["-m", "transit", "predictions", "learn", "--days", "7",
                                    "--most", "1"]


def test_stopping_the_learner_ends_its_child() -> None:
    learner = Learner([sys.executable, "-c", "import time; time.sleep(60)"], every_s=3600)
    learner.start()
    deadline = time.monotonic() + 10
    while learner._child is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child = learner._child
    assert child is not None
    started = time.monotonic()
    learner.stop()
    assert child.poll() is not None and time.monotonic() - started < 10
    assert learner.run_once() is None  # stopped: runs no more
