"""Trip assignment on a hand-made schedule: a street run both ways, trips of a timetable,
a frequency trip, a pattern-only route and a device's own trip id."""

from __future__ import annotations

from datetime import date

from tracking.matching import Assignment, Matcher
from tracking.schedule import (
    Frequency,
    Schedule,
    ServiceCalendar,
    StopRow,
    TripRow,
    build_schedule,
)
from tracking.store import VehicleRecord

LAT = -7_250_000
WEST, EAST = 112_700_000, 112_720_000  # ~2.2 km of straight street
BACK_LAT = LAT + 90  # the way back, 10 m north
STOPS = {
    "W": StopRow("W", "Barat", LAT, WEST), "M": StopRow("M", "Tengah", LAT, 112_710_000),
    "E": StopRow("E", "Timur", LAT, EAST),
    "E2": StopRow("E2", "Timur", BACK_LAT, EAST),
    "M2": StopRow("M2", "Tengah", BACK_LAT, 112_710_000),
    "W2": StopRow("W2", "Barat", BACK_LAT, WEST),
}
SHAPES = {"out": [(LAT, WEST), (LAT, EAST)], "back": [(BACK_LAT, EAST), (BACK_LAT, WEST)]}
DAY = date(2026, 6, 1)  # a Monday
H = 3600


def timed(start_s: int) -> list[tuple[int, str, int | None]]:
    return [(1, "W", start_s), (2, "M", None), (3, "E", start_s + 600)]


def schedule(calendar: ServiceCalendar | None = None) -> Schedule:
    trips = [TripRow("T1", "R1", "wk", 0, "Timur", "out"),
             TripRow("T2", "R1", "wk", 0, "Timur", "out"),
             TripRow("T3", "R1", "wk", 1, "Barat", "back"),
             TripRow("F1", "R3", "wk", 0, "Timur", "out"),
             TripRow("P1", "R2", "all", 0, "Timur", "out"),
             TripRow("P2", "R2", "all", 1, "Barat", "back")]
    stop_times: dict[str, list[tuple[int, str, int | None]]] = {
        "T1": timed(8 * H), "T2": timed(8 * H + 1800),
        "T3": [(1, "E2", 9 * H), (2, "M2", None), (3, "W2", 9 * H + 600)],
        "F1": timed(6 * H),
        "P1": [(1, "W", None), (2, "M", None), (3, "E", None)],
        "P2": [(1, "E2", None), (2, "M2", None), (3, "W2", None)],
    }
    return build_schedule(trips, STOPS, SHAPES, stop_times, calendar,
                          {"F1": [Frequency(6 * H, 10 * H, 900)]})


SCHEDULE = schedule()


def at(hour: float, day: date = DAY) -> int:
    return SCHEDULE.day_start_ms(day) + int(hour * H * 1000)


def lon_at(dist_m: float) -> int:
    return WEST + int(dist_m / 0.1113195 / 0.99200)  # cos(7.25 degrees)


def record(route: str, a: Assignment, ts: int, lat: int, lon: int) -> VehicleRecord:
    return VehicleRecord("V1", "D1", route, a.trip_id, ts, lat, lon, None, None,
                         None, None, a.pattern_id, a.dist_m, a.start_date, a.trip_source,
                         a.progress)


def drive(matcher: Matcher, route: str, points: list[tuple[int, int, int]],
          trip: str | None = None, prev: VehicleRecord | None = None,
          bearing: int | None = None) -> list[Assignment]:
    out = []
    for ts, lat, lon in points:
        a = matcher.assign(route, ts, lat, lon, bearing, trip, prev)
        assert a is not None
        out.append(a)
        prev = record(route, a, ts, lat, lon)
    return out


def east(start: float, metres: list[float], step_ms: int = 20_000
         ) -> list[tuple[int, int, int]]:
    return [(at(start) + i * step_ms, LAT + 5, lon_at(d)) for i, d in enumerate(metres)]


def test_a_vehicle_going_east_gets_the_eastbound_trip_nearest_in_time() -> None:
    got = drive(Matcher(SCHEDULE), "R1", east(8.5 + 300 / H, [1000, 1100, 1200]))
    assert [a.trip_id for a in got] == ["T2"] * 3  # T2 is at 1 km at 08:35, T1 at 08:05
    assert {a.trip_source for a in got} == {"matched"}
    assert got[-1].start_date == "20260601"
    assert got[-1].pattern_id == "T1"
    assert abs(got[-1].dist_m - 1200) < 15
    assert got[-1].next_stop is not None and got[-1].next_stop.stop_id == "E"
    assert len(got[-1].progress.split()) == 3


