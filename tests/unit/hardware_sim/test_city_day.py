"""The simulated city's days (hardware_sim/city_day.py): the same seed gives the same
day, a trip's true times run forward along it, a breakdown holds its bus back, and the
loads add up from the boardings and alightings."""

from __future__ import annotations

from hardware_sim.city_day import CityConfig, plan_city, simulate_day
from tracking.schedule import Schedule, StopRow, TripRow, build_schedule

# A straight corridor of 10 stops ~800 m apart, run both ways.
STOPS = {f"S{i}": StopRow(f"S{i}", f"Stop {i}", -6_200_000, 106_800_000 + 7_200 * i)
         for i in range(10)}


def corridor() -> Schedule:
    trips = [TripRow("A", "R", "X", 0, "east", None), TripRow("B", "R", "X", 1, "west", None)]
    order = [f"S{i}" for i in range(10)]
    times = {"A": [(i, s, None) for i, s in enumerate(order)],
             "B": [(i, s, None) for i, s in enumerate(reversed(order))]}
    return build_schedule(trips, STOPS, {}, times)


def config(**kw: object) -> CityConfig:
    base = dict(routes=1, min_stops=5, length_m=(1000.0, 50_000.0),
                riders_per_stop_hour=10.0)
    base.update(kw)
    return CityConfig(**base)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_day_and_another_seed_another() -> None:
    city = plan_city(corridor(), config(seed=7))
    one, again = simulate_day(city, 2), simulate_day(city, 2)
    assert one.runs == again.runs and one.taps == again.taps
    run = one.runs[5]
    assert list(one.positions(run)) == list(again.positions(run))
    other = simulate_day(plan_city(corridor(), config(seed=8)), 2)
    assert [r.arrivals_ms for r in other.runs] != [r.arrivals_ms for r in one.runs]


def test_true_times_increase_along_every_trip_and_positions_follow_them() -> None:
    city = plan_city(corridor(), config())
    day = simulate_day(city, 0)
    assert len(day.runs) > 100  # every 8-15 min both ways from 05:00 to 22:00
    for run in day.runs:
        for a, d in zip(run.arrivals_ms, run.departures_ms, strict=True):
            assert d >= a
        for d, a in zip(run.departures_ms, run.arrivals_ms[1:], strict=False):
            assert a > d
    run = day.runs[40]
    fixes = list(day.positions(run))
    assert fixes[0].ts_ms - run.start_ms < 10_000
    ahead = [f.dist_m for f in fixes]
    # GPS noise of a few metres, never tens, off the truth.
    assert all(abs(f.dist_m - run.dist_at(f.ts_ms)) < 40 for f in fixes)
    assert ahead[-1] - ahead[0] > 6000


def test_a_breakdown_holds_its_bus_10_to_20_minutes() -> None:
    city = plan_city(corridor(), config(breakdown_share=0.2))
    day = simulate_day(city, 1)
    broken = [r for r in day.runs if r.breakdown is not None]
    assert broken
    pattern = city.pattern(broken[0].pattern_id)
    for run in broken:
        start, end, at_m = run.breakdown  # type: ignore[misc]
        assert 600_000 <= end - start <= 1_200_000
        assert run.dist_at(start + 1) == run.dist_at(end - 1) == at_m
        i = pattern.stop_index_after(at_m)
        # The segment it broke down on took the standing time and the driving.
        assert run.arrivals_ms[i] - run.departures_ms[i - 1] > end - start
        assert run.departures_ms[i - 1] < start and end < run.arrivals_ms[i]
    # Without breakdowns no bus stands still that long.
    calm = simulate_day(plan_city(corridor(), config(breakdown_share=0.0)), 1)
    assert all(r.breakdown is None for r in calm.runs)


def test_loads_add_up_from_the_taps_and_riders_come_back() -> None:
    city = plan_city(corridor(), config(tap_out_lines=1.0, tap_out_riders=1.0))
    day = simulate_day(city, 0)
    run = max(day.runs, key=lambda r: max(r.loads))
    entries = [t for t in day.taps if t.trip_id == run.trip_id and t.kind == "entry"]
    exits = [t for t in day.taps if t.trip_id == run.trip_id and t.kind == "exit"]
    assert len(entries) == len(exits) > 0  # everyone taps out here
    assert all(x >= 0 for x in run.loads) and run.loads[-1] == 0
    mid = run.departures_ms[len(run.departures_ms) // 2] + 1
    on = sum(1 for t in entries if t.ts_ms <= mid) - sum(1 for t in exits if t.ts_ms <= mid)
    assert day.load_at(run.trip_id, mid) == on
    cards: dict[str, set[str]] = {}
    for t in day.taps:
        if t.kind == "entry":
            cards.setdefault(t.card, set()).add(t.pattern_id)
    assert sum(1 for p in cards.values() if len(p) == 2) > len(cards) / 4  # rode back
