"""The demo's buses on the timetable: the plans their GPS drives (one bus late, two of a
corridor bunching), and the status line's few words on trips, predictions, occupancy
and bunching."""

from __future__ import annotations

import json
from pathlib import Path

from hardware_sim.demo import Bus, bus_slot, service_summary, write_plans
from hardware_sim.surabaya import HEADWAY_S
from validator_agent.adapters.sim_gps import Plan, plan_of

NOW_MS = 1_764_660_000_000  # 2025-12-02 14:20 WIB


def fleet(tmp_path: Path, n: int = 6) -> list[Bus]:
    routes = ["R1", "R2", "TS1"]
    return [Bus(i, routes[(i - 1) % 3], tmp_path / "shape.json", tmp_path / "s",
                tmp_path / "spool") for i in range(1, n + 1)]


def plans(tmp_path: Path, time_scale: float = 1.0, duration: float = 0.0
          ) -> dict[int, Plan]:
    buses = fleet(tmp_path)
    write_plans(buses, tmp_path / "plans", NOW_MS, time_scale, duration)
    return {b.number: plan_of(json.loads(b.plan.read_text())) for b in buses if b.plan}


def passes(plan: Plan, trip_id: str, dist_m: float, from_ms: int) -> int:
    """When the bus on `trip_id` first reaches `dist_m` (5 s steps)."""
    t = from_ms
    while True:
        w = plan.where(t)
        if w.trip_id == trip_id and w.dist_m >= dist_m:
            return t
        t += 5000
        assert t < from_ms + 6 * 3600 * 1000, "never got there"


def test_each_bus_gets_a_plan_of_its_corridor_for_the_run(tmp_path: Path) -> None:
    every = plans(tmp_path)
    assert sorted(every) == [1, 2, 3, 4, 5, 6]
    assert {n: {leg.trip_id.rsplit("-", 2)[0] for leg in p.legs}
            for n, p in every.items()} == {1: {"R1"}, 2: {"R2"}, 3: {"TS1"}, 4: {"R1"},
                                           5: {"R2"}, 6: {"TS1"}}
    # A week of the timetable with no duration; at time scale 10 for an hour, ten hours
    # and the hour's margin (and the trip back of the last round trip).
    last = every[3].legs[-1].start_ms
    assert 6.9 * 86_400_000 < last - NOW_MS <= 7 * 86_400_000 + 2 * 3600_000
    short = plans(tmp_path / "fast", time_scale=10, duration=3600)
    assert 19 * 3600_000 < short[3].legs[-1].start_ms - NOW_MS <= 22 * 3600_000
    assert [bus_slot(n, 3) for n in (1, 2, 3, 4, 6, 7)] == [0, 0, 0, 1, 1, 2]


def test_bus_two_runs_late_and_bus_one_is_caught_by_bus_four(tmp_path: Path) -> None:
    every = plans(tmp_path)
    late = [every[2].where(NOW_MS + m * 60_000) for m in range(0, 240, 3)]
    on_trip = [w.late_s for w in late if w.trip_id and w.speed_mps]
    assert on_trip and all(abs(s - 180) < 1 for s in on_trip)
    # Bus 1 leaves 4 min late on the departure before bus 4's; bus 4 closes on it along the
    # way to within half a headway: bunched, by the operators' default threshold.
    one, four = every[1], every[4]
    leg = next(g for g in one.legs if g.start_ms > NOW_MS)
    follower = next(g for g in four.legs if g.start_ms == leg.start_ms + HEADWAY_S * 1000)
    run = one.runs[leg.run]
    gaps = [(passes(four, follower.trip_id, d, leg.start_ms)
             - passes(one, leg.trip_id, d, leg.start_ms)) / 1000
            for d in (run.stops_m[0] + 1, run.stops_m[-2])]
    assert gaps[0] > HEADWAY_S / 2 + 30 and gaps[1] < HEADWAY_S / 2 - 30
    # And the others run their timetable.
    assert all(abs(w.late_s) < 1 for m in range(0, 240, 7)
               if (w := every[3].where(NOW_MS + m * 60_000)).trip_id)


def test_the_status_line_tells_trips_predictions_occupancy_and_bunching() -> None:
    vehicles = [{"state": "live", "trip_id": "R1-0-1400",
                 "occupancy_status": "MANY_SEATS_AVAILABLE"},
                {"state": "live", "trip_id": None},
                {"state": "live", "trip_id": "R2-1-1410",
                 "occupancy_status": "FEW_SEATS_AVAILABLE"},
                {"state": "stale", "trip_id": "TS1-0-1400"}]
    # As /gtfs-rt/trip-updates?format=json gives them: protobuf's JSON mapping.
    updates = {"header": {}, "entity": [
        {"id": "a", "tripUpdate": {"stopTimeUpdate": [
            {"stopSequence": 4, "arrival": {"time": "1764660300", "delay": 240}},
            {"stopSequence": 5, "arrival": {"time": "1764660400", "delay": 250}}]}},
        {"id": "b", "tripUpdate": {"stopTimeUpdate": [{"arrival": {"delay": 30}}]}},
        {"id": "c", "tripUpdate": {"stopTimeUpdate": [{"arrival": {"time": "1"}}]}}]}
    alerts = [{"kind": "bunching"}, {"kind": "vehicle_stale"}]
    assert service_summary(vehicles, updates, alerts) == (
        "trips 2/3 assigned, 3 predicted (most late +4 min), occupancy 1 few seats "
        "available, 1 many seats available, bunching 1")
    # What the gateway does not give is left out.
    assert service_summary(vehicles[1:2], None, None) == "trips 0/1 assigned"
