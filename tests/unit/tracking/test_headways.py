"""The headway rules (tracking.headways): order along a direction, gaps, the headway
from a timetable, from frequencies and as observed, the thresholds and the memory of
when a pair began bunching."""

from __future__ import annotations

from datetime import date

from tracking.headways import (
    Live,
    Projections,
    Thresholds,
    bunches,
    carry_since,
    check_thresholds,
    route_headways,
    scheduled_headway,
    terminal_of,
    thresholds_for,
)
from tracking.predict import ConstantSpeed
from tracking.schedule import (
    Frequency,
    Schedule,
    ServiceCalendar,
    StopRow,
    TripRow,
    build_schedule,
)

LAT0, LON0 = -7_300_000, 112_700_000
E6_PER_KM = 8983  # micro-degrees of latitude in a kilometre
DAY = date(2026, 12, 2)
SPEED = ConstantSpeed(default_mps=10.0)  # 1 km in 100 s: gaps easy to read


def stop(i_km: int) -> StopRow:
    return StopRow(f"S{i_km}", f"Stop {i_km}", LAT0 + i_km * E6_PER_KM, LON0)


STOPS = {f"S{i}": stop(i) for i in range(11)}
NORTH = [(LAT0 + i * E6_PER_KM // 10, LON0) for i in range(101)]  # 10 km, a point/100 m


def network(times: dict[str, list[int | None]] | None = None,
            frequencies: dict[str, list[Frequency]] | None = None) -> Schedule:
    """Route R: `long` north over 10 km, `short` the first 5 km of it (a short turn),
    both direction 0; `back` south, direction 1. `times` gives trips `long-N` their
    first departures (seconds of the day), the rest untimed."""
    trips = [TripRow("long", "R", "WD", 0, "North", "up"),
             TripRow("short", "R", "WD", 0, "Half way", "up"),
             TripRow("back", "R", "WD", 1, "South", "down")]
    stop_times: dict[str, list[tuple[int, str, int | None]]] = {
        "long": [(i, f"S{i}", None) for i in range(11)],
        "short": [(i, f"S{i}", None) for i in range(6)],
        "back": [(i, f"S{10 - i}", None) for i in range(11)]}
    for trip_id, (first, *_rest) in (times or {}).items():
        trips.append(TripRow(trip_id, "R", "WD", 0, "North", "up"))
        assert first is not None
        stop_times[trip_id] = [(i, f"S{i}", first + 100 * i) for i in range(11)]
    return build_schedule(trips, STOPS, {"up": NORTH, "down": NORTH[::-1]}, stop_times,
                          frequencies=frequencies)


def at(schedule: Schedule, seconds_of_day: int) -> int:
    return schedule.day_start_ms(DAY) + seconds_of_day * 1000


def bus(vehicle: str, pattern: str | None, km: float | None) -> Live:
    return Live(vehicle, "R", 0, pattern, None if km is None else km * 1000)


def test_vehicles_in_order_with_gaps_observed_headway_and_verdicts() -> None:
    schedule = network()
    now = at(schedule, 8 * 3600)
    # Four buses northbound: B and C 300 m apart, A well ahead, D far behind.
    fleet = [bus("A", "long", 9.0), bus("B", "long", 5.0), bus("C", "long", 4.7),
             bus("D", "long", 0.2), bus("X", None, None), bus("Y", "nowhere", 1.0)]
    route = route_headways(schedule, "R", fleet, now, SPEED, Thresholds())
    north, south = route.directions
    assert (north.direction_id, south.direction_id) == (0, 1)
    assert south.vehicles == () and south.headway.seconds is None  # listed, empty
    assert [v.vehicle_id for v in north.vehicles] == ["A", "B", "C", "D"]
    # No timetable: the 10 km run (1000 s) shared by the four buses.
    assert north.headway.source == "observed" and round(north.headway.seconds or 0) == 250
    lead, b, c, d = north.vehicles
    assert lead.ahead is None and lead.gap_m is None and lead.gap_s is None
    assert not lead.bunched and not lead.gapped
    assert (b.ahead, round(b.gap_m or 0), round(b.gap_s or 0)) == ("A", 4000, 400)
    assert b.gapped and not b.bunched  # 400 s > 150 % of 250 s
    assert (c.ahead, round(c.gap_m or 0), round(c.gap_s or 0)) == ("B", 300, 30)
    assert c.bunched and not c.gapped  # 30 s < 50 % of 250 s
    assert (d.ahead, round(d.gap_s or 0)) == ("C", 450)
    assert [v.vehicle_id for v in route.unplaced] == ["X", "Y"]
    [pair] = bunches(route)
    assert (pair.follower, pair.leader, pair.direction_id) == ("C", "B", 0)
    assert pair.key == "R|0|C|B" and pair.headway_source == "observed"


def test_a_short_turn_bus_is_placed_on_the_longest_pattern() -> None:
    schedule = network()
    now = at(schedule, 8 * 3600)
    fleet = [bus("L", "long", 4.0), bus("S", "short", 3.9)]
    route = route_headways(schedule, "R", fleet, now, SPEED, Thresholds())
    north = route.directions[0]
    assert north.reference == "long"
    lead, follower = north.vehicles
    assert (lead.vehicle_id, follower.vehicle_id) == ("L", "S")
    assert abs((follower.gap_m or 0) - 100) < 5, follower
    assert abs(follower.along_m - 3900) < 5 and follower.bunched


def test_a_timetable_gives_the_spacing_of_its_departures() -> None:
    # Departures every 10 minutes from 07:00 to 09:00, and one odd one at 12:00.
    times: dict[str, list[int | None]] = {
        f"t{n:02}": [7 * 3600 + 600 * n] for n in range(13)}
    times["t99"] = [12 * 3600]
    schedule = network(times)
    now = at(schedule, 8 * 3600)
    headway = scheduled_headway(schedule, "R", 0, now, Projections(schedule))
    assert headway is not None and (headway.seconds, headway.source) == (600.0, "scheduled")
    # Gap of 250 s: under 50 % of 600 s (300 s); without the timetable, 2 buses would
    # share the 1000 s run (500 s) and the same gap is not bunched.
    fleet = [bus("A", "long", 6.0), bus("B", "long", 3.5)]
    follower = route_headways(schedule, "R", fleet, now, SPEED, Thresholds()
                              ).directions[0].vehicles[1]
    assert follower.bunched
    untimed = route_headways(network(), "R", fleet, now, SPEED, Thresholds())
    assert round(untimed.directions[0].headway.seconds or 0) == 500
    assert not untimed.directions[0].vehicles[1].bunched
    # Far from any departure (an hour either side): no scheduled headway.
    late = scheduled_headway(schedule, "R", 0, at(schedule, 15 * 3600), Projections(schedule))
    assert late is None


def test_frequencies_in_force_give_their_headway() -> None:
    schedule = network(frequencies={"long": [Frequency(6 * 3600, 9 * 3600, 480)]})
    in_force = scheduled_headway(schedule, "R", 0, at(schedule, 7 * 3600),
                                 Projections(schedule))
    assert in_force is not None and (in_force.seconds, in_force.source) == (480.0,
                                                                            "frequency")
    assert scheduled_headway(schedule, "R", 0, at(schedule, 10 * 3600),
                             Projections(schedule)) is None
    fleet = [bus("A", "long", 6.0), bus("B", "long", 2.0)]  # 400 s apart
    route = route_headways(schedule, "R", fleet, at(schedule, 7 * 3600), SPEED,
                           Thresholds())
    assert not route.directions[0].vehicles[1].bunched
    assert not route.directions[0].vehicles[1].gapped  # 400 s of 480 s
    strict = route_headways(schedule, "R", fleet, at(schedule, 7 * 3600), SPEED,
                            Thresholds(90, 110))
    assert strict.directions[0].vehicles[1].bunched  # 400 s < 90 % of 480 s


def test_buses_at_a_terminal_are_listed_apart_and_not_judged() -> None:
    schedule = network()
    now = at(schedule, 8 * 3600)
    # Three buses queued at the north terminal (the last stop, 10 km) and two laid over
    # past it; two waiting at the first stop; a short-turn bus at its own end (5 km, mid
    # line on the long pattern); two on the road, 3 km apart.
    fleet = [bus("Q1", "long", 10.0), bus("Q2", "long", 9.95), bus("Q3", "long", 9.91),
             bus("P1", "long", 10.3), bus("W1", "long", 0.0), bus("W2", "long", 0.08),
             bus("T", "short", 4.95), bus("A", "long", 7.0), bus("B", "long", 4.0)]
    north = route_headways(schedule, "R", fleet, now, SPEED, Thresholds()).directions[0]
    assert [v.vehicle_id for v in north.vehicles] == ["A", "B"]
    assert [(a.vehicle_id, a.terminal, a.pattern_id) for a in north.at_terminal] == [
        ("W1", "first", "long"), ("W2", "first", "long"), ("P1", "last", "long"),
        ("Q1", "last", "long"), ("Q2", "last", "long"), ("Q3", "last", "long"),
        ("T", "last", "short")]
    # The 10 km run shared by the two running (500 s): their 300 s is neither verdict,
    # and none of the queued pairs (tens of metres apart) is bunched.
    assert north.headway.source == "observed" and round(north.headway.seconds or 0) == 500
    follower = north.vehicles[1]
    assert follower.ahead == "A" and not follower.bunched and not follower.gapped
    assert bunches(route_headways(schedule, "R", fleet, now, SPEED, Thresholds())) == []

    # Just beyond the reach (100 m) of either end, a bus is on the road and judged.
    near = [bus("F", "long", 0.11), bus("G", "long", 0.2), bus("L", "long", 9.85)]
    north = route_headways(schedule, "R", near, now, SPEED, Thresholds()).directions[0]
    assert [v.vehicle_id for v in north.vehicles] == ["L", "G", "F"]
    assert north.at_terminal == () and north.vehicles[2].bunched


def test_the_reach_of_a_terminal() -> None:
    schedule = network()
    long = schedule.patterns["long"]
    assert [terminal_of(long, m) for m in (-50.0, 100.0, 101.0, 9899.0, 9900.0, 10_050.0)] \
        == ["first", "first", None, None, "last", "last"]
    # A reach longer than a quarter of the run shrinks to that quarter (2.5 km of the
    # 10 km run here), so the pattern's middle stays on the road.
    assert [terminal_of(long, m, reach_m=10_000.0) for m in (2400.0, 5000.0, 7600.0)] \
        == ["first", None, "last"]


def test_thresholds_rows_and_checks() -> None:
    rows = {"*": (40, 200), "R": (30, 300)}
    assert thresholds_for("R", rows) == Thresholds(30, 300, "R")
    assert thresholds_for("Q", rows) == Thresholds(40, 200, "*")
    assert thresholds_for("Q", {}) == Thresholds(50, 150, None)
    assert check_thresholds(50, 150) is None
    assert check_thresholds(1, 1000) is None
    for bad in ((0, 150), (50, 50), (80, 60), (50, 1001), (50.5, 150), (True, 150),
                ("50", 150), (None, 150)):
        assert check_thresholds(*bad) is not None, bad


def test_since_is_kept_for_a_pair_still_bunched_and_forgotten_once_clear() -> None:
    since, gone = carry_since({}, ["R|0|C|B"], 1_000)
    assert since == {"R|0|C|B": 1_000} and gone == []
    since, gone = carry_since(since, ["R|0|C|B", "R|1|E|F"], 5_000)
    assert since == {"R|0|C|B": 1_000, "R|1|E|F": 5_000} and gone == []
    since, gone = carry_since(since, ["R|1|E|F"], 9_000)
    assert since == {"R|1|E|F": 5_000} and gone == ["R|0|C|B"]


def test_the_headways_office_reads_the_live_vehicles_once_a_while() -> None:
    """Every request of every route shares one reading of the store, `fleet_s` long."""
    from typing import Any

    from tracking.headways_http import HeadwayOffice

    class Store:
        reads = 0

        def vehicles(self) -> list[Any]:
            Store.reads += 1
            return []

    store: Any = Store()
    office = HeadwayOffice(None, store, lambda: None, fleet_s=60.0)  # type: ignore[arg-type]
    assert office._vehicles() == [] and office._vehicles() == []
    assert Store.reads == 1
    office.fleet_s = 0.0
    office._vehicles()
    assert Store.reads == 2
    # The operators' alerts' own reading is the one the headways then share.
    office.fleet_s = 60.0
    office._fleet = None
    office.schedule = lambda: Schedule({}, {}, ServiceCalendar())  # type: ignore[assignment]
    office.thresholds = lambda: {}  # type: ignore[method-assign]
    store.redis = FakeRedis()
    store.ns = "t"
    office.bunched(0, [])
    assert office._vehicles() == [] and Store.reads == 2


class FakeRedis:
    """The bunched pairs' hash, empty; writes accepted."""

    def hgetall(self, key: str) -> dict[str, str]:
        return {}

    def pipeline(self, transaction: bool = False) -> FakeRedis:
        return self

    def hsetnx(self, *args: object) -> None: ...

    def hdel(self, *args: object) -> None: ...

    def execute(self) -> list[object]:
        return []
