"""Property tests of `price_card` over weeks and months (contract section 5, rules 4 and 5).

Random cards ride on a few days of two to six weeks that span a month's end, on two
buses and two trains of a distance route with inferred exits, in the three categories,
under the built-in policy and a policy whose daily, weekly and monthly caps are tight
enough to bind often. Taps land anywhere in a day, often near the boundaries that matter
(the 03:00 start of the service day, the early fare, the repeat and transfer windows);
some carry no position.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from geopy.distance import geodesic
from hypothesis import given, settings
from hypothesis import strategies as st

from fare_gateway.fares.engine import CardPrice, Charge, Earlier, PricedTap, price_card, price_day
from fare_gateway.fares.policy import FarePolicy, builtin_policy, parse_policy

WIB = timezone(timedelta(hours=7))
# A card has a few dozen taps at most; 50 examples of each property keep the file to a
# few seconds (a run of 1,000 each found nothing more).
PROPS = settings(max_examples=50, deadline=None)

TIGHT = parse_policy(tomllib.loads("""
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student", "senior"]
default_category = "regular"

[[fares]]
routes = ["KRL"]
amount = { regular = 3000, student = 1500 }
max = { regular = 13000, student = 6500 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 120 }

[[fares]]
routes = ["*"]
start = "05:00"
end = "07:00"
amount = { regular = 2000, student = 1000, senior = 0 }

[[fares]]
routes = ["*"]
amount = { regular = 5000, student = 2500, senior = 0 }

[transfers]
window_minutes = 120
max_transfers = 2

[caps]
daily = { regular = 10000, student = 5000 }
weekly = { regular = 30000, student = 15000 }
monthly = { regular = 50000, student = 25000, senior = 20000 }
"""))
POLICIES = {"builtin": builtin_policy(), "tight": TIGHT}

# The caps again, written out from the two policies' text, not read from them:
# (daily, weekly, monthly) by category, None for no cap.
CAPS: dict[str, dict[str, tuple[int | None, int | None, int | None]]] = {
    "builtin": {"regular": (10000, 50000, 180000), "student": (5000, None, None),
                "senior": (None, None, None)},
    "tight": {"regular": (10000, 30000, 50000), "student": (5000, 15000, 25000),
              "senior": (None, None, 20000)},
}
KRL_FARES = {"regular": (3000, 13000), "student": (1500, 6500), "senior": (3000, 13000)}
BASE_KM, STEP_KM, STEP, INFER_MS = 25, 10, 1000, 120 * 60_000

# Mondays a few days before a month's end: every card's span crosses one.
MONDAYS = [date(2025, 9, 22), date(2025, 10, 27), date(2025, 12, 22), date(2026, 1, 26),
           date(2026, 2, 23)]
VEHICLE_ROUTE = {"BUS-1": "R1", "BUS-2": "R2", "KRL-1": "KRL", "KRL-2": "KRL"}
DAY_MS = 86_400_000
# Gaps between a day's taps (ms): the repeat and transfer windows' edges, a new journey
# (150 minutes), or anything up to four hours.
GAPS = st.one_of(
    st.sampled_from([0, 1, 120_000, 120_001, 7_200_000, 7_200_001, 9_000_000]),
    st.integers(0, 4 * 3_600_000),
)
LON_E6 = 106_800_000
# Latitudes along the meridian 106.8 E: 0, ~24.9, ~25.1, ~40, ~89 and ~150 km from -6.2;
# one tap in seven has no fix (0, 0).
LATS = [0, -6_200_000, -6_425_000, -6_427_000, -6_561_700, -7_000_000, -7_556_359]
# A tap's validator (two on each vehicle), kind and latitude in one draw each: drawing
# less per tap is what keeps these properties fast.
DEVICES = [(vehicle, f"{vehicle}-{side}") for vehicle in sorted(VEHICLE_ROUTE) for side in "AB"]
KINDS = ["entry", "entry", "entry", "exit"]
CATEGORIES = st.sampled_from(["regular", "student", "senior"])
# Order, day-by-day pricing and a new tap are checked on TIGHT only: the built-in's caps
# rarely bind in these cards; its bounds and rule 4 are checked on both.
policies = pytest.mark.parametrize("name", sorted(POLICIES))


def day_start_ms(service_date: date) -> int:
    return int(datetime(service_date.year, service_date.month, service_date.day, 3,
                        tzinfo=WIB).timestamp()) * 1000


def service_date(ts: int) -> date:
    """Written out again: the local date of the time three hours earlier."""
    return (datetime.fromtimestamp(ts / 1000, WIB) - timedelta(hours=3)).date()


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def first_of_month(d: date) -> date:
    return date(d.year, d.month, 1)


def tap(tap_id: str, device: str, seq: int, ts: int, vehicle: str, kind: str,
        lat_e6: int) -> PricedTap:
    """A tap on `vehicle`'s route, at `lat_e6` on the meridian (latitude 0: no fix)."""
    return PricedTap(tap_id=tap_id, device_id=device, seq=seq, ts=ts, vehicle_id=vehicle,
                     route_id=VEHICLE_ROUTE[vehicle], kind=kind, lat_e6=lat_e6,
                     lon_e6=LON_E6 if lat_e6 else 0)


