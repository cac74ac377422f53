"""Worked fare examples in rupiah (contract section 5, and section 1 for the service day).

Every expected charge below is written out by hand from the rules of the contract, one
number per tap, in the order the taps happen; none is computed by calling the engine.

The rules, quoted short:
1. Repeat: an entry on the same vehicle within `repeat_tap_seconds` (inclusive) after the
   card's previous non-repeat entry costs nothing and plays no part in journeys,
   transfers or caps.
2. Full fare: the first matching rule's amount for the card's category.
3. Transfer: journey started at most `window_minutes` (inclusive) before, and fewer than
   `max_transfers` transfers so far -> `max(0, full - highest full fare in the journey)`;
   otherwise a new journey at the full fare.
4. Cap: `min(charge, max(0, cap - total so far))`.
5. Distance: the entry is charged `max`; the card's next exit on the same vehicle,
   before its next entry, sets the full fare to
   `min(max, amount + step * ceil(max(0, km - base_km) / step_km))`. An exit costs 0.
"""

from __future__ import annotations

import csv
import io
import itertools
import tomllib
import zipfile
from datetime import date, datetime, timedelta, timezone

import pytest
from geopy.distance import geodesic

from fare_gateway.fares.engine import DayPrice, PricedTap, price_day
from fare_gateway.fares.policy import FarePolicy, builtin_policy, parse_policy
from testbed.environment import transjakarta_feed

WIB = timezone(timedelta(hours=7))  # Asia/Jakarta: UTC+7, no DST


# Positions along the meridian 106.8 E (south of Jakarta, towards Bogor), so that the
# geodesic distance of each ride is known; each is checked with geopy below.
LON_E6 = 106_800_000
START_LAT_E6 = -6_200_000
KM_24_9 = START_LAT_E6 - 225_000    # ~24.88 km south of the start
KM_25_1 = START_LAT_E6 - 227_000    # ~25.10 km
KM_35_4 = START_LAT_E6 - 320_000    # ~35.39 km
KM_40 = START_LAT_E6 - 361_700      # ~40.00 km
KM_150 = START_LAT_E6 - 1_356_359   # ~150.0 km


def at(h: int, m: int, s: int = 0, ms: int = 0, day: int = 28) -> int:
    """Epoch milliseconds of a Jakarta wall-clock time in November 2025, by hand."""
    return int(datetime(2025, 11, day, h, m, s, tzinfo=WIB).timestamp()) * 1000 + ms


_seq = itertools.count(1)


def tap(ts: int, vehicle: str = "SBY-0042", route: str = "R1", kind: str = "entry",
        lat_e6: int = START_LAT_E6, lon_e6: int = LON_E6) -> PricedTap:
    """An accepted tap on the validator of `vehicle` (device `{vehicle}-A`)."""
    device = f"{vehicle}-A"
    seq = next(_seq)
    return PricedTap(tap_id=f"{device}:{seq}", device_id=device, seq=seq, ts=ts,
                     vehicle_id=vehicle, route_id=route, kind=kind,
                     lat_e6=lat_e6, lon_e6=lon_e6)


def fares(policy: FarePolicy, category: str, taps: list[PricedTap]) -> list[int]:
    """The charge of each tap, in the order the taps are listed."""
    day = price_day(policy, category, taps)
    assert set(day.charges) == {t.tap_id for t in taps}
    return [day.amount(t.tap_id) for t in taps]


def priced(policy: FarePolicy, category: str, taps: list[PricedTap]) -> DayPrice:
    return price_day(policy, category, taps)


def policy(text: str) -> FarePolicy:
    return parse_policy(tomllib.loads(text))


SBY = builtin_policy()


def test_helper_is_utc_plus_seven() -> None:
    # 2025-11-28 14:00:02.123 WIB is 07:00:02.123 UTC: the contract's example ts
    assert at(14, 0, 2, 123) == 1764313202123
    assert at(5, 0) - at(4, 59, 59, 999) == 1


# == Suroboyo Bus: the built-in policy =================================================


@pytest.mark.parametrize("category,expected", [
    ("regular", 5000), ("student", 2500), ("senior", 0),
])
def test_sby_single_ride_by_category(category: str, expected: int) -> None:
    assert fares(SBY, category, [tap(at(8, 0))]) == [expected]


