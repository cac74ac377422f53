"""Occupancy from taps (tracking.occupancy) and the live estimator over hand-written
fakes of the stored taps and the live vehicles (tracking.occupancy_live)."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import replace

import pytest

from fare_gateway.fleet import ChargedTap
from tracking.occupancy import (
    DEFAULT_CAPACITY,
    DEFAULT_MEAN_RIDE_M,
    DEFAULT_TAP_OUT_SHARE,
    MAX_GAP_MS,
    VEHICLE_FIX_MS,
    Boarding,
    Exit,
    RideCurve,
    TapOutShares,
    TapSeen,
    aboard_probability,
    boarding_m,
    estimate,
    inferred_ride_m,
    occupancy_of,
    riders_aboard,
    rides_of,
    status_of,
)
from tracking.occupancy_live import LiveOccupancy
from tracking.schedule import Pattern, PatternStop, Schedule, ServiceCalendar, Shape
from tracking.store import VehicleRecord

LAT0 = -7_265_000  # Surabaya
LON0 = 112_750_000
E6_PER_KM_LAT = 8983  # 1 km of latitude in e6 degrees


def north(km: float) -> tuple[int, int]:
    return LAT0 + round(km * E6_PER_KM_LAT), LON0


def line(pattern_id: str, km: float, reverse: bool = False) -> Pattern:
    """A straight pattern `km` long northwards (or back), a stop every kilometre."""
    points = [north(i / 10) for i in range(int(km * 10) + 1)]
    if reverse:
        points.reverse()
    shape = Shape.of(points)
    stops = []
    for i in range(int(km) + 1):
        lat, lon = north(km - i if reverse else i)
        stops.append(PatternStop(i + 1, f"{pattern_id}-s{i}", f"stop {i}", lat, lon,
                                 shape.locate(lat, lon).dist_m))
    return Pattern(pattern_id, "R1", 1 if reverse else 0, "", shape, tuple(stops))


NORTH = line("R1-N", 10)
SOUTH = line("R1-S", 10, reverse=True)


# -- the estimate ---------------------------------------------------------------------------

def test_the_default_curve_is_exponential_with_a_4_km_mean() -> None:
    curve = RideCurve.default()
    assert curve.survival(0) == 1.0
    assert curve.survival(-5) == 1.0
    assert curve.survival(DEFAULT_MEAN_RIDE_M) == pytest.approx(math.exp(-1))
    assert curve.survival(8000) == pytest.approx(math.exp(-2))


def test_a_learned_curve_follows_its_samples_as_they_outnumber_the_default() -> None:
    rides = [1000.0] * 200  # everyone rides 1 km
    curve = RideCurve.learned(rides)
    assert curve.samples == 200
    # Beyond 1 km only the 20 pseudo-samples of the default remain: 20/220 of it.
    assert curve.survival(1500) == pytest.approx(20 / 220 * math.exp(-1500 / 4000))
    assert curve.survival(900) == pytest.approx((200 + 20 * math.exp(-900 / 4000)) / 220)
    few = RideCurve.learned([1000.0])
    assert few.survival(1500) > 0.6  # one sample hardly moves it


def test_a_curve_keeps_a_bounded_number_of_samples() -> None:
    curve = RideCurve.learned(float(i) for i in range(20_000))
    assert curve.samples == 5000
    assert curve.lengths == tuple(sorted(curve.lengths))


@pytest.mark.parametrize(("percentage", "status"), [
    (0, "EMPTY"), (4, "EMPTY"), (5, "MANY_SEATS_AVAILABLE"), (19, "MANY_SEATS_AVAILABLE"),
    (20, "FEW_SEATS_AVAILABLE"), (39, "FEW_SEATS_AVAILABLE"), (40, "STANDING_ROOM_ONLY"),
    (79, "STANDING_ROOM_ONLY"), (80, "CRUSHED_STANDING_ROOM_ONLY"),
    (99, "CRUSHED_STANDING_ROOM_ONLY"), (100, "FULL"), (140, "FULL")])
def test_status_by_share_of_capacity(percentage: int, status: str) -> None:
    assert status_of(percentage) == status


def test_occupancy_rounds_riders_and_percentage() -> None:
    o = occupancy_of(30.4, DEFAULT_CAPACITY)
    assert (o.riders, o.capacity, o.percentage, o.status) == (30, 80, 38,
                                                              "FEW_SEATS_AVAILABLE")
    assert occupancy_of(-2, 80).percentage == 0
    assert occupancy_of(120, 80).percentage == 150
    assert occupancy_of(3, 0).capacity == 1  # never a division by zero


def test_boardings_count_until_their_tap_out() -> None:
    boardings = [Boarding(f"c{i}", None, 1000 + i) for i in range(5)]
    exits = [Exit("c1", 5000), Exit("c3", 6000), Exit("nobody-we-saw", 7000)]
    assert riders_aboard(boardings, exits, None, RideCurve.default()) == 3.0


def test_a_card_counts_once_and_an_exit_only_removes_an_earlier_boarding() -> None:
    boardings = [Boarding("c", None, 1000), Boarding("c", None, 2000)]  # a repeat tap
    assert riders_aboard(boardings, [], None, RideCurve.default()) == 1.0
    # Tapped out, then on again: aboard.
    assert riders_aboard(boardings, [Exit("c", 1500)], None, RideCurve.default()) == 1.0
    assert riders_aboard(boardings, [Exit("c", 2500)], None, RideCurve.default()) == 0.0


def test_riders_without_a_tap_out_leave_as_the_curve_says() -> None:
    curve = RideCurve.default()
    boardings = [Boarding("a", 0.0, 1), Boarding("b", 4000.0, 2), Boarding("c", 8000.0, 3)]
    got = riders_aboard(boardings, [], 8000.0, curve)
    assert got == pytest.approx(math.exp(-2) + math.exp(-1) + 1.0)
    # Where every rider taps out, who has not is still aboard.
    assert riders_aboard(boardings, [], 8000.0, curve, tap_out_share=1.0) == 3.0
    # Not knowing where the bus is, nobody is taken off.
    assert riders_aboard(boardings, [], None, curve) == 3.0


def test_where_everyone_taps_out_only_the_tap_outs_count() -> None:
    for survival in (0.0, 1e-9, 0.3, 1.0):
        assert aboard_probability(survival, 1.0) == 1.0
    boardings = [Boarding("a", 0.0, 1), Boarding("b", 0.0, 2)]
    got = riders_aboard(boardings, [Exit("a", 5)], 50_000.0, RideCurve.default(),
                        tap_out_share=1.0)
    assert got == 1.0  # b, 50 km on, has not tapped out: aboard


def test_where_nobody_taps_out_the_curve_alone_counts() -> None:
    curve = RideCurve.learned([1000.0, 3000.0, 5000.0, 7000.0] * 10)
    for travelled in (0.0, 2000.0, 6000.0, 20_000.0):
        assert aboard_probability(curve.survival(travelled), 0.0) == pytest.approx(
            curve.survival(travelled))
    boardings = [Boarding("a", 0.0, 1), Boarding("b", 4000.0, 2)]
    assert riders_aboard(boardings, [], 8000.0, curve, tap_out_share=0.0) == pytest.approx(
        curve.survival(8000) + curve.survival(4000))


def test_past_the_usual_ride_a_rider_of_a_tap_out_route_is_likely_still_aboard() -> None:
    curve = RideCurve.default()
    # Twice the mean ride: 13.5 % of rides are longer, but on a route where 90 % tap out
    # the riders gone without tapping out are fewer still (a tenth of the 86.5 %).
    s = curve.survival(8000)
    p = aboard_probability(s, DEFAULT_TAP_OUT_SHARE)
    assert p == pytest.approx(s / (s + 0.1 * (1 - s)))
    assert 0.6 < p < 0.62 and p > 4 * s
    # The more riders tap out, the likelier one not seen tapping out is aboard.
    shares = [0.0, 0.5, 0.8, 0.9, 0.99, 1.0]
    odds = [aboard_probability(s, r) for r in shares]
    assert odds == sorted(odds) and odds[0] == pytest.approx(s) and odds[-1] == 1.0
    got = estimate([Boarding("a", 0.0, 1)], [], 8000.0, curve, 10,
                   tap_out_share=DEFAULT_TAP_OUT_SHARE)
    assert (got.riders, got.percentage) == (1, 6)
    # Out of range, it is held within 0..1.
    assert aboard_probability(s, 1.7) == 1.0
    assert aboard_probability(s, -0.3) == pytest.approx(s)


def test_tap_out_shares_are_learned_per_route_from_a_prior() -> None:
    def tap(card: str, kind: str, route: str) -> TapSeen:
        return TapSeen(card, kind, 0, "V1", route, *north(1))

    taps = [tap(f"a{i}", "entry", "A") for i in range(80)]
    taps += [tap(f"a{i}", "exit", "A") for i in range(40)]  # half of A's riders tap out
    taps += [tap(f"b{i}", "entry", "B") for i in range(5)]
    taps += [tap("x", "exit", "C")] * 3  # exits without their boardings: never above 1
    shares = TapOutShares.learned(taps)
    assert shares.share("A") == pytest.approx((40 + 20 * 0.9) / (80 + 20))
    assert shares.share("B") == pytest.approx((0 + 20 * 0.9) / (5 + 20))  # few: the prior
    assert shares.share("C") == pytest.approx(0.9)
    assert shares.share("unseen") == DEFAULT_TAP_OUT_SHARE == TapOutShares().share("A")
    many = TapOutShares.learned([tap(f"m{i}", "entry", "M") for i in range(100_000)])
    assert many.share("M") < 0.001  # the data outweighs the prior


def test_estimate_is_the_occupancy_of_the_riders_aboard() -> None:
    boardings = [Boarding(f"c{i}", 0.0, i) for i in range(40)]
    got = estimate(boardings, [Exit("c0", 99)], 0.0, RideCurve.default(), 60)
    assert (got.riders, got.percentage, got.status) == (39, 65, "STANDING_ROOM_ONLY")
    assert got.as_json() == {"occupancy_status": "STANDING_ROOM_ONLY",
                             "occupancy_percentage": 65, "riders": 39, "capacity": 60}


# -- next-boarding inference -------------------------------------------------------------

def test_the_next_boarding_names_the_stop_left_at() -> None:
    board = (0, *north(1.02))
    # Boarded next 150 m from stop 6 (6 km): rode from 1 km to 6 km.
    lat, lon = north(6.0)
    ride = inferred_ride_m([NORTH, SOUTH], board, (3_600_000, lat, lon + 1500))
    assert ride == pytest.approx(5000 - 20, abs=30)


def test_the_direction_is_the_one_that_reaches_the_next_boarding() -> None:
    # Southbound from 8 km to 3 km: on the northbound pattern no stop ahead is near.
    ride = inferred_ride_m([NORTH, SOUTH], (0, *north(8.0)), (600_000, *north(3.0)))
    assert ride == pytest.approx(5000, abs=30)


@pytest.mark.parametrize("second", [
    (0, *north(5)),                      # not later
    (MAX_GAP_MS + 1, *north(5)),         # another outing
    (600_000, north(5)[0], LON0 + 20_000),  # 2 km off every stop ahead
])
def test_a_next_boarding_that_says_nothing(second: tuple[int, int, int]) -> None:
    assert inferred_ride_m([NORTH, SOUTH], (0, *north(1)), second) is None


def test_an_unplaced_boarding_says_nothing() -> None:
    far = (0, north(1)[0], LON0 + 10_000)  # 1.1 km east of the line
    assert inferred_ride_m([NORTH], far, (600_000, *north(5))) is None


def test_rides_of_a_day_from_tap_outs_and_next_boardings() -> None:
    def tap(card: str, kind: str, ts: int, km: float, vehicle: str = "V1") -> TapSeen:
        return TapSeen(card, kind, ts, vehicle, "R1", *north(km))

    taps = [
        tap("a", "entry", 0, 1), tap("a", "exit", 600_000, 4),  # tapped out: 3 km
        tap("b", "entry", 0, 2), tap("b", "entry", 900_000, 9, "V2"),  # next boarding: 7 km
        tap("c", "entry", 0, 2), tap("c", "exit", 60_000, 5, "V9"),  # another bus's exit
        tap("d", "entry", 0, 2),  # nothing after
    ]
    got = sorted(rides_of(reversed(taps), lambda route: [NORTH, SOUTH]))
    assert got == [pytest.approx(3000, abs=30), pytest.approx(7000, abs=30)]
    assert len(rides_of(taps, lambda route: [NORTH], limit=1)) == 1


# -- the live estimator, over fakes ----------------------------------------------------------

Row = ChargedTap  # a stored charged tap, as the gateway's tap log gives it


class FakeTaps:
    """The stored charged taps, in received order."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, card: str, vehicle: str, km: float, ts: int, kind: str = "entry") -> None:
        lat, lon = north(km)
        self.rows.append(Row(f"t{len(self.rows)}", ts, vehicle, "R1", card, kind, ts, lat,
                             lon))

    def charged_since(self, received_ms: int, limit: int) -> Sequence[Row]:
        return sorted((r for r in self.rows if r.received_ms >= received_ms),
                      key=lambda r: (r.received_ms, r.tap_id))[:limit]

    def charged_recent(self, since_ms: int, limit: int) -> Sequence[Row]:
        return sorted((r for r in self.rows if r.received_ms >= since_ms),
                      key=lambda r: -r.received_ms)[:limit]

    def charged_ids(self, since_ms: int, before_ms: int) -> set[str]:
        return {r.tap_id for r in self.rows if since_ms <= r.received_ms < before_ms}

    def charged_taps(self, tap_ids: Collection[str]) -> Sequence[Row]:
        return [r for r in self.rows if r.tap_id in tap_ids]