def one_day(draw: st.DrawFn, service_date: date, seqs: dict[str, int]) -> list[PricedTap]:
    """A card's taps starting in one service day (the last may run into the next)."""
    # anywhere in the service day, or within an hour of its end (02:00-03:00 local),
    # or around the early fare (04:30-07:30)
    ts = day_start_ms(service_date) + draw(st.one_of(
        st.integers(0, DAY_MS - 1), st.integers(DAY_MS - 3_600_000, DAY_MS - 1),
        st.integers(90 * 60_000, 270 * 60_000)))
    taps: list[PricedTap] = []
    vehicle, device = draw(st.sampled_from(DEVICES))
    for i in range(draw(st.integers(1, 7))):
        if i:
            ts += draw(GAPS)
            # often on the same validator again: repeats, exits, a next entry on the same vehicle
            vehicle, device = draw(st.sampled_from([(vehicle, device)] * 3 + DEVICES))
        seqs[device] = seqs.get(device, 0) + 1
        taps.append(tap(f"{device}:{seqs[device]}", device, seqs[device], ts, vehicle,
                        draw(st.sampled_from(KINDS)), draw(st.sampled_from(LATS))))
    return taps


@st.composite
def cards(draw: st.DrawFn) -> list[PricedTap]:
    """One card's accepted taps over some days of a span of two to six weeks."""
    first = draw(st.sampled_from(MONDAYS))
    weeks = draw(st.integers(2, 6))
    span = [first + timedelta(days=n) for n in range(7 * weeks)]
    month_end = next(d for d in span if (d + timedelta(days=1)).day == 1)
    # the last day of the month and the first of the next, and a few others
    days = {month_end, month_end + timedelta(days=1),
            *draw(st.lists(st.sampled_from(span), max_size=10))}
    seqs: dict[str, int] = {}
    return [t for d in sorted(days) for t in one_day(draw, d, seqs)]


@st.composite
def days(draw: st.DrawFn) -> list[PricedTap]:
    """One card's taps in one service day (of a week over a month's end)."""
    d = draw(st.sampled_from(MONDAYS)) + timedelta(days=draw(st.integers(0, 13)))
    return [t for t in one_day(draw, d, {}) if service_date(t.ts) == d]


def order(tap: PricedTap) -> tuple[int, str, int]:
    return (tap.ts, tap.device_id, tap.seq)


def in_order(taps: list[PricedTap]) -> list[PricedTap]:
    return sorted({t.tap_id: t for t in taps}.values(), key=order)


def by_day(taps: list[PricedTap]) -> dict[date, list[PricedTap]]:
    days: dict[date, list[PricedTap]] = {}
    for t in in_order(taps):
        days.setdefault(service_date(t.ts), []).append(t)
    return dict(sorted(days.items()))


def whole(charges: dict[str, Charge]) -> dict[str, tuple[object, ...]]:
    """Every field of every charge (`Charge.__eq__` compares only the first five)."""
    return {tap_id: tuple(c) for tap_id, c in charges.items()}


def earlier_of(amount: dict[str, int], days: dict[date, list[PricedTap]], d: date) -> Earlier:
    """What the days before `d` in its week and in its month were charged."""
    week = sum(amount[t.tap_id] for day, taps in days.items()
               if day < d and monday(day) == monday(d) for t in taps)
    month = sum(amount[t.tap_id] for day, taps in days.items()
                if day < d and first_of_month(day) == first_of_month(d) for t in taps)
    return Earlier(week, month)


def amounts(card: CardPrice) -> dict[str, int]:
    return {tap_id: c.amount for tap_id, c in card.charges.items()}


# -- (1) order and duplicates -------------------------------------------------------------


@PROPS
@given(taps=cards(), category=CATEGORIES, data=st.data())
def test_any_arrival_order_and_duplication_give_the_same_card_price(
        taps: list[PricedTap], category: str, data: st.DataObject) -> None:
    policy = TIGHT
    expected = price_card(policy, category, taps)
    again = [t._replace() for t in data.draw(st.lists(st.sampled_from(taps), max_size=8))]
    arrival = data.draw(st.permutations(taps + again))
    got = price_card(policy, category, iter(arrival))
    assert whole(got.charges) == whole(expected.charges)
    assert (got.weeks, got.months) == (expected.weeks, expected.months)