def test_sby_free_transfer_within_two_hours() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(8, 45), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [5000, 0]
    assert fares(SBY, "student", taps) == [2500, 0]
    assert fares(SBY, "senior", taps) == [0, 0]


def test_sby_transfer_window_is_inclusive_at_exactly_120_minutes() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(10, 0), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [5000, 0]
    assert priced(SBY, "regular", taps).charges[taps[1].tap_id].role == "transfer"


def test_sby_transfer_after_121_minutes_is_a_new_journey() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(10, 1), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [5000, 5000]
    assert fares(SBY, "student", taps) == [2500, 2500]
    assert priced(SBY, "regular", taps).charges[taps[1].tap_id].role == "new_journey"


def test_sby_one_millisecond_past_the_window_is_a_new_journey() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(10, 0, 0, 1), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [5000, 5000]


def test_sby_window_counts_from_the_first_entry_of_the_journey() -> None:
    # 10:01 is only 61 minutes after the 09:00 leg, but 121 after the journey began.
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(9, 0), "SBY-0117"), tap(at(10, 1), "SBY-0200")]
    assert fares(SBY, "regular", taps) == [5000, 0, 5000]


@pytest.mark.parametrize("category,expected", [
    ("regular", 2000), ("student", 1000), ("senior", 0),
])
def test_sby_early_morning_fare(category: str, expected: int) -> None:
    assert fares(SBY, category, [tap(at(5, 0))]) == [expected]
    assert fares(SBY, category, [tap(at(6, 30))]) == [expected]
    assert fares(SBY, category, [tap(at(6, 59, 59, 999))]) == [expected]


@pytest.mark.parametrize("h,m,s,expected", [
    (4, 59, 59, 5000),   # before the window: regular fare
    (5, 0, 0, 2000),     # the window starts at 05:00 (inclusive)
    (6, 59, 59, 2000),
    (7, 0, 0, 5000),     # ... and ends at 07:00 (exclusive)
    (7, 0, 1, 5000),
])
def test_sby_early_morning_window_edges(h: int, m: int, s: int, expected: int) -> None:
    assert fares(SBY, "regular", [tap(at(h, m, s))]) == [expected]


