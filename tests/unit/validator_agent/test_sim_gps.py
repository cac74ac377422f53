"""The simulated GPS of a bus on a timetable (`--gps sim:PLAN.json`): it follows the
timetable with its delay, stands at stops and at the terminal until its next departure,
and runs k times faster at time scale k while its fixes carry the wall clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from transit.errors import TransitError
from validator_agent.adapters.sim_gps import cumulative_m, follow, plan_of
from validator_agent.cli import _gps_feed

EPOCH = 1_764_000_000_000
# A straight street north to south, three stops ~1.1 km apart; the timetable drives it at
# 10 m/s and stands 20 s at the middle stop.
SHAPE = [[-7.2400, 112.7400], [-7.2500, 112.7400], [-7.2600, 112.7400]]
STOPS_M = [0.0, round(cumulative_m([tuple(p) for p in SHAPE])[1], 1),
           round(cumulative_m([tuple(p) for p in SHAPE])[2], 1)]
ARRIVE = [0, round(STOPS_M[1] / 10), round(STOPS_M[1] / 10) + 20 + round(
    (STOPS_M[2] - STOPS_M[1]) / 10)]
DEPART = [0, ARRIVE[1] + 20, ARRIVE[2]]
MIN = 60_000


def plan(**how: Any) -> dict[str, Any]:
    back = {"shape": SHAPE[::-1], "stops_m": [STOPS_M[2] - m for m in STOPS_M[::-1]],
            "arrive_s": ARRIVE, "depart_s": DEPART}
    return {"epoch_ms": EPOCH, "runs": {"out": {"shape": SHAPE, "stops_m": STOPS_M,
                                                "arrive_s": ARRIVE, "depart_s": DEPART},
                                        "back": back},
            "legs": [{"trip_id": "T-out-1", "run": "out", "start_ms": EPOCH + 10 * MIN},
                     {"trip_id": "T-back-1", "run": "back", "start_ms": EPOCH + 20 * MIN}],
            **how}


def test_an_on_time_bus_is_at_each_stop_when_the_timetable_says() -> None:
    p = plan_of(plan())
    start = EPOCH + 10 * MIN
    for i, lat in enumerate((-7.24, -7.25)):
        w = p.where(start + ARRIVE[i] * 1000)
        assert (round(w.lat, 5), w.trip_id, round(w.late_s)) == (lat, "T-out-1", 0)
    # At the last stop its trip is over.
    assert (round(p.where(start + ARRIVE[2] * 1000).lat, 5),
            p.where(start + ARRIVE[2] * 1000).trip_id) == (-7.26, None)
    halfway = p.where(start + ARRIVE[1] * 500)
    assert halfway.lat == pytest.approx(-7.245, abs=1e-5) and halfway.speed_mps == \
        pytest.approx(10, rel=0.01)
    assert round(halfway.bearing) == 180  # southwards
    dwelling = p.where(start + (ARRIVE[1] + 10) * 1000)
    assert (dwelling.speed_mps, round(dwelling.lat, 5)) == (0.0, -7.25)


def test_a_late_bus_is_where_the_timetable_was_its_delay_before() -> None:
    on_time, late = plan_of(plan()), plan_of(plan(delay_s=180))
    for at_s in range(0, ARRIVE[2], 15):
        t = EPOCH + 10 * MIN + 180_000 + at_s * 1000
        w, then = late.where(t), on_time.where(t - 180_000)
        assert (w.lat, w.lon, w.speed_mps) == pytest.approx((then.lat, then.lon,
                                                             then.speed_mps))
        assert w.trip_id == "T-out-1" and round(w.late_s) == 180
    # Before its late start it still stands at the first stop.
    assert late.where(EPOCH + 11 * MIN).speed_mps == 0
    assert round(late.where(EPOCH + 11 * MIN).lat, 5) == -7.24


def test_a_slow_bus_loses_time_between_stops_only() -> None:
    slow = plan_of(plan(speed_factor=0.5))
    end = slow.where(EPOCH + 10 * MIN + (2 * ARRIVE[2] - 20) * 1000 - 1000)
    assert end.trip_id == "T-out-1" and end.late_s == pytest.approx(ARRIVE[2] - 20, abs=2)


def test_the_bus_waits_at_the_terminal_for_its_next_departure() -> None:
    p = plan_of(plan(delay_s=60))
    came = EPOCH + 10 * MIN + 60_000 + ARRIVE[2] * 1000
    for t in range(came + 1000, EPOCH + 21 * MIN, 30_000):
        w = p.where(t)
        assert (w.trip_id, w.speed_mps, round(w.lat, 5)) == (None, 0.0, -7.26)
    # It leaves at its next departure, its delay later, northwards on the other run.
    gone = p.where(EPOCH + 21 * MIN + 30_000)
    assert gone.trip_id == "T-back-1" and gone.lat > -7.26 and round(gone.bearing) == 0
    # Before the first departure it waits at the first stop.
    assert p.where(EPOCH).trip_id is None and round(p.where(EPOCH).lat, 5) == -7.24


def test_a_bus_in_later_than_its_next_departure_stands_its_layover_first() -> None:
    # Ten times slower than planned: in ~37 min after its start, its next departure 10 min
    # after the first long gone.
    p = plan_of(plan(speed_factor=0.1, layover_s=120))
    came = EPOCH + 10 * MIN + (10 * ARRIVE[1] + 20 + 10 * (ARRIVE[2] - DEPART[1])) * 1000
    assert p.where(came - 1000).trip_id == "T-out-1"
    assert p.where(came + 110_000).trip_id is None
    w = p.where(came + 120_000)  # leaving, as late as its arrival made it
    assert w.trip_id == "T-back-1" and round(w.late_s) == round(
        (came + 120_000 - (EPOCH + 20 * MIN)) / 1000)
    assert p.where(came + 130_000).lat > w.lat
    # After its last trip it stays at the end of it.
    assert round(p.where(EPOCH + 600 * MIN).lat, 5) == -7.24


def test_at_time_scale_k_the_timetable_runs_k_times_faster_on_the_wall_clock() -> None:
    p = plan_of(plan())
    now = [EPOCH / 1000 + 20.0]  # the wall clock, 20 s after the plan's epoch
    fixes = follow(p, interval_s=1.0, time_scale=20, clock=lambda: now[0],
                   sleep=lambda s: now.__setitem__(0, now[0] + s))
    seen = [next(fixes) for _ in range(40)]
    # The departure at the plan's minute 10 is 30 s after its epoch on the wall clock;
    # the ~4 min trip takes 12 s of it.
    assert [f.ts_ms for f in seen[:2]] == [EPOCH + 20_000, EPOCH + 21_000]
    assert [f.speed_cms == 0 for f in seen[:10]] == [True] * 10
    assert seen[0].lat_e6 == -7_240_000
    assert seen[12].speed_cms and seen[-1].lat_e6 == -7_260_000
    moving = [f for f in seen if f.speed_cms]
    assert moving and all(f.speed_cms == pytest.approx(20 * 1000, rel=0.02)
                          for f in moving)
    sim_ms = EPOCH + (seen[-1].ts_ms - EPOCH) * 20
    assert seen[-1].lat_e6 == round(p.where(sim_ms).lat * 1e6)


@pytest.mark.parametrize(("data", "words"), [
    ([], "a JSON object"),
    ({"runs": {}, "legs": []}, "missing 'epoch_ms'"),
    ({**plan(), "legs": []}, "at least one departure"),
    ({**plan(), "legs": [{"trip_id": "X", "run": "sideways", "start_ms": 1}]},
     "no run 'sideways'"),
    ({**plan(), "runs": {"out": {**plan()["runs"]["out"], "arrive_s": [0, 5]}}},
     "one entry per stop"),
    ({**plan(), "runs": {"out": {**plan()["runs"]["out"], "arrive_s": [0, 500, 100]}}},
     "times must not decrease"),
    ({**plan(), "speed_factor": 0}, "above 0"),
    ({**plan(), "legs": plan()["legs"][::-1]}, "time order"),
])
def test_a_bad_plan_is_refused_saying_why(data: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        plan_of(data)


def test_the_agent_reads_a_plan_or_a_shape_from_the_same_option(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text(json.dumps(plan()))
    (tmp_path / "shape.json").write_text(json.dumps(SHAPE))
    assert _gps_feed(f"sim:{tmp_path / 'plan.json'}") is not None
    assert _gps_feed(f"sim:{tmp_path / 'shape.json'}") is not None
    (tmp_path / "bad.json").write_text(json.dumps({**plan(), "legs": []}))
    with pytest.raises(TransitError) as refused:
        _gps_feed(f"sim:{tmp_path / 'bad.json'}")
    assert str(refused.value) == (f"--gps sim:{tmp_path / 'bad.json'}: not a plan: a plan "
                                  "needs at least one departure")