def test_the_earlier_trip_when_it_is_nearer_in_time() -> None:
    got = drive(Matcher(SCHEDULE), "R1", east(8 + 240 / H, [900, 1000]))
    assert [a.trip_id for a in got] == ["T1", "T1"]


def test_going_the_other_way_gets_the_other_directions_trip() -> None:
    points = [(at(9 + 300 / H) + i * 20_000, BACK_LAT - 5, lon_at(d))
              for i, d in enumerate([1300, 1200, 1100])]
    got = drive(Matcher(SCHEDULE), "R1", points)
    # The first fix alone cannot tell the two ways apart; from the second on it goes
    # forward along the way back only.
    assert [a.trip_id for a in got[1:]] == ["T3", "T3"]
    assert got[-1].pattern_id == "T3"


def test_before_it_moves_the_bearing_tells_the_way() -> None:
    m = Matcher(SCHEDULE)
    a = m.assign("R2", at(9), LAT + 45, lon_at(500), 270, None, None)
    b = m.assign("R2", at(9), LAT + 45, lon_at(500), 90, None, None)
    assert a is not None and b is not None
    assert (a.pattern_id, b.pattern_id) == ("P2", "P1")


def test_a_pattern_only_trip_is_the_patterns_own_and_dated_today() -> None:
    got = drive(Matcher(SCHEDULE), "R2", east(23.9, [300, 400, 500]))
    assert [a.trip_id for a in got] == ["P1"] * 3
    assert got[0].start_date == "20260601"


def test_the_trip_is_kept_while_it_fits_and_not_when_it_stops_fitting() -> None:
    m = Matcher(SCHEDULE)
    # T1 at 08:04 at 900 m; the vehicle dawdles: 20 s a fix, 50 m a fix.
    points = east(8 + 240 / H, [900 + 50 * i for i in range(5)])
    got = drive(m, "R1", points)
    assert {a.trip_id for a in got} == {"T1"}
    # Half an hour late, at the same place, it still runs T1 while it keeps going ...
    prev = record("R1", got[-1], *points[-1])
    late = m.assign("R1", points[-1][0] + 30 * 60_000 - 1, LAT + 5, lon_at(1200), None,
                    None, prev)
    assert late is not None and late.trip_id == "T2"  # ... not: 20 min is the limit
    near = m.assign("R1", points[-1][0] + 10 * 60_000, LAT + 5, lon_at(1200), None,
                    None, prev)
    assert near is not None and near.trip_id == "T1"


def test_turning_round_at_the_terminal_starts_a_new_trip() -> None:
    m = Matcher(SCHEDULE)
    out = drive(m, "R1", east(8.9, [1900, 2000, 2100]))
    prev = record("R1", out[-1], at(8.9) + 40_000, LAT + 5, lon_at(2100))
    back = [(at(9 + 120 / H) + i * 20_000, BACK_LAT - 5, lon_at(d))
            for i, d in enumerate([2000, 1900])]
    got = drive(m, "R1", back, prev=prev)
    assert [a.pattern_id for a in got] == ["T3", "T3"]
    assert got[-1].trip_id == "T3"


def test_a_frequency_trip_is_dated_by_its_nearest_departure() -> None:
    m = Matcher(SCHEDULE)
    got = drive(m, "R3", east(7.25, [1000, 1100]))
    assert [a.trip_id for a in got] == ["F1", "F1"]
    before = drive(m, "R3", east(5, [1000]))  # the window opens at 06:00: still F1
    assert before[0].trip_id == "F1"


def test_a_service_that_does_not_run_today_gives_no_trip() -> None:
    sundays = ServiceCalendar({"wk": ("0000001", "20260101", "20261231"),
                               "all": ("1111111", "20260101", "20261231")})
    m = Matcher(schedule(sundays))
    got = drive(m, "R1", east(8 + 240 / H, [900, 1000]))
    assert [a.trip_id for a in got] == [None, None]
    assert got[-1].pattern_id in ("T1",) and got[-1].trip_source is None
    assert got[-1].start_date is None