class FakeVehicles:
    def __init__(self) -> None:
        self.records: dict[str, VehicleRecord] = {}
        self.full_reads = 0
        self.asked: list[list[str]] = []  # the ids of each read of some vehicles

    def at(self, vehicle: str, km: float, ts: int, trip: str = "T1",
           pattern: str | None = "R1-N") -> None:
        lat, lon = north(km)
        self.records[vehicle] = VehicleRecord(
            vehicle, f"{vehicle}-A", "R1", trip, ts, lat, lon, None, None, None, None,
            pattern_id=pattern, dist_m=round(km * 1000), start_date="20261202")

    def vehicles(self) -> list[VehicleRecord]:
        self.full_reads += 1
        return list(self.records.values())

    def of(self, vehicle_ids: Collection[str]) -> list[VehicleRecord]:
        self.asked.append(sorted(vehicle_ids))
        return [self.records[v] for v in vehicle_ids if v in self.records]


SCHEDULE = Schedule({"R1-N": NORTH, "R1-S": SOUTH}, {}, ServiceCalendar(),
                    route_patterns={"R1": ("R1-N", "R1-S")})
T0 = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


def live(taps: FakeTaps, fleet: FakeVehicles, clock: Clock,
         capacities: dict[str, int] | None = None, taps_out: bool = False) -> LiveOccupancy:
    return LiveOccupancy(taps, fleet, lambda: capacities or {}, lambda: SCHEDULE,
                         taps_out=lambda route, ts: taps_out, clock=clock)