def test_sby_transfer_from_early_morning_leg_pays_the_difference() -> None:
    taps = [tap(at(6, 30), "SBY-0042"), tap(at(7, 15), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [2000, 3000]   # 5000 - 2000
    assert fares(SBY, "student", taps) == [1000, 1500]   # 2500 - 1000
    assert fares(SBY, "senior", taps) == [0, 0]


def test_sby_transfer_onto_a_cheaper_leg_costs_nothing() -> None:
    # 04:30 is before the early window: 5000; the 05:30 leg's full fare is 2000.
    taps = [tap(at(4, 30), "SBY-0042"), tap(at(5, 30), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [5000, 0]      # max(0, 2000 - 5000)


def test_sby_difference_is_against_the_highest_full_fare_of_the_journey() -> None:
    taps = [tap(at(6, 0), "SBY-0042"),    # 2000, journey starts
            tap(at(7, 10), "SBY-0117"),   # transfer 1: 5000 - 2000 = 3000
            tap(at(7, 40), "SBY-0200")]   # transfer 2: 5000 - 5000 = 0
    assert fares(SBY, "regular", taps) == [2000, 3000, 0]


# == Transjakarta, from the real feed ==================================================

# fare_attributes.txt of transjakarta-2021.zip: brt-pagi 2000 (the early fare),
# brt-regular 3500, brt-malam 3500 (agency "brt").
TJ_EARLY, TJ_REGULAR = 2000, 3500

TRANSJAKARTA = policy(f"""
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
categories = ["regular", "student"]
default_category = "regular"

[[fares]]
routes = ["*"]
start = "05:00"
end = "07:00"
amount = {{ regular = {TJ_EARLY} }}

[[fares]]
routes = ["*"]
amount = {{ regular = {TJ_REGULAR} }}
""")


def test_transjakarta_figures_are_the_feeds() -> None:
    with zipfile.ZipFile(transjakarta_feed()) as z:
        rows = list(csv.DictReader(io.StringIO(z.read("fare_attributes.txt").decode("utf-8-sig"))))
    prices = {r["fare_id"]: r["price"] for r in rows}
    assert {r["currency_type"] for r in rows} == {"IDR"}
    assert int(prices["brt-pagi"]) == TJ_EARLY
    assert int(prices["brt-regular"]) == TJ_REGULAR
    assert int(prices["brt-malam"]) == TJ_REGULAR


@pytest.mark.parametrize("h,m,s,expected", [
    (4, 59, 59, 3500),
    (5, 0, 0, 2000),
    (6, 30, 0, 2000),
    (6, 59, 59, 2000),
    (7, 0, 0, 3500),
    (12, 0, 0, 3500),
    (22, 30, 0, 3500),   # brt-malam: also 3500
])
def test_transjakarta_fare_by_time_of_day(h: int, m: int, s: int, expected: int) -> None:
    assert fares(TRANSJAKARTA, "regular", [tap(at(h, m, s), "TJ-001", "1")]) == [expected]


def test_transjakarta_category_without_an_amount_pays_the_default_categorys() -> None:
    assert fares(TRANSJAKARTA, "student", [tap(at(6, 0), "TJ-001", "1")]) == [2000]
    assert fares(TRANSJAKARTA, "student", [tap(at(8, 0), "TJ-001", "1")]) == [3500]


def test_transjakarta_without_transfers_every_entry_pays() -> None:
    # no [transfers] table: window 0, max 0 -> every (non-repeat) entry is a new journey
    taps = [tap(at(6, 40), "TJ-001", "1"), tap(at(7, 10), "TJ-002", "9"),
            tap(at(17, 0), "TJ-003", "1")]
    assert fares(TRANSJAKARTA, "regular", taps) == [2000, 3500, 3500]


# == Daily cap =========================================================================

FLAT_4000 = policy("""
currency = "IDR"
timezone = "Asia/Jakarta"
categories = ["regular", "student"]
default_category = "regular"

[[fares]]
routes = ["EXPRESS"]
amount = { regular = 7000 }

[[fares]]
routes = ["*"]
amount = { regular = 4000 }

[transfers]
window_minutes = 120
max_transfers = 2

[caps]
daily = { regular = 10000 }
""")


def test_cap_third_journey_is_free_for_regular() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(10, 30), "SBY-0117"), tap(at(13, 0), "SBY-0200")]
    assert fares(SBY, "regular", taps) == [5000, 5000, 0]
    day = priced(SBY, "regular", taps)
    assert day.total == 10000
    assert day.charges[taps[2].tap_id].capped
    assert day.charges[taps[2].tap_id].full_fare == 5000


def test_cap_for_students_is_5000() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(10, 30), "SBY-0117"), tap(at(13, 0), "SBY-0200")]
    assert fares(SBY, "student", taps) == [2500, 2500, 0]


def test_cap_with_early_morning_fares() -> None:
    # the third journey's 5000 is lowered to the 3000 left under the 10000 cap
    taps = [tap(at(5, 30), "SBY-0042"),   # 2000             total  2000
            tap(at(8, 0), "SBY-0117"),    # new journey 5000 total  7000
            tap(at(10, 30), "SBY-0200"),  # new journey 5000 -> 3000 (cap 10000)
            tap(at(13, 0), "SBY-0042")]   # 0
    assert fares(SBY, "regular", taps) == [2000, 5000, 3000, 0]


def test_cap_lowers_a_charge_partially() -> None:
    taps = [tap(at(8, 0), "B1"), tap(at(10, 30), "B2"), tap(at(13, 0), "B3"),
            tap(at(15, 30), "B4")]
    assert fares(FLAT_4000, "regular", taps) == [4000, 4000, 2000, 0]
    day = priced(FLAT_4000, "regular", taps)
    assert [day.charges[t.tap_id].capped for t in taps] == [False, False, True, True]


def test_cap_reached_mid_journey_on_a_transfer() -> None:
    taps = [tap(at(8, 0), "B1"),                        # journey 1: 4000      total 4000
            tap(at(10, 30), "B2"),                      # journey 2: 4000      total 8000
            tap(at(11, 0), "X1", "EXPRESS"),            # transfer: 7000-4000 = 3000 -> 2000
            tap(at(11, 30), "B3"),                      # transfer: 0
            tap(at(14, 0), "B4")]                       # journey 3: 4000 -> 0
    assert fares(FLAT_4000, "regular", taps) == [4000, 4000, 2000, 0, 0]


