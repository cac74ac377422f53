"""Patterns of the schedule: trips calling at the same stops share one, whatever
stop_sequence numbers the feed gives them, and each trip keeps its own numbers."""

from __future__ import annotations

from tracking.schedule import ScheduledTrip, StopRow, TripRow, build_schedule

LAT = -7_250_000
STOPS = {s: StopRow(s, s, LAT, 112_700_000 + i * 5_000) for i, s in enumerate("ABC")}
SHAPES = {"east": [(LAT, 112_700_000), (LAT, 112_710_000)]}


def test_trips_numbering_the_same_stops_differently_share_a_pattern() -> None:
    schedule = build_schedule(
        [TripRow("T1", "R1", "daily", 0, "Timur", "east"),
         TripRow("T2", "R1", "daily", 0, "Timur", "east")], STOPS, SHAPES,
        {"T1": [(1, "A", 8 * 3600), (2, "B", None), (3, "C", 8 * 3600 + 300)],
         "T2": [(10, "A", 9 * 3600), (20, "B", None), (30, "C", 9 * 3600 + 300)]})
    assert list(schedule.patterns) == ["T1"]  # one pattern: its segment times shared
    pattern = schedule.patterns["T1"]
    t1, t2 = schedule.trips["T1"], schedule.trips["T2"]
    assert t2.pattern_id == "T1"
    assert [t1.stop_sequence(pattern, i) for i in range(3)] == [1, 2, 3]
    assert [t2.stop_sequence(pattern, i) for i in range(3)] == [10, 20, 30]


def test_a_trip_made_without_its_numbers_has_the_patterns() -> None:
    schedule = build_schedule([TripRow("T1", "R1", "daily", 0, "Timur", "east")], STOPS,
                              SHAPES, {"T1": [(5, "A", None), (6, "B", None),
                                              (9, "C", None)]})
    pattern = schedule.patterns["T1"]
    bare = ScheduledTrip("X", "R1", "T1", "daily", 0, (None, None, None))
    assert [bare.stop_sequence(pattern, i) for i in range(3)] == [5, 6, 9]
