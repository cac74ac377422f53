"""Worked examples in rupiah of the inferred exit (contract section 5, rule 5).

On a distance rule with `infer_exit_minutes`, an entry that no exit closes is priced as
if the rider had tapped out where the card's next non-repeat entry was made, when that
entry is on another vehicle, in the same service day, at most that many minutes
(inclusive) later, and both taps carry a position; otherwise the maximum stands.

The policy below: route KRL priced 3,000 + 1,000 per started 10 km beyond 25 km, at most
13,000, inference within 120 minutes; any other route 5,000; transfers free within 120
minutes (a transfer pays `max(0, full - highest full fare already paid)`). Positions run
south along the meridian 106.8 E; their distances are measured with geopy below.
"""

from __future__ import annotations

import tomllib

import pytest
from geopy.distance import geodesic

from fare_gateway.fares.engine import Charge, PricedTap, price_card, price_day
from fare_gateway.fares.policy import FarePolicy, parse_policy
from tests.unit.fare_gateway.fares.test_engine_worked_examples import (
    KM_24_9,
    KM_40,
    KM_150,
    KRL,
    LON_E6,
    START_LAT_E6,
    at,
    tap,
)

INFERRING = parse_policy(tomllib.loads("""
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student", "senior"]
default_category = "regular"

[[fares]]
routes = ["KRL"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 120 }

[[fares]]
routes = ["*"]
amount = { regular = 5000, student = 2500, senior = 0 }

[transfers]
window_minutes = 120
max_transfers = 2
"""))


def km(lat_a_e6: int, lat_b_e6: int) -> float:
    return float(geodesic((lat_a_e6 / 1e6, LON_E6 / 1e6), (lat_b_e6 / 1e6, LON_E6 / 1e6)).km)


def train(ts: int, kind: str = "entry", lat_e6: int = START_LAT_E6, vehicle: str = "KRL-1001",
          route: str = "KRL", lon_e6: int = LON_E6) -> PricedTap:
    return tap(ts, vehicle, route, kind, lat_e6=lat_e6, lon_e6=lon_e6)


def bus(ts: int, lat_e6: int = KM_40, vehicle: str = "SBY-0042",
        lon_e6: int = LON_E6) -> PricedTap:
    return tap(ts, vehicle, "R1", lat_e6=lat_e6, lon_e6=lon_e6)


def charges(policy: FarePolicy, taps: list[PricedTap]) -> list[Charge]:
    """Each tap's charge, in the order listed (the taps may span service days)."""
    card = price_card(policy, "regular", taps)
    return [card.charges[t.tap_id] for t in taps]


def test_the_positions_are_in_the_step_bands_they_are_used_for() -> None:
    assert 24.8 < km(START_LAT_E6, KM_24_9) < 24.9    # within base_km: 3,000
    assert 39.99 < km(START_LAT_E6, KM_40) < 40.01    # 2 started steps: 5,000
    assert 149.9 < km(START_LAT_E6, KM_150) < 150.1   # past the maximum: 13,000


def test_the_next_entry_stands_in_for_the_missing_exit() -> None:
    taps = [train(at(8, 0)), bus(at(8, 40), KM_40)]
    train_charge, bus_charge = charges(INFERRING, taps)
    # 3000 + 1000 * ceil((40.0 - 25) / 10) = 5000; the bus: transfer max(0, 5000 - 5000)
    assert (train_charge.amount, bus_charge.amount) == (5000, 0)
    assert train_charge.pricing == "inferred_exit" and train_charge.full_fare == 5000
    assert train_charge.related == taps[1].tap_id
    assert train_charge.km == pytest.approx(km(START_LAT_E6, KM_40))
    assert bus_charge.role == "transfer" and bus_charge.paid_before == 5000


def test_a_short_inferred_ride_leaves_the_bus_to_pay_the_difference() -> None:
    taps = [train(at(8, 0)), bus(at(8, 40), KM_24_9)]
    # 24.9 km is within base_km: 3000; the bus transfer max(0, 5000 - 3000) = 2000
    assert [c.amount for c in charges(INFERRING, taps)] == [3000, 2000]


def test_another_train_can_stand_in_for_the_exit() -> None:
    taps = [train(at(8, 0)), train(at(9, 0), lat_e6=KM_40, vehicle="KRL-2002")]
    first, second = charges(INFERRING, taps)
    # first: 5000 from the second train's entry; second: no exit, 13000 - 5000 = 8000
    assert (first.amount, first.pricing) == (5000, "inferred_exit")
    assert (second.amount, second.pricing, second.full_fare) == (8000, "max_no_exit", 13000)