def test_no_cap_for_a_category_without_one() -> None:
    # FLAT_4000 caps only "regular"; a student pays the default category's 4000, uncapped.
    taps = [tap(at(8, 0), "B1"), tap(at(10, 30), "B2"), tap(at(13, 0), "B3")]
    assert fares(FLAT_4000, "student", taps) == [4000, 4000, 4000]


# == Repeat taps =======================================================================


def test_repeat_on_the_same_vehicle_within_120_seconds_costs_nothing() -> None:
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(8, 2), "SBY-0042")]   # exactly 120 s
    assert fares(SBY, "regular", taps) == [5000, 0]
    assert priced(SBY, "regular", taps).charges[taps[1].tap_id].role == "repeat"


def test_repeat_boundary_120_seconds_is_a_repeat_121_is_not() -> None:
    # From an early-morning leg so that a non-repeat shows as a 3000 transfer.
    repeat = [tap(at(6, 59), "SBY-0042"), tap(at(7, 1, 0), "SBY-0042")]
    assert fares(SBY, "regular", repeat) == [2000, 0]
    not_repeat = [tap(at(6, 59), "SBY-0042"), tap(at(7, 1, 1), "SBY-0042")]
    assert fares(SBY, "regular", not_repeat) == [2000, 3000]
    assert priced(SBY, "regular", not_repeat).charges[not_repeat[1].tap_id].role == "transfer"