def test_a_pattern_without_a_timetable_is_run_whatever_the_calendar_says() -> None:
    expired = ServiceCalendar({"all": ("1111111", "20210912", "20211231")})
    got = drive(Matcher(schedule(expired)), "R2", east(9, [300, 400]))
    assert [(a.trip_id, a.start_date) for a in got] == [("P1", "20260601")] * 2


def test_a_trip_past_midnight_belongs_to_yesterday() -> None:
    night = build_schedule([TripRow("N1", "R1", "wk", 0, "Timur", "out")], STOPS, SHAPES,
                           {"N1": timed(24 * H + 1800)})
    ts = night.day_start_ms(date(2026, 6, 2)) + 34 * 60_000  # Tuesday 00:34
    got = drive(Matcher(night), "R1", [(ts, LAT + 5, lon_at(900)),
                                       (ts + 20_000, LAT + 5, lon_at(1000))])
    assert [(a.trip_id, a.start_date) for a in got] == [("N1", "20260601")] * 2


def test_a_devices_trip_is_believed_when_it_lies_on_it() -> None:
    m = Matcher(SCHEDULE)
    got = drive(m, "R1", east(8 + 240 / H, [900, 1000]), trip="T2")
    assert [(a.trip_id, a.trip_source) for a in got] == [("T2", "device")] * 2


def test_a_devices_trip_of_another_route_or_far_off_is_not() -> None:
    m = Matcher(SCHEDULE)
    other = drive(m, "R1", east(8 + 240 / H, [900, 1000]), trip="P1")
    assert [(a.trip_id, a.trip_source) for a in other] == [("T1", "matched")] * 2
    # T3 runs the way back; 10 m off its line is on it, 300 m off is not
    far = m.assign("R1", at(8.1), LAT - 2700, lon_at(900), None, "T3", None)
    assert far is None  # and on no pattern of the route either
    unknown = drive(m, "R1", east(8 + 240 / H, [900]), trip="NOPE")
    assert unknown[0].trip_source == "matched"


def test_a_route_without_patterns_is_not_assigned() -> None:
    assert Matcher(SCHEDULE).assign("R9", at(8), LAT, WEST, None, None, None) is None


def test_a_vehicle_that_changes_route_is_searched_afresh() -> None:
    m = Matcher(SCHEDULE)
    first = drive(m, "R1", east(8 + 240 / H, [900, 1000]))
    prev = record("R1", first[-1], at(8.1), LAT + 5, lon_at(1000))
    got = m.assign("R2", at(8.1) + 20_000, LAT + 5, lon_at(1100), None, None, prev)
    assert got is not None and got.trip_id == "P1" and got.progress.count(":") == 1


# -- a timetable every 10 minutes, as the demo's (hardware_sim/surabaya.py) -------------

LENGTH_M = 2208.6  # the street from W to E
LEG_S = 600  # each trip takes 10 minutes from W to E
DEPARTURES = {f"D{h:02d}{m:02d}": h * H + m * 60
              for h, m in ((13, 20), (13, 30), (13, 40), (13, 50), (14, 0))}
TIMETABLE = build_schedule(
    [TripRow(t, "R1", "wk", 0, "Timur", "out") for t in DEPARTURES], STOPS, SHAPES,
    {t: [(1, "W", s), (2, "M", None), (3, "E", s + LEG_S)] for t, s in DEPARTURES.items()})


def clock(h: int, m: int, s: float = 0) -> int:
    return at(h + m / 60 + s / H)


def on_time(trip: str, ts: int) -> float:
    """Where a bus running `trip` to the minute is at `ts`."""
    into = (ts - TIMETABLE.day_start_ms(DAY)) / 1000 - DEPARTURES[trip]
    return max(0.0, min(LENGTH_M, into * LENGTH_M / LEG_S))


def run(matcher: Matcher, vehicle: str, points: list[tuple[int, float]],
        prev: VehicleRecord | None = None) -> list[Assignment]:
    """Assignments of `vehicle` at (ts, metres east of W) in turn."""
    out = []
    for ts, dist in points:
        lat, lon = LAT + 5, lon_at(dist)
        a = matcher.assign("R1", ts, lat, lon, 90, None, prev, vehicle_id=vehicle)
        assert a is not None
        out.append(a)
        prev = VehicleRecord(vehicle, f"D-{vehicle}", "R1", a.trip_id, ts, lat, lon, None,
                             None, None, None, a.pattern_id, a.dist_m, a.start_date,
                             a.trip_source, a.progress)
    return out