@pytest.mark.parametrize("minutes,expected", [
    (120, [5000, 0]),       # inclusive: inferred; the bus is a transfer at exactly 120 min
    (121, [13000, 5000]),   # too late: the maximum; the bus starts a new journey
])
def test_the_inference_window_is_inclusive(minutes: int, expected: list[int]) -> None:
    taps = [train(at(8, 0)), bus(at(8, 0) + minutes * 60_000, KM_40)]
    got = charges(INFERRING, taps)
    assert [c.amount for c in got] == expected
    assert got[0].pricing == ("inferred_exit" if minutes == 120 else "max_no_exit")


def test_the_next_entry_on_the_same_vehicle_leaves_the_maximum() -> None:
    # 08:30 on the same train is no repeat (30 min) and no stand-in for an exit.
    taps = [train(at(8, 0)), train(at(8, 30), lat_e6=KM_40)]
    first, second = charges(INFERRING, taps)
    assert (first.amount, first.pricing, first.related) == (13000, "max_no_exit", None)
    assert second.amount == 0   # transfer: max(0, 13000 - 13000)


def test_the_next_entry_on_the_next_service_day_leaves_the_maximum() -> None:
    # 02:30 on the 29th belongs to the 28th's service day; 03:10 (40 min later) to the 29th's.
    taps = [train(at(2, 30, day=29)), bus(at(3, 10, day=29), KM_40)]
    assert INFERRING.service_date(taps[0].ts) != INFERRING.service_date(taps[1].ts)
    first, second = charges(INFERRING, taps)
    assert (first.amount, first.pricing) == (13000, "max_no_exit")
    assert (second.amount, second.role) == (5000, "new_journey")


@pytest.mark.parametrize("which", ["entry", "next entry"])
def test_no_position_on_either_tap_leaves_the_maximum(which: str) -> None:
    entry = train(at(8, 0), lat_e6=0, lon_e6=0) if which == "entry" else train(at(8, 0))
    stand_in = bus(at(8, 40), 0, lon_e6=0) if which == "next entry" else bus(at(8, 40), KM_40)
    first, second = charges(INFERRING, [entry, stand_in])
    assert (first.amount, first.pricing) == (13000, "max_no_exit")
    assert second.amount == 0   # transfer: max(0, 5000 - 13000)


def test_a_repeat_is_not_the_next_entry_the_real_one_after_it_is() -> None:
    # The 08:01 repeat, 150 km away, must not stand in; the bus at 08:40, 40 km away, does.
    taps = [train(at(8, 0)), train(at(8, 1), lat_e6=KM_150), bus(at(8, 40), KM_40)]
    got = charges(INFERRING, taps)
    assert [c.amount for c in got] == [5000, 0, 0]
    assert got[0].pricing == "inferred_exit" and got[0].related == taps[2].tap_id
    assert got[1].role == "repeat"


def test_a_repeat_and_no_real_next_entry_leaves_the_maximum() -> None:
    taps = [train(at(8, 0)), train(at(8, 1), lat_e6=KM_40)]
    got = charges(INFERRING, taps)
    assert [c.amount for c in got] == [13000, 0]
    assert got[0].pricing == "max_no_exit"


def test_a_real_exit_takes_precedence_over_the_next_entry() -> None:
    # Tapped out 24.9 km on (3,000), then a bus 40 km from the start (which would give 5,000).
    taps = [train(at(8, 0)), train(at(8, 30), "exit", KM_24_9), bus(at(8, 40), KM_40)]
    got = charges(INFERRING, taps)
    assert [c.amount for c in got] == [3000, 0, 2000]   # the bus: max(0, 5000 - 3000)
    assert got[0].pricing == "distance" and got[0].related == taps[1].tap_id


def test_an_exit_on_another_vehicle_does_not_stop_the_inference() -> None:
    taps = [train(at(8, 0)), train(at(8, 30), "exit", KM_24_9, vehicle="KRL-2002"),
            bus(at(8, 40), KM_40)]
    assert [c.amount for c in charges(INFERRING, taps)] == [5000, 0, 0]


def test_a_rule_without_infer_exit_minutes_keeps_the_maximum() -> None:
    # KRL-BOGOR of the worked examples: the same fares, no infer_exit_minutes.
    taps = [train(at(8, 0), route="KRL-BOGOR"), bus(at(8, 40), KM_40)]
    first, second = charges(KRL, taps)
    assert (first.amount, first.pricing) == (13000, "max_no_exit")
    assert second.amount == 0


def test_the_inferred_fare_does_not_depend_on_arrival_order() -> None:
    taps = [train(at(8, 0)), train(at(8, 1)), bus(at(8, 40), KM_24_9)]
    expected = [3000, 0, 2000]
    for arrival in (taps, taps[::-1], [taps[2], taps[0], taps[1], taps[2]]):
        day = price_day(INFERRING, "regular", arrival)
        assert [day.amount(t.tap_id) for t in taps] == expected
