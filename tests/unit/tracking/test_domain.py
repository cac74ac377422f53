"""Tracking's pure rules: believable positions, motion, vehicle state, the next stop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking.domain import (
    MAX_FUTURE_MS,
    MAX_SPEED_MPS,
    OFFLINE_AFTER_S,
    STALE_AFTER_S,
    Point,
    StopOnRoute,
    approx_metres,
    bearing,
    derived_motion,
    metres,
    next_stop,
    refusal,
    state,
)
from transit.window import EventWindow

# Tunjungan, central Surabaya; a micro-degree of latitude is about 0.11 m.
LAT, LON = -7_257_500, 112_752_100
NOW = 1_764_313_202_123
M_PER_UDEG_LAT = 0.110_58  # one micro-degree of latitude near 7 degrees south, in metres


def at(ts: int, north_m: float = 0.0, east_m: float = 0.0) -> Point:
    """A point `north_m` / `east_m` metres from LAT, LON (close enough over a few km)."""
    return Point(ts, LAT + round(north_m / M_PER_UDEG_LAT),
                 LON + round(east_m / (M_PER_UDEG_LAT * 0.9920)))


# -- distances and bearings -----------------------------------------------------------

def test_a_point_gives_its_position_in_degrees() -> None:
    assert Point(NOW, LAT, LON).latlon == (-7.2575, 112.7521)


@pytest.mark.parametrize("north_m, east_m", [(100, 0), (0, 100), (1500, -2000), (-5000, 3000)])
def test_the_cheap_distance_agrees_with_the_geodesic_over_a_city(north_m: float,
                                                                 east_m: float) -> None:
    a, b = at(NOW), at(NOW, north_m, east_m)
    exact = metres(a, b)
    assert exact == pytest.approx((north_m ** 2 + east_m ** 2) ** 0.5, rel=0.01)
    # "A fraction of a per cent": a sphere's degree of latitude is 0.7 % longer than the
    # ellipsoid's here.
    assert approx_metres(a.lat_e6, a.lon_e6, b.lat_e6, b.lon_e6) == pytest.approx(exact,
                                                                                 rel=0.01)


@given(st.integers(-8_000_000, -6_000_000), st.integers(112_000_000, 113_000_000),
       st.integers(-50_000, 50_000), st.integers(-50_000, 50_000))
def test_the_cheap_distance_is_symmetric_and_never_negative(lat: int, lon: int, dlat: int,
                                                            dlon: int) -> None:
    there = approx_metres(lat, lon, lat + dlat, lon + dlon)
    back = approx_metres(lat + dlat, lon + dlon, lat, lon)
    assert there == pytest.approx(back, rel=1e-9)
    assert there >= 0
    assert (there == 0) == (dlat == 0 and dlon == 0)


@pytest.mark.parametrize("north_m, east_m, expected", [
    (500, 0, 0), (0, 500, 90), (-500, 0, 180), (0, -500, 270), (500, 500, 45),
    (-500, -500, 225)])
def test_bearing_is_clockwise_from_true_north(north_m: float, east_m: float,
                                              expected: int) -> None:
    assert bearing(at(NOW), at(NOW, north_m, east_m)) == pytest.approx(expected, abs=1)


def test_bearing_stays_within_0_to_359() -> None:
    just_west_of_north = bearing(at(NOW), at(NOW, 10_000, -1))
    assert 0 <= just_west_of_north <= 359
    assert just_west_of_north in (0, 359)


# -- which positions are believable ----------------------------------------------------------

def test_the_first_position_of_a_vehicle_is_believed() -> None:
    assert refusal(at(NOW), None, NOW) is None


def test_a_receiver_without_a_fix_reports_zero_zero_and_is_refused() -> None:
    assert refusal(Point(NOW, 0, 0), None, NOW) == "no_fix"
    assert refusal(Point(NOW, 0, 0), at(NOW - 5000), NOW) == "no_fix"


def test_a_position_from_the_future_is_refused_beyond_the_allowed_clock_skew() -> None:
    assert refusal(at(NOW + MAX_FUTURE_MS), None, NOW) is None
    assert refusal(at(NOW + MAX_FUTURE_MS + 1), None, NOW) == "future"


def test_a_position_outside_the_window_taps_are_held_to_is_dropped_like_a_tap() -> None:
    day = 86_400_000
    window = EventWindow(max_age_days=7)
    assert refusal(at(NOW - 7 * day), None, NOW, window) is None
    assert refusal(at(NOW - 7 * day - 1), None, NOW, window) == "ts_out_of_range"
    assert refusal(at(0), at(NOW - 5000), NOW, window) == "ts_out_of_range"  # 1970
    # Ahead: more than 30 s is `future`; more than the window's 5 minutes, out of range.
    assert refusal(at(NOW + 5 * 60_000), None, NOW, window) == "future"
    assert refusal(at(NOW + 5 * 60_000 + 1), None, NOW, window) == "ts_out_of_range"
    assert refusal(at(2**63 - 1), None, NOW, window) == "ts_out_of_range"
    assert refusal(at(NOW - 8 * day), None, NOW, EventWindow(max_age_days=9)) is None


def test_a_position_no_newer_than_the_last_is_out_of_order() -> None:
    last = at(NOW - 5000)
    assert refusal(at(NOW - 5000, 10), last, NOW) == "out_of_order"
    assert refusal(at(NOW - 6000, 10), last, NOW) == "out_of_order"


def test_a_jump_faster_than_any_bus_is_refused() -> None:
    last = at(NOW - 10_000)
    # 10 s apart: 400 m is 40 m/s (a bus on a toll road); 1 km is 100 m/s.
    assert refusal(at(NOW, 400), last, NOW) is None
    assert refusal(at(NOW, 1000), last, NOW) == "impossible_jump"
    assert MAX_SPEED_MPS == 50.0


# -- motion derived from two positions ---------------------------------------------------

def test_no_motion_is_derived_without_an_earlier_position() -> None:
    assert derived_motion(at(NOW), None) == (None, None)
    assert derived_motion(at(NOW, 100), at(NOW)) == (None, None)
    assert derived_motion(at(NOW - 1, 100), at(NOW)) == (None, None)


def test_speed_and_heading_come_from_the_last_position() -> None:
    speed_cms, heading = derived_motion(at(NOW, 100), at(NOW - 10_000))
    assert speed_cms == pytest.approx(1000, rel=0.01)  # 100 m in 10 s
    assert heading == pytest.approx(0, abs=1)
    speed_cms, heading = derived_motion(at(NOW, 0, -250), at(NOW - 25_000))
    assert speed_cms == pytest.approx(1000, rel=0.01)
    assert heading == pytest.approx(270, abs=1)


def test_a_bus_standing_still_has_a_speed_but_no_heading() -> None:
    # GPS noise of a metre or two would otherwise spin the bus on the map.
    speed_cms, heading = derived_motion(at(NOW, 2), at(NOW - 10_000))
    assert speed_cms is not None and 0 < speed_cms < 30
    assert heading is None
    assert derived_motion(at(NOW), at(NOW - 10_000)) == (0, None)


# -- live, stale, offline -------------------------------------------------------------------

@pytest.mark.parametrize("age_s, expected", [
    (0, "live"), (STALE_AFTER_S - 0.001, "live"), (STALE_AFTER_S, "stale"),
    (OFFLINE_AFTER_S - 0.001, "stale"), (OFFLINE_AFTER_S, "offline"), (86_400, "offline")])
def test_a_vehicle_goes_stale_then_offline_as_its_last_position_ages(age_s: float,
                                                                     expected: str) -> None:
    assert state(age_s) == expected


def test_the_thresholds_of_state_can_be_set() -> None:
    assert state(10, stale_after_s=10, offline_after_s=20) == "stale"
    assert state(20, stale_after_s=10, offline_after_s=20) == "offline"
    assert state(9.9, stale_after_s=10, offline_after_s=20) == "live"


@given(st.floats(0, 10_000), st.floats(0, 10_000))
def test_state_never_goes_back_as_time_passes(age: float, more: float) -> None:
    order = ["live", "stale", "offline"]
    assert order.index(state(age + more)) >= order.index(state(age))


# -- the next stop on the trip ------------------------------------------------------------

def stop(stop_id: str, north_m: float) -> StopOnRoute:
    p = at(NOW, north_m)
    return StopOnRoute(stop_id, f"Halte {stop_id}", p.lat_e6, p.lon_e6)


TRIP = [stop("A", 0), stop("B", 500), stop("C", 1000), stop("D", 1500)]


def test_no_stops_no_next_stop() -> None:
    assert next_stop(at(NOW), 0, []) is None


def test_without_a_heading_the_nearest_stop_is_next() -> None:
    assert next_stop(at(NOW, 600), None, TRIP) == TRIP[1]


def test_the_nearest_stop_ahead_is_next() -> None:
    # Heading north at 400 m: B (at 500 m) is nearest and ahead of the bus.
    assert next_stop(at(NOW, 400), 0, TRIP) == TRIP[1]


def test_when_the_nearest_stop_is_behind_the_one_after_it_is_next() -> None:
    # Heading north at 600 m: B (at 500 m) is nearest but behind; C comes next.
    assert next_stop(at(NOW, 600), 0, TRIP) == TRIP[2]
    # B lies 45 degrees from a bus 100 m south-west of it: ahead within 90 degrees of
    # the heading, behind beyond.
    assert next_stop(at(NOW, 400, -100), 130, TRIP) == TRIP[1]
    assert next_stop(at(NOW, 400, -100), 140, TRIP) == TRIP[2]
    assert next_stop(at(NOW, 400, -100), 320, TRIP) == TRIP[1]


def test_past_the_last_stop_the_last_stop_stays_next() -> None:
    assert next_stop(at(NOW, 1600), 0, TRIP) == TRIP[3]