def test_live_counts_boardings_and_tap_outs_against_the_capacity() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, {"V1": 10}, taps_out=True)
    assert est.occupancy("V1") is None  # before the first read
    fleet.at("V1", 1.0, T0)
    est.tick()
    assert est.occupancy("V1").percentage == 0  # type: ignore[union-attr]
    assert est.occupancy("V9").capacity == DEFAULT_CAPACITY  # type: ignore[union-attr]
    for i in range(4):
        taps.add(f"c{i}", "V1", 1.0, T0 + 1000 + i)
    clock.ms += 10_000
    est.tick()
    assert est.occupancy("V1").riders == 4  # type: ignore[union-attr]
    assert est.occupancy("V1").percentage == 40  # type: ignore[union-attr]
    taps.add("c0", "V1", 3.0, T0 + 20_000, kind="exit")
    clock.ms += 10_000
    est.tick()
    assert est.occupancy("V1").riders == 3  # type: ignore[union-attr]


def test_live_decays_by_distance_and_drops_a_card_seen_on_another_bus() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock)
    fleet.at("V1", 1.0, T0)
    fleet.at("V2", 6.0, T0, trip="T2")
    est.tick()
    taps.add("a", "V1", 1.0, T0 + 1000)
    taps.add("b", "V1", 1.0, T0 + 1000)
    clock.ms += 10_000
    est.tick()
    assert est.occupancy("V1").riders == 2  # type: ignore[union-attr]
    fleet.at("V1", 5.0, T0 + 400_000)  # 4 km on: each still aboard with e^-1
    taps.add("b", "V2", 6.0, T0 + 500_000)  # b boarded V2 near stop 6: left V1
    clock.ms = T0 + 510_000
    est.tick()
    assert riders_aboard([Boarding("a", 1000.0)], [], 5000.0, est.curve) == pytest.approx(
        est.curve.survival(4000))
    assert est.occupancy("V1").riders == 0  # type: ignore[union-attr]  # 0.37 of a
    assert est.occupancy("V2").riders == 1  # type: ignore[union-attr]
    assert est.curve.samples == 1  # b's ride, 1 km to stop 6, was learned
    assert est.curve.lengths[0] == pytest.approx(5000, abs=30)