# -- (2) bounds -----------------------------------------------------------------------------


@policies
@PROPS
@given(taps=cards(), category=CATEGORIES)
def test_no_day_week_or_month_passes_its_cap_and_no_charge_is_negative(
        name: str, taps: list[PricedTap], category: str) -> None:
    card = price_card(POLICIES[name], category, taps)
    assert set(card.charges) == {t.tap_id for t in taps}
    daily, weekly, monthly = CAPS[name][category]
    days: dict[date, int] = {}
    weeks: dict[date, int] = {}
    months: dict[date, int] = {}
    for t in in_order(taps):
        charge = card.charges[t.tap_id]
        assert charge.amount >= 0 and charge.capped_by >= 0
        assert charge.amount == 0 or t.kind == "entry"
        assert charge.capped == (charge.capped_by > 0) == bool(charge.cap)
        d = service_date(t.ts)
        for totals, key, cap in ((days, d, daily), (weeks, monday(d), weekly),
                                 (months, first_of_month(d), monthly)):
            totals[key] = totals.get(key, 0) + charge.amount
            assert cap is None or totals[key] <= cap   # at every tap, not only at the end
    assert card.weeks == weeks and card.months == months
    assert {d: day.total for d, day in card.days.items()} == days


# -- (3) day by day ---------------------------------------------------------------------


@PROPS
@given(taps=cards(), category=CATEGORIES)
def test_pricing_day_by_day_from_the_earlier_totals_is_the_card_price(
        taps: list[PricedTap], category: str) -> None:
    policy = TIGHT
    card = price_card(policy, category, taps)
    days = by_day(taps)
    assert list(card.days) == list(days)
    paid: dict[str, int] = {}
    for d, day_taps in days.items():
        earlier = earlier_of(paid, days, d)
        day = price_day(policy, category, day_taps[::-1], earlier)
        assert whole(day.charges) == whole(card.days[d].charges)
        assert card.days[d].earlier == earlier
        paid.update({t: c.amount for t, c in day.charges.items()})


# -- (4) a new tap leaves the past alone ------------------------------------------------------


@PROPS
@given(taps=cards(), category=CATEGORIES, data=st.data())
def test_a_new_tap_changes_no_earlier_day_and_a_later_one_only_through_its_totals(
        taps: list[PricedTap], category: str, data: st.DataObject) -> None:
    """Adding a tap on service day D changes no charge of a day before D; a later day's
    charges change only when what its week and month were charged before it did."""
    policy = TIGHT
    first, last = min(t.ts for t in taps), max(t.ts for t in taps)
    vehicle = data.draw(st.sampled_from(sorted(VEHICLE_ROUTE)))
    new = tap("LATE-A:1", "LATE-A", 1, data.draw(st.integers(first - DAY_MS, last + DAY_MS)),
              vehicle, data.draw(st.sampled_from(["entry", "exit"])),
              data.draw(st.sampled_from(LATS)))
    before = price_card(policy, category, taps)
    after = price_card(policy, category, [*taps, new])
    new_day = service_date(new.ts)
    days_before, days_after = by_day(taps), by_day([*taps, new])
    paid_before, paid_after = amounts(before), amounts(after)
    for d in days_before:
        old, now = whole(before.days[d].charges), whole(after.days[d].charges)
        if d < new_day:
            assert now == old
        elif d > new_day and (earlier_of(paid_before, days_before, d)
                              == earlier_of(paid_after, days_after, d)):
            assert now == old


# -- (5) rule 4, read a second time ------------------------------------------------------------


def rule_four(charge: int, left: dict[str, int]) -> tuple[int, int, str]:
    """`max(0, min(charge, *left))`, what that takes off, and the cap it names: the first
    (shortest) period among those leaving the least, when the charge was lowered."""
    allowed = min([charge, *left.values()])
    amount = max(0, allowed)
    named = next((p for p, v in left.items() if v == allowed), "") if amount < charge else ""
    return amount, charge - amount, named


def uncapped(policy: FarePolicy) -> FarePolicy:
    """The same policy without caps: its charges are rule 4's input (a transfer pays the
    difference of full fares, never of charges, so no cap changes what comes before it)."""
    return replace(policy, daily_caps={}, weekly_caps={}, monthly_caps={})