def holding(vehicle: str, trip: str, ts: int, dist: float, progress: str = ""
            ) -> VehicleRecord:
    return VehicleRecord(vehicle, f"D-{vehicle}", "R1", trip, ts, LAT + 5, lon_at(dist),
                         None, None, None, None, "D1320", int(dist), "20260601", "matched",
                         progress)


def test_a_bus_waiting_at_its_first_stop_takes_the_next_departure() -> None:
    m = Matcher(TIMETABLE)
    # The bus ahead left on D1330 on time ...
    ahead = run(m, "AHEAD", [(t, on_time("D1330", t))
                             for t in range(clock(13, 30, 40), clock(13, 36), 20_000)])
    assert {a.trip_id for a in ahead} == {"D1330"}
    # ... and this one, in from its last trip at 13:34, stands at W until 13:38:26
    # (D1330 is nearer in time until 13:35, never its trip), then leaves on time for
    # D1340.
    standing = [(clock(13, 34, 10) + k * 25_000, 5.0 + (k % 3) * 4) for k in range(11)]
    leaving = [(t, on_time("D1340", t))
               for t in range(clock(13, 40), clock(13, 46), 20_000)]
    got = run(m, "B", standing + leaving)
    assert {a.trip_id for a in got} == {"D1340"}
    assert got[-1].dist_m > 1000
    # The same without the bus ahead in sight
    alone = run(Matcher(TIMETABLE), "B", standing + leaving)
    assert {a.trip_id for a in alone} == {"D1340"}


def test_at_the_start_the_trip_the_bus_ahead_left_on_is_given_up() -> None:
    m = Matcher(TIMETABLE)
    run(m, "AHEAD", [(t, on_time("D1330", t))
                     for t in range(clock(13, 34, 50), clock(13, 35, 31), 20_000)])
    # As the old rule left it: D1330 held at W since 13:34, kept by KEEP_S, while the
    # bus ahead runs it.
    prev = holding("B", "D1330", clock(13, 34, 50), 4.0,
                   f"{clock(13, 34, 30)}:3 {clock(13, 34, 50)}:4")
    got = run(m, "B", [(clock(13, 35, 31), 5.0)], prev)
    assert got[0].trip_id == "D1340"
    assert got[0].progress.count(":") == 1  # a new trip: its progress starts afresh


def test_a_bus_late_at_its_first_stop_keeps_its_departure() -> None:
    # In a minute after D1330 left (the demo's bus 1 leaves 4 min late each time), it
    # stands until 13:34 and runs D1330 late all along.
    standing = [(t, 6.0) for t in range(clock(13, 31), clock(13, 34), 20_000)]
    leaving = [(t, on_time("D1330", t - 240_000))
               for t in range(clock(13, 34), clock(13, 40), 20_000)]
    got = run(Matcher(TIMETABLE), "B", standing + leaving)
    assert {a.trip_id for a in got} == {"D1330"}


def test_at_the_start_a_departure_gone_a_minute_is_still_the_buses() -> None:
    def first(ts: int) -> str | None:
        return run(Matcher(TIMETABLE), "B", [(ts, 8.0)])[0].trip_id

    assert first(clock(13, 41, 30)) == "D1340"
    assert first(clock(13, 42, 30)) == "D1350"  # though D1340 is nearer in time
    assert first(clock(13, 34, 30)) == "D1340"  # though D1330 is nearer in time


def test_a_kept_trip_is_given_up_when_another_fits_clearly_better_for_a_while() -> None:
    # Given D1330 at the start, the bus left on time for D1340 (+602 s on D1330)
    prev = holding("B", "D1330", clock(13, 40, 40), on_time("D1340", clock(13, 40, 40)))
    points = [(t, on_time("D1340", t))
              for t in range(clock(13, 41), clock(13, 43), 30_000)]
    got = run(Matcher(TIMETABLE), "B", points, prev)
    # once D1340 fitted better at three positions running
    assert [a.trip_id for a in got] == ["D1330", "D1330", "D1340", "D1340"]
    assert [a.progress.count(":") for a in got] == [1, 2, 1, 2]  # afresh on D1340