def test_live_starts_a_trip_afresh_at_the_terminal() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, taps_out=True)
    fleet.at("V1", 2.0, T0)
    est.tick()
    taps.add("a", "V1", 2.0, T0 + 1000)
    clock.ms += 10_000
    est.tick()
    assert est.occupancy("V1").riders == 1  # type: ignore[union-attr]
    fleet.at("V1", 9.9, T0 + 990_000)  # its last position on the way out
    clock.ms = T0 + 995_000
    est.tick()
    fleet.at("V1", 0.1, T0 + 1_000_000, trip="T1-back", pattern="R1-S")
    taps.add("late", "V1", 9.8, T0 + 985_000)  # made before the turn, received after
    clock.ms = T0 + 1_010_000
    est.tick()
    assert est.occupancy("V1").riders == 0  # type: ignore[union-attr]


def test_live_reads_the_last_hours_at_start_but_not_the_trip_before() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    clock.ms = T0 + 600_000
    taps.add("old", "V1", 8.0, T0 - 3_000_000)  # other trip: 8 km point, 1 h ago
    taps.add("a", "V1", 1.0, T0 - 300_000)  # 4 km behind, 15 min ago
    taps.add("b", "V1", 4.5, T0 + 500_000)
    fleet.at("V1", 5.0, T0 + 590_000)
    est = live(taps, fleet, clock, taps_out=True)
    est.tick()
    assert est.occupancy("V1").riders == 2  # type: ignore[union-attr]