@policies
@PROPS
@given(taps=cards(), category=CATEGORIES)
def test_caps_follow_rule_four_over_days_weeks_and_months(
        name: str, taps: list[PricedTap], category: str) -> None:
    """Rule 4 applied here in tap order, from totals kept by service date, Monday and first
    of the month, to the charges of the policy without caps."""
    policy = POLICIES[name]
    before_caps = price_card(uncapped(policy), category, taps)
    card = price_card(policy, category, taps)
    caps = dict(zip(("daily", "weekly", "monthly"), CAPS[name][category], strict=True))
    totals: dict[tuple[str, date], int] = {}
    for t in in_order(taps):
        d = service_date(t.ts)
        periods = {"daily": d, "weekly": monday(d), "monthly": first_of_month(d)}
        left = {p: cap - totals.get((p, periods[p]), 0) for p, cap in caps.items()
                if cap is not None}
        want = rule_four(before_caps.amount(t.tap_id), left)
        got = card.charges[t.tap_id]
        assert (got.amount, got.capped_by, got.cap) == want, t
        for p, key in periods.items():
            totals[(p, key)] = totals.get((p, key), 0) + want[0]


# What a day's week and month may have left before it: often the same, or what a day's
# fares add up to, so that caps tie and bind mid-day.
LEFT = st.sampled_from([0, 1000, 2000, 2500, 3000, 5000, 7000, 10000, 13000, 20000])


@policies
@PROPS
@given(taps=days(), category=CATEGORIES, week_left=LEFT, month_left=LEFT)
def test_caps_on_one_day_follow_rule_four_from_any_earlier_totals(
        name: str, taps: list[PricedTap], category: str, week_left: int,
        month_left: int) -> None:
    policy = POLICIES[name]
    daily, weekly, monthly = CAPS[name][category]
    earlier = Earlier(max(0, (weekly or 0) - week_left), max(0, (monthly or 0) - month_left))
    day = price_day(policy, category, taps, earlier)
    before_caps = price_day(uncapped(policy), category, taps)
    totals = {"daily": 0, "weekly": earlier.week, "monthly": earlier.month}
    caps = {"daily": daily, "weekly": weekly, "monthly": monthly}
    for t in in_order(taps):
        left = {p: cap - totals[p] for p, cap in caps.items() if cap is not None}
        want = rule_four(before_caps.amount(t.tap_id), left)
        got = day.charges[t.tap_id]
        assert (got.amount, got.capped_by, got.cap) == want, t
        for p in totals:
            totals[p] += want[0]


# -- rule 5's inferred exit, read a second time ----------------------------------------------------


def km(a: PricedTap, b: PricedTap) -> float:
    return float(geodesic((a.lat_e6 / 1e6, a.lon_e6 / 1e6), (b.lat_e6 / 1e6, b.lon_e6 / 1e6)).km)


@PROPS
@given(taps=cards(), category=CATEGORIES)
def test_train_legs_are_priced_by_exit_by_inference_or_at_the_maximum(
        taps: list[PricedTap], category: str) -> None:
    card = price_card(TIGHT, category, taps)
    base, top = KRL_FARES[category]
    for day_taps in by_day(taps).values():
        # repeats: an entry on the vehicle of the previous non-repeat entry, within 120 s
        real: list[PricedTap] = []
        for t in day_taps:
            if t.kind == "entry" and not (real and real[-1].vehicle_id == t.vehicle_id
                                          and t.ts - real[-1].ts <= 120_000):
                real.append(t)
        for i, entry in enumerate(real):
            charge = card.charges[entry.tap_id]
            if entry.route_id != "KRL":
                assert (charge.pricing, charge.km, charge.related) == ("flat", None, None)
                continue
            following = real[i + 1] if i + 1 < len(real) else None
            exit_ = next((t for t in day_taps if t.kind == "exit"
                          and t.vehicle_id == entry.vehicle_id and order(entry) < order(t)
                          and (following is None or order(t) < order(following))), None)
            if exit_ is not None:
                pricing, end = "distance", exit_
            elif (following is not None and following.vehicle_id != entry.vehicle_id
                  and following.ts - entry.ts <= INFER_MS
                  and (entry.lat_e6, entry.lon_e6) != (0, 0)
                  and (following.lat_e6, following.lon_e6) != (0, 0)):
                pricing, end = "inferred_exit", following
            else:
                assert (charge.pricing, charge.full_fare, charge.related) == (
                    "max_no_exit", top, None)
                continue
            steps = math.ceil(max(0.0, km(entry, end) - BASE_KM) / STEP_KM)
            assert (charge.pricing, charge.related) == (pricing, end.tap_id)
            assert charge.full_fare == min(top, base + STEP * steps)
            assert charge.km == pytest.approx(km(entry, end))