def test_a_bus_a_few_minutes_late_keeps_its_trip() -> None:
    # 4 minutes late on D1330, then 5.5 (4.5 minutes early on D1340): not clearly
    # better, and the bus does not hop from trip to trip in traffic
    late = [(t, on_time("D1330", t - 240_000))
            for t in range(clock(13, 36), clock(13, 38), 30_000)]
    later = [(t, on_time("D1330", t - 330_000))
             for t in range(clock(13, 40), clock(13, 43), 30_000)]
    got = run(Matcher(TIMETABLE), "B", late + later)
    assert {a.trip_id for a in got} == {"D1330"}


def test_two_live_buses_are_not_put_on_one_timed_trip() -> None:
    # B, 200 m behind where D1330 should be, is 3 min late on it, 7 min early on D1340
    b_at = [(clock(13, 36), 600.0), (clock(13, 36, 20), 660.0)]
    alone = run(Matcher(TIMETABLE), "B", b_at)
    assert {a.trip_id for a in alone} == {"D1330"}
    m = Matcher(TIMETABLE)
    run(m, "A", [(clock(13, 35, 40), on_time("D1330", clock(13, 35, 40)))])  # on time
    assert {a.trip_id for a in run(m, "B", b_at)} == {"D1340"}


def test_the_bus_fitting_a_trip_worse_gives_it_up() -> None:
    m = Matcher(TIMETABLE)
    b = run(m, "B", [(clock(13, 36), 600.0)])
    assert b[0].trip_id == "D1330"
    a = run(m, "A", [(clock(13, 36, 10), on_time("D1330", clock(13, 36, 10)))])
    assert a[0].trip_id == "D1330"  # it fits better: it takes it
    b_prev = VehicleRecord("B", "D-B", "R1", "D1330", clock(13, 36), LAT + 5, lon_at(600),
                           None, None, None, None, b[0].pattern_id, b[0].dist_m,
                           b[0].start_date, b[0].trip_source, b[0].progress)
    again = run(m, "B", [(clock(13, 36, 20), 660.0)], b_prev)
    assert again[0].trip_id == "D1340"
    # A holder not heard from for over 90 s holds nothing: C, 3.5 min late on D1330
    late = run(m, "C", [(clock(13, 38), 1000.0)])
    assert late[0].trip_id == "D1330"


def test_progress_reaches_ten_minutes_back_and_tells_a_slow_buss_pace() -> None:
    from tracking.predict import ConstantSpeed, parse_progress, recent_pace

    m = Matcher(SCHEDULE)
    # A fix every 10 s for 12 minutes at 3 m/s, on a pattern-only trip
    got = drive(m, "R2", east(9, [3.0 * 10 * k for k in range(72)], step_ms=10_000))
    points = parse_progress(got[-1].progress)
    assert len(points) <= 20
    assert points[-1][0] - points[0][0] >= 9 * 60_000
    assert points[-1] == (at(9) + 71 * 10_000, got[-1].dist_m)
    pace = recent_pace(SCHEDULE.patterns["P1"], points, ConstantSpeed(default_mps=4.0))
    assert abs(pace - 4.0 / 3.0) < 0.05
    # The last six fixes alone (what was kept before) cover 50 s: too brief to tell
    last_six = [(at(9) + k * 10_000, 30 * k) for k in range(66, 72)]
    assert recent_pace(SCHEDULE.patterns["P1"], last_six,
                       ConstantSpeed(default_mps=4.0)) == 1.0


def test_turning_round_a_little_at_a_time_is_still_turning_round() -> None:
    # Fixes 5 s apart at 5.5 m/s: 27 m back on the way out each, under JITTER_M
    m = Matcher(SCHEDULE)
    out = drive(m, "R1", east(8.9, [2000, 2100, 2200]))
    prev = record("R1", out[-1], at(8.9) + 40_000, LAT + 5, lon_at(2200))
    back = [(at(9 + 60 / H) + i * 5_000, BACK_LAT - 5, lon_at(2200 - 27 * i))
            for i in range(1, 6)]
    got = drive(m, "R1", back, prev=prev)
    assert got[-1].pattern_id == "T3" and got[-1].trip_id == "T3"


def test_a_bus_standing_at_its_last_stop_keeps_the_trip_it_came_on() -> None:
    came = [(t, on_time("D1330", t)) for t in range(clock(13, 38), clock(13, 40), 20_000)]
    stands = [(t, LENGTH_M - 3) for t in range(clock(13, 40), clock(13, 49), 30_000)]
    got = run(Matcher(TIMETABLE), "B", came + stands)
    assert {a.trip_id for a in got} == {"D1330"}  # D1340 comes in at 13:50