def test_live_forgets_riders_after_hours() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, taps_out=True)
    fleet.at("V1", 1.0, T0, pattern=None)
    taps.add("a", "V1", 1.0, T0)
    est.tick()
    assert est.occupancy("V1").riders == 1  # type: ignore[union-attr]
    clock.ms += 3 * 3_600_000 + 1
    fleet.records["V1"] = replace(fleet.records["V1"], ts=clock.ms)
    est.tick()
    assert est.occupancy("V1").riders == 0  # type: ignore[union-attr]
    assert not est._trips and not est._last  # bounded: nothing kept of them


def test_live_starts_afresh_when_the_bus_runs_its_pattern_again() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, taps_out=True)
    fleet.at("V1", 9.0, T0)
    taps.add("a", "V1", 9.0, T0 - 1000)
    est.tick()
    assert est.occupancy("V1").riders == 1  # type: ignore[union-attr]
    fleet.at("V1", 0.2, T0 + 600_000)  # same trip id (a pattern feed), back at the start
    clock.ms = T0 + 600_000
    est.tick()
    assert est.occupancy("V1").riders == 0  # type: ignore[union-attr]


def test_the_vehicle_feed_carries_the_occupancy() -> None:
    from google.transit import gtfs_realtime_pb2

    from tracking.realtime import vehicle_feed

    records = [VehicleRecord(v, f"{v}-A", "R1", None, T0, LAT0, LON0, None, None, None,
                             None) for v in ("V1", "V2")]
    feed = vehicle_feed(records, now_ms=T0, occupancy=lambda v: occupancy_of(
        36, 40) if v == "V1" else None)
    v1, v2 = (e.vehicle for e in feed.entity)
    assert v1.occupancy_status == gtfs_realtime_pb2.VehiclePosition.CRUSHED_STANDING_ROOM_ONLY
    assert v1.occupancy_percentage == 90
    assert not v2.HasField("occupancy_status") and not v2.HasField("occupancy_percentage")