def test_tap_on_another_vehicle_within_120_seconds_is_a_transfer_not_a_repeat() -> None:
    taps = [tap(at(6, 59), "SBY-0042"), tap(at(7, 0, 30), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [2000, 3000]
    assert priced(SBY, "regular", taps).charges[taps[1].tap_id].role == "transfer"


def test_repeat_window_counts_from_the_previous_non_repeat_entry() -> None:
    taps = [tap(at(6, 58, 0), "SBY-0042"),    # 2000
            tap(at(6, 59, 30), "SBY-0042"),   # 90 s after it: repeat, 0
            tap(at(7, 1, 0), "SBY-0042")]     # 180 s after the real entry: transfer 3000
    assert fares(SBY, "regular", taps) == [2000, 0, 3000]


def test_repeat_does_not_count_as_a_transfer() -> None:
    taps = [tap(at(8, 0), "SBY-0042"),        # 5000, journey starts
            tap(at(8, 1), "SBY-0042"),        # repeat: 0, not a transfer
            tap(at(8, 30), "SBY-0117"),       # transfer 1: 0
            tap(at(9, 0), "SBY-0200")]        # transfer 2 (a 3rd, 5000, if the repeat counted)
    assert fares(SBY, "regular", taps) == [5000, 0, 0, 0]
    roles = [priced(SBY, "regular", taps).charges[t.tap_id].role for t in taps]
    assert roles == ["new_journey", "repeat", "transfer", "transfer"]


def test_repeat_does_not_count_toward_the_cap() -> None:
    taps = [tap(at(8, 0), "B1"),     # 4000
            tap(at(8, 1), "B1"),     # repeat 0
            tap(at(10, 30), "B2"),   # 4000
            tap(at(10, 31), "B2"),   # repeat 0
            tap(at(13, 0), "B3")]    # 4000 -> 2000 (cap 10000 - 8000)
    assert fares(FLAT_4000, "regular", taps) == [4000, 0, 4000, 0, 2000]


def test_repeat_does_not_start_a_journey() -> None:
    # A repeat at 08:01 must not move the journey start: 10:00:30 is 120.5 min after 08:00.
    taps = [tap(at(8, 0), "SBY-0042"), tap(at(8, 1), "SBY-0042"), tap(at(10, 0, 30), "SBY-0117")]
    assert fares(SBY, "regular", taps) == [5000, 0, 5000]


# == Transfer limit ====================================================================


def test_third_transfer_beyond_the_limit_starts_a_new_journey() -> None:
    taps = [tap(at(8, 0), "SBY-0042"),    # journey 1: 5000
            tap(at(8, 20), "SBY-0117"),   # transfer 1: 0
            tap(at(8, 40), "SBY-0200"),   # transfer 2: 0
            tap(at(9, 0), "SBY-0301"),    # would be transfer 3 > max_transfers 2: new journey 5000
            tap(at(9, 20), "SBY-0042")]   # transfer 1 of journey 2: 0
    assert fares(SBY, "regular", taps) == [5000, 0, 0, 5000, 0]
    assert fares(SBY, "student", taps) == [2500, 0, 0, 2500, 0]
    roles = [priced(SBY, "regular", taps).charges[t.tap_id].role for t in taps]
    assert roles == ["new_journey", "transfer", "transfer", "new_journey", "transfer"]


# == Service day =======================================================================


def test_0230_belongs_to_the_previous_service_day() -> None:
    assert SBY.service_date(at(2, 30, day=29)) == date(2025, 11, 28)
    assert SBY.service_date(at(2, 59, 59, 999, day=29)) == date(2025, 11, 28)
    assert SBY.service_date(at(3, 0, day=29)) == date(2025, 11, 29)
    assert SBY.service_date(at(1, 30, day=29)) == date(2025, 11, 28)


def test_0230_tap_counts_toward_the_previous_days_cap_not_the_next() -> None:
    taps = [tap(at(8, 0, day=28), "SBY-0042"),   # 28th: 5000
            tap(at(10, 30, day=28), "SBY-0117"),  # 28th: 5000, cap reached
            tap(at(2, 30, day=29), "SBY-0200"),   # 28th (service day): capped, 0
            tap(at(3, 30, day=29), "SBY-0042"),   # 29th: 5000 -- not a transfer from 02:30
            tap(at(4, 0, day=29), "SBY-0117"),    # 29th: transfer 0
            tap(at(8, 0, day=29), "SBY-0200"),    # 29th: new journey 5000
            tap(at(10, 30, day=29), "SBY-0301")]  # 29th: capped 0
    by_day: dict[date, list[PricedTap]] = {}
    for t in taps:
        by_day.setdefault(SBY.service_date(t.ts), []).append(t)
    assert [len(v) for v in by_day.values()] == [3, 4]
    charged: dict[str, int] = {}
    for day_taps in by_day.values():
        charged.update(zip([t.tap_id for t in day_taps], fares(SBY, "regular", day_taps),
                           strict=True))
    assert [charged[t.tap_id] for t in taps] == [5000, 5000, 0, 5000, 0, 5000, 0]


def test_0230_tap_does_not_continue_a_journey_into_the_next_day() -> None:
    taps = [tap(at(2, 30, day=29), "SBY-0042"), tap(at(3, 15, day=29), "SBY-0117")]
    assert SBY.service_date(taps[0].ts) != SBY.service_date(taps[1].ts)
    assert fares(SBY, "regular", taps[:1]) == [5000]
    assert fares(SBY, "regular", taps[1:]) == [5000]   # full fare: a new day, a new journey


# == Distance route ====================================================================

KRL = policy("""
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student", "senior"]
default_category = "regular"

[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000 }

[[fares]]
routes = ["*"]
amount = { regular = 5000, student = 2500, senior = 0 }

[transfers]
window_minutes = 120
max_transfers = 2
""")


def km_between(lat_a_e6: int, lat_b_e6: int) -> float:
    return float(geodesic((lat_a_e6 / 1e6, LON_E6 / 1e6), (lat_b_e6 / 1e6, LON_E6 / 1e6)).km)


def test_positions_are_the_distances_they_claim() -> None:
    assert 24.8 < km_between(START_LAT_E6, KM_24_9) < 24.9
    assert 25.1 < km_between(START_LAT_E6, KM_25_1) < 25.2
    assert 35.3 < km_between(START_LAT_E6, KM_35_4) < 35.4
    assert 39.99 < km_between(START_LAT_E6, KM_40) < 40.01
    assert 149.9 < km_between(START_LAT_E6, KM_150) < 150.1


def krl(ts: int, kind: str = "entry", lat_e6: int = START_LAT_E6,
        vehicle: str = "KRL-1001") -> PricedTap:
    return tap(ts, vehicle, "KRL-BOGOR", kind, lat_e6=lat_e6)


def test_distance_entry_alone_is_charged_the_maximum() -> None:
    assert fares(KRL, "regular", [krl(at(8, 0))]) == [13000]


def test_distance_category_without_amount_pays_the_default_categorys() -> None:
    assert fares(KRL, "student", [krl(at(8, 0))]) == [13000]
    assert fares(KRL, "student", [krl(at(8, 0)), krl(at(8, 40), "exit", KM_40)]) == [5000, 0]


def test_distance_exit_40_km_away_sets_the_fare() -> None:
    # 3000 + 1000 * ceil((40 - 25) / 10) = 3000 + 2000 = 5000; the exit itself costs 0
    taps = [krl(at(8, 0)), krl(at(8, 40), "exit", KM_40)]
    assert fares(KRL, "regular", taps) == [5000, 0]
    day = priced(KRL, "regular", taps)
    assert day.charges[taps[0].tap_id].full_fare == 5000
    assert day.charges[taps[1].tap_id].role == "exit"


@pytest.mark.parametrize("exit_lat,expected", [
    (START_LAT_E6, 3000),   # 0 km: base fare
    (KM_24_9, 3000),        # within base_km
    (KM_25_1, 4000),        # 0.1 km beyond: one started step
    (KM_35_4, 5000),        # 10.4 km beyond: two started steps
    (KM_40, 5000),          # 15 km beyond: two
    (KM_150, 13000),        # 3000 + 13 * 1000 = 16000, capped at max 13000
])
def test_distance_fare_by_ride_length(exit_lat: int, expected: int) -> None:
    taps = [krl(at(8, 0)), krl(at(9, 30), "exit", exit_lat)]
    assert fares(KRL, "regular", taps) == [expected, 0]


def test_distance_exit_on_another_vehicle_does_not_count() -> None:
    taps = [krl(at(8, 0), vehicle="KRL-1001"), krl(at(8, 40), "exit", KM_40, vehicle="KRL-2002")]
    assert fares(KRL, "regular", taps) == [13000, 0]


def test_distance_exit_after_the_cards_next_entry_does_not_count() -> None:
    taps = [krl(at(8, 0), vehicle="KRL-1001"),          # 13000, never closed
            tap(at(8, 30), "SBY-0042", "R1"),           # transfer: max(0, 5000 - 13000) = 0
            krl(at(8, 40), "exit", KM_40, vehicle="KRL-1001")]  # too late: after an entry
    assert fares(KRL, "regular", taps) == [13000, 0, 0]


def test_distance_only_the_next_exit_counts() -> None:
    taps = [krl(at(8, 0)), krl(at(8, 40), "exit", KM_40), krl(at(9, 30), "exit", KM_150)]
    assert fares(KRL, "regular", taps) == [5000, 0, 0]


def test_distance_exit_before_the_entry_does_not_count() -> None:
    taps = [krl(at(7, 50), "exit", KM_40), krl(at(8, 0))]
    assert fares(KRL, "regular", taps) == [0, 13000]


def test_distance_exit_counts_when_it_arrives_first() -> None:
    entry, exit_ = krl(at(8, 0)), krl(at(8, 40), "exit", KM_40)
    assert fares(KRL, "regular", [exit_, entry]) == [0, 5000]


def test_distance_leg_as_a_transfer_uses_the_fare_set_by_the_exit() -> None:
    bus = tap(at(7, 30), "SBY-0042", "R1")                 # 5000
    no_exit = [bus, krl(at(8, 0))]                          # 13000 - 5000 = 8000
    assert fares(KRL, "regular", no_exit) == [5000, 8000]
    with_exit = [bus, krl(at(8, 0)), krl(at(8, 40), "exit", KM_40)]   # full 5000 -> 0
    assert fares(KRL, "regular", with_exit) == [5000, 0, 0]
    short = [bus, krl(at(8, 0)), krl(at(8, 40), "exit", KM_24_9)]     # full 3000 -> 0
    assert fares(KRL, "regular", short) == [5000, 0, 0]


def test_distance_leg_then_a_bus_transfer_pays_the_difference() -> None:
    taps = [krl(at(8, 0)), krl(at(8, 30), "exit", KM_24_9),   # 3000
            tap(at(8, 45), "SBY-0042", "R1")]                  # 5000 - 3000 = 2000
    assert fares(KRL, "regular", taps) == [3000, 0, 2000]


def test_distance_repeat_entry_then_exit_still_prices_the_leg() -> None:
    # Reading: a repeat "plays no part" in anything, so it is not the "next entry" that
    # would make the exit too late.
    taps = [krl(at(8, 0)), krl(at(8, 1)), krl(at(8, 40), "exit", KM_40)]
    assert fares(KRL, "regular", taps) == [5000, 0, 0]
