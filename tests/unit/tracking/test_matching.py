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