def test_live_learns_each_routes_tap_out_share_and_applies_it_where_riders_tap_out() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    yesterday = T0 - 20 * 3_600_000  # in the day learned from, before the hours read
    for i in range(60):
        taps.add(f"y{i}", "V7", 1.0, yesterday + i)
    for i in range(20):  # a third of them tapped out, 3 km on
        taps.add(f"y{i}", "V7", 4.0, yesterday + 600_000 + i, kind="exit")
    for tapping, bus in ((True, "V1"), (False, "V2")):
        fleet.records.clear()
        fleet.at(bus, 1.0, clock.ms)
        est = live(taps, fleet, clock, {bus: 1}, taps_out=tapping)
        est.tick()
        share = est.shares.share("R1")
        boarded = sum(r.kind == "entry" for r in taps.rows)  # 60, then 61
        assert share == pytest.approx((20 + 20 * 0.9) / (boarded + 20))
        taps.add(f"a-{bus}", bus, 1.0, clock.ms + 1000)
        clock.ms += 10_000
        est.tick()
        fleet.at(bus, 6.0, clock.ms + 600_000)  # 5 km on, no tap-out
        clock.ms += 600_000
        est.tick()
        s = est.curve.survival(5000)
        expected = aboard_probability(s, share) if tapping else s
        # A capacity of one rider: the percentage is the rider's odds of being aboard.
        assert est.occupancy(bus).percentage == round(100 * expected)  # type: ignore[union-attr]
    assert aboard_probability(s, share) > s + 0.05  # the share made a difference


def test_a_tick_recomputes_only_the_vehicles_whose_taps_or_position_changed() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, {"V1": 1})
    fleet.at("V1", 1.0, T0)
    fleet.at("V2", 1.0, T0, trip="T2")
    taps.add("a", "V1", 1.0, T0 - 1000)
    taps.add("b", "V2", 1.0, T0 - 1000)
    est.tick()
    assert est.estimated == 2
    taps.add("c", "V1", 1.0, T0 + 1000)
    clock.ms += 2000
    est.tick()
    assert est.estimated == 1 and est.occupancy("V1").percentage == 200  # type: ignore[union-attr]
    fleet.at("V2", 1.01, T0 + 4000, trip="T2")  # 10 m: the same estimate
    clock.ms += 8000  # every vehicle read again (FOLLOW_S)
    est.tick()
    assert est.estimated == 0 and fleet.full_reads == 2
    fleet.at("V2", 5.0, T0 + 12_000, trip="T2")  # 4 km on
    clock.ms += 2000
    est.tick()
    assert est.estimated == 0  # not read yet: the vehicles are read every 10 s
    clock.ms += 8000
    est.tick()
    assert est.estimated == 1 and est.occupancy("V2").riders == 0  # type: ignore[union-attr]
    clock.ms += 60_000  # nothing new, but every estimate is made again within a minute
    est.tick()
    assert est.estimated == 2


def test_between_reads_of_every_vehicle_a_tick_reads_only_the_vehicles_tapped_on() -> None:
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, {"V1": 10, "V2": 10})
    fleet.at("V1", 1.0, T0)
    fleet.at("V2", 1.0, T0, trip="T2")
    taps.add("a", "V1", 1.0, T0 - 1000)
    est.tick()
    assert fleet.full_reads == 1 and est.occupancy("V1").riders == 1  # type: ignore[union-attr]
    # V2 turned at the terminal and began another trip; a rider taps on it: its record
    # is read with the tap, and the tap counts on the trip it runs now.
    fleet.at("V2", 0.0, T0 + 1500, trip="T2b")
    taps.add("B", "V2", 0.0, T0 + 1800)
    clock.ms += 2000
    est.tick()
    assert fleet.full_reads == 1 and fleet.asked == [["V2"]]
    assert est.occupancy("V2").riders == 1  # type: ignore[union-attr]
    # Card "a" boards V2 as well: it left V1, which is read with it.
    taps.add("a", "V2", 0.0, T0 + 3000)
    clock.ms += 2000
    est.tick()
    assert fleet.asked[-1] == ["V1", "V2"] and fleet.full_reads == 1
    assert est.occupancy("V1").riders == 0  # type: ignore[union-attr]
    assert est.occupancy("V2").riders == 2  # type: ignore[union-attr]
    clock.ms += 2000
    est.tick()  # nothing new: nothing read
    assert len(fleet.asked) == 2 and fleet.full_reads == 1


def test_a_boarding_without_a_fix_counts_from_where_the_bus_was() -> None:
    assert boarding_m(1200.0, T0, 5000.0, T0) == 1200.0  # placed: where it was made
    assert boarding_m(None, T0, 5000.0, T0 - VEHICLE_FIX_MS) == 5000.0
    assert boarding_m(None, T0, 5000.0, T0 - VEHICLE_FIX_MS - 1) == 0.0  # trip's start
    assert boarding_m(None, T0, None, T0) == 0.0
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock, {"V1": 1})
    fleet.at("V1", 1.0, T0)
    est.tick()
    taps.rows.append(Row("nofix", T0 + 1000, "V1", "R1", "a", "entry", T0 + 1000, 0, 0))
    clock.ms += 2000
    est.tick()
    assert est.occupancy("V1").percentage == 100  # type: ignore[union-attr]
    fleet.at("V1", 5.0, T0 + 400_000)  # 4 km on: the curve applies to it as to any
    clock.ms = T0 + 402_000
    est.tick()
    assert est.occupancy("V1").percentage == round(  # type: ignore[union-attr]
        100 * est.curve.survival(4000))


def test_live_counts_a_tap_committed_after_a_newer_one_once() -> None:
    # Two gateways: a tap received first may commit after one received later, which the
    # last read already passed; the next read still counts it, and only once.
    taps, fleet, clock = FakeTaps(), FakeVehicles(), Clock()
    est = live(taps, fleet, clock)
    fleet.at("V1", 1.0, T0)
    est.tick()
    taps.add("a", "V1", 1.0, T0 + 3000)
    clock.ms += 10_000
    est.tick()
    assert est.occupancy("V1").riders == 1  # type: ignore[union-attr]
    taps.add("b", "V1", 1.0, T0 + 2000)  # received before a, committed after it was read
    clock.ms += 2_000
    est.tick()
    assert est.occupancy("V1").riders == 2  # type: ignore[union-attr]
    clock.ms += 2_000
    est.tick()
    assert est.occupancy("V1").riders == 2  # type: ignore[union-attr]
