"""Property tests of `price_day` (contract section 5) on random service days of taps.

Each property runs on the built-in Suroboyo policy and on a policy with a distance rule
(KRL-BOGOR priced by distance, an early-morning rule, a catch-all, and daily caps).
Random days mix entries and exits on a few vehicles (two buses, two KRL trains), the
three categories, timestamps anywhere in one service day, and gaps that often sit on
the boundaries that matter (same millisecond, 120 s repeat, 120 min transfer window).
"""

from __future__ import annotations

import math
import tomllib
from datetime import datetime, timedelta, timezone

import pytest
from geopy.distance import geodesic
from hypothesis import given, settings
from hypothesis import strategies as st

from fare_gateway.fares.engine import DayPrice, PricedTap, price_day
from fare_gateway.fares.policy import FarePolicy, builtin_policy, parse_policy

WIB = timezone(timedelta(hours=7))
DAY_START = int(datetime(2025, 11, 28, 3, 0, tzinfo=WIB).timestamp()) * 1000  # 03:00 local
DAY_END = DAY_START + 86_400_000                                              # exclusive

PROPS = settings(max_examples=200, deadline=None)

DISTANCE_POLICY = parse_policy(tomllib.loads("""
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
daily = { regular = 20000, student = 8000 }
"""))

POLICIES = {"builtin": builtin_policy(), "distance": DISTANCE_POLICY}

# What the contract's text says about each policy, written out independently of the
# policy module: caps, and the full fare of an entry (the maximum on a distance route).
CAPS = {"builtin": {"regular": 10000, "student": 5000},
        "distance": {"regular": 20000, "student": 8000}}
FLAT = {"regular": (2000, 5000), "student": (1000, 2500), "senior": (0, 0)}  # (early, day)
KRL_BASE, KRL_MAX, BASE_KM, STEP_KM, STEP = 3000, 13000, 25, 10, 1000

CATEGORIES = st.sampled_from(["regular", "student", "senior"])
VEHICLE_ROUTE = {"BUS-1": "R1", "BUS-2": "R2", "KRL-1": "KRL-BOGOR", "KRL-2": "KRL-BOGOR"}
# Gaps between consecutive taps (ms): boundaries of the repeat and transfer windows, and
# anything up to three hours.
GAPS = st.one_of(
    st.sampled_from([0, 1, 60_000, 119_999, 120_000, 120_001, 121_000,
                     7_199_999, 7_200_000, 7_200_001]),
    st.integers(0, 3 * 3_600_000),
)
# Latitudes along the meridian 106.8 E: 0, ~24.9, ~25.1, ~40 and ~150 km from -6.2,
# or anywhere in between.
LATS = st.one_of(
    st.sampled_from([-6_200_000, -6_425_000, -6_427_000, -6_561_700, -7_556_359]),
    st.integers(-7_600_000, -6_200_000),
)


def local_minute(ts: int) -> int:
    t = datetime.fromtimestamp(ts // 1000, WIB)
    return t.hour * 60 + t.minute


def is_distance(name: str, tap: PricedTap) -> bool:
    return name == "distance" and tap.route_id == "KRL-BOGOR"


def full_fare(name: str, tap: PricedTap, category: str) -> int:
    """An entry's full fare before any exit: the rule's amount, or the distance maximum."""
    if is_distance(name, tap):
        return KRL_MAX
    early = 5 * 60 <= local_minute(tap.ts) < 7 * 60
    return FLAT[category][0 if early else 1]


@st.composite
def days(draw: st.DrawFn, max_taps: int = 12) -> list[PricedTap]:
    """One card's accepted taps in one service day, in chronological order."""
    n = draw(st.integers(0, max_taps))
    # anywhere in the day, or often around the 05:00-07:00 early fare (04:30-07:30)
    ts = DAY_START + draw(st.one_of(st.integers(0, 86_400_000 - 1),
                                    st.integers(90 * 60_000, 270 * 60_000)))
    seqs: dict[str, int] = {}
    taps = []
    for i in range(n):
        if i:
            ts = min(ts + draw(GAPS), DAY_END - 1)
        vehicle = draw(st.sampled_from(sorted(VEHICLE_ROUTE)))
        device = f"{vehicle}-{draw(st.sampled_from('AB'))}"
        seqs[device] = seqs.get(device, draw(st.integers(0, 1000))) + draw(st.integers(1, 3))
        taps.append(PricedTap(
            tap_id=f"{device}:{seqs[device]}", device_id=device, seq=seqs[device], ts=ts,
            vehicle_id=vehicle, route_id=VEHICLE_ROUTE[vehicle],
            kind=draw(st.sampled_from(["entry", "entry", "exit"])),
            lat_e6=draw(LATS), lon_e6=106_800_000))
    return taps


def in_order(taps: list[PricedTap]) -> list[PricedTap]:
    return sorted({t.tap_id: t for t in taps}.values(), key=lambda t: (t.ts, t.device_id, t.seq))


def amounts(day: DayPrice) -> dict[str, int]:
    return {tap_id: c.amount for tap_id, c in day.charges.items()}


def last_real_entry(day: DayPrice, taps: list[PricedTap]) -> PricedTap | None:
    """The latest (in tap order) entry that was priced as an entry, not a repeat."""
    real = [t for t in in_order(taps) if day.charges[t.tap_id].role in ("new_journey", "transfer")]
    return real[-1] if real else None


policies = pytest.mark.parametrize("name", sorted(POLICIES))


# -- the contract, read a second time: a reference model -------------------------------


def reference(name: str, category: str, taps: list[PricedTap]) -> dict[str, int]:
    """Rules 1-5 of section 5 as plain text-following code, for comparison."""
    ordered = in_order(taps)
    # 1. repeats, against the previous non-repeat entry
    repeats: set[str] = set()
    previous = None
    for t in ordered:
        if t.kind != "entry":
            continue
        if previous and previous.vehicle_id == t.vehicle_id and t.ts - previous.ts <= 120_000:
            repeats.add(t.tap_id)
        else:
            previous = t

    # 2. and 5. full fares; a distance entry looks ahead for its exit
    def leg_fare(i: int) -> int:
        entry = ordered[i]
        if not is_distance(name, entry):
            return full_fare(name, entry, category)
        for later in ordered[i + 1:]:
            if later.kind == "entry" and later.tap_id not in repeats:
                break  # the card's next entry: too late for an exit
            if later.kind == "exit" and later.vehicle_id == entry.vehicle_id:
                km = float(geodesic((entry.lat_e6 / 1e6, entry.lon_e6 / 1e6),
                                    (later.lat_e6 / 1e6, later.lon_e6 / 1e6)).km)
                return min(KRL_MAX, KRL_BASE + STEP * math.ceil(max(0, km - BASE_KM) / STEP_KM))
        return KRL_MAX

    # 3. and 4. journeys, transfers, cap
    cap = CAPS[name].get(category)
    out: dict[str, int] = {}
    start: int | None = None
    transfers = highest = total = 0
    for i, t in enumerate(ordered):
        if t.kind != "entry" or t.tap_id in repeats:
            out[t.tap_id] = 0
            continue
        full = leg_fare(i)
        if start is not None and t.ts - start <= 120 * 60_000 and transfers < 2:
            transfers += 1
            charge = max(0, full - highest)
            highest = max(highest, full)
        else:
            start, transfers, highest, charge = t.ts, 0, full, full
        if cap is not None:
            charge = min(charge, max(0, cap - total))
        total += charge
        out[t.tap_id] = charge
    return out


@policies
@PROPS
@given(taps=days(), category=CATEGORIES)
def test_engine_agrees_with_a_reference_reading_of_the_contract(
        name: str, taps: list[PricedTap], category: str) -> None:
    assert amounts(price_day(POLICIES[name], category, taps)) == reference(name, category, taps)


# -- order and duplicates --------------------------------------------------------------


@policies
@PROPS
@given(taps=days(), category=CATEGORIES, data=st.data())
def test_any_permutation_and_duplication_gives_the_same_charges(
        name: str, taps: list[PricedTap], category: str, data: st.DataObject) -> None:
    policy = POLICIES[name]
    expected = price_day(policy, category, taps)
    redelivered = [t._replace() for t in data.draw(st.lists(st.sampled_from(taps), max_size=6))] \
        if taps else []
    arrival = data.draw(st.permutations(taps + redelivered))
    got = price_day(policy, category, iter(arrival))
    assert got.charges == expected.charges


# -- bounds ------------------------------------------------------------------------------


@policies
@PROPS
@given(taps=days(), category=CATEGORIES)
def test_every_tap_is_charged_once_never_negative_and_exits_cost_nothing(
        name: str, taps: list[PricedTap], category: str) -> None:
    day = price_day(POLICIES[name], category, taps)
    assert set(day.charges) == {t.tap_id for t in taps}
    for t in taps:
        charge = day.charges[t.tap_id]
        assert charge.amount >= 0
        if t.kind == "exit":
            assert charge.amount == 0


@policies
@PROPS
@given(taps=days(max_taps=16), category=CATEGORIES)
def test_day_total_never_exceeds_the_daily_cap(
        name: str, taps: list[PricedTap], category: str) -> None:
    day = price_day(POLICIES[name], category, taps)
    cap = CAPS[name].get(category)
    if cap is not None:
        assert day.total <= cap
    # and the running total of the day, in tap order, never passes it either
    running = 0
    for t in in_order(taps):
        running += day.amount(t.tap_id)
        assert cap is None or running <= cap


@policies
@PROPS
@given(taps=days(), category=CATEGORIES)
def test_entries_cost_at_most_their_full_fare_and_the_day_at_most_their_sum(
        name: str, taps: list[PricedTap], category: str) -> None:
    day = price_day(POLICIES[name], category, taps)
    ceiling = 0
    for t in taps:
        if t.kind != "entry":
            continue
        full = full_fare(name, t, category)
        ceiling += full
        assert day.amount(t.tap_id) <= full
        charge = day.charges[t.tap_id]
        if charge.role in ("new_journey", "transfer"):
            assert charge.full_fare <= full
            if not is_distance(name, t):
                assert charge.full_fare == full
            else:
                assert charge.full_fare >= KRL_BASE
    assert day.total <= ceiling


# -- the past does not change, except through a distance exit ------------------------------
#
# Asserted: pricing a day with one more tap, later (in tap order) than all the others,
# - when the new tap is an entry, leaves every earlier tap's Charge exactly as it was;
# - when it is an exit, changes at most one earlier Charge: that of the card's last
#   non-repeat entry, which must then be on a distance route on the exit's vehicle, and
#   whose amount can only go down (the exit replaces the maximum by the distance fare).
# With the built-in policy (no distance rule) nothing earlier ever changes.


@policies
@PROPS
@given(taps=days(), category=CATEGORIES, data=st.data())
def test_a_later_tap_only_changes_the_past_through_a_distance_exit(
        name: str, taps: list[PricedTap], category: str, data: st.DataObject) -> None:
    policy = POLICIES[name]
    last_ts = max((t.ts for t in taps), default=DAY_START - 1)
    if last_ts >= DAY_END - 1:
        return  # no room left in the day for a later tap
    vehicle = data.draw(st.sampled_from(sorted(VEHICLE_ROUTE)))
    extra = PricedTap(
        tap_id="LATE-A:1", device_id="LATE-A", seq=1,
        ts=data.draw(st.integers(last_ts + 1, min(DAY_END - 1, last_ts + 3 * 3_600_000))),
        vehicle_id=vehicle, route_id=VEHICLE_ROUTE[vehicle],
        kind=data.draw(st.sampled_from(["entry", "exit"])),
        lat_e6=data.draw(LATS), lon_e6=106_800_000)
    before = price_day(policy, category, taps)
    after = price_day(policy, category, taps + [extra])
    changed = {t.tap_id for t in taps if after.charges[t.tap_id] != before.charges[t.tap_id]}
    if extra.kind == "entry" or name == "builtin":
        assert changed == set()
        return
    if changed:
        closed = last_real_entry(before, taps)
        assert closed is not None and changed == {closed.tap_id}
        assert is_distance(name, closed) and closed.vehicle_id == extra.vehicle_id
        old, new = before.charges[closed.tap_id], after.charges[closed.tap_id]
        assert new.amount <= old.amount and new.full_fare < old.full_fare == KRL_MAX
        assert new.role == old.role


@policies
@PROPS
@given(taps=days(), category=CATEGORIES, data=st.data())
def test_a_prefix_of_the_day_is_priced_as_in_the_whole_day(
        name: str, taps: list[PricedTap], category: str, data: st.DataObject) -> None:
    """The same property for any cut of the day (in tap order): every tap of the prefix
    keeps its charge, except the prefix's last non-repeat entry when a later exit closes
    its distance leg, which then costs no more than in the prefix alone."""
    policy = POLICIES[name]
    ordered = in_order(taps)
    prefix = ordered[:data.draw(st.integers(0, len(ordered)))]
    part = price_day(policy, category, prefix)
    whole = price_day(policy, category, taps)
    changed = {t.tap_id for t in prefix if part.charges[t.tap_id] != whole.charges[t.tap_id]}
    if not changed:
        return
    last = last_real_entry(part, prefix)
    assert last is not None and changed == {last.tap_id} and is_distance(name, last)
    assert whole.amount(last.tap_id) <= part.amount(last.tap_id)


# -- the gateway's ledger: corrections converge --------------------------------------------


def replay(policy: FarePolicy, category: str, arrival: list[PricedTap]
           ) -> tuple[dict[str, int], list[list[tuple[str, int]]]]:
    """Post each arrival the way the gateway does: price the card's day so far and post,
    for every tap, the difference between its new price and what the ledger holds for it.
    Returns the ledger (sum per tap) and the entries posted at each arrival."""
    ledger: dict[str, int] = {}
    arrived: list[PricedTap] = []
    steps: list[list[tuple[str, int]]] = []
    for tap in arrival:
        arrived.append(tap)
        day = price_day(policy, category, arrived)
        posted = []
        for tap_id, charge in sorted(day.charges.items()):
            delta = charge.amount - ledger.get(tap_id, 0)
            if delta:
                ledger[tap_id] = ledger.get(tap_id, 0) + delta
                posted.append((tap_id, delta))
        steps.append(posted)
    return ledger, steps


@policies
@PROPS
@given(taps=days(), category=CATEGORIES, data=st.data())
def test_incremental_posting_in_any_arrival_order_ends_at_the_days_price(
        name: str, taps: list[PricedTap], category: str, data: st.DataObject) -> None:
    policy = POLICIES[name]
    redelivered = [t._replace() for t in data.draw(st.lists(st.sampled_from(taps), max_size=4))] \
        if taps else []
    arrival = data.draw(st.permutations(taps + redelivered))
    ledger, steps = replay(policy, category, arrival)

    final = price_day(policy, category, taps)
    assert {t.tap_id: ledger.get(t.tap_id, 0) for t in taps} == amounts(final)
    assert set(ledger) <= {t.tap_id for t in taps}
    assert sum(delta for posted in steps for _, delta in posted) == final.total
    seen: set[str] = set()
    for tap, posted in zip(arrival, steps, strict=True):
        if tap.tap_id in seen:
            assert posted == []  # a redelivered tap posts nothing
        seen.add(tap.tap_id)
        assert {tap_id for tap_id, _ in posted} <= seen  # nothing for taps not yet arrived


@policies
@PROPS
@given(taps=days(), category=CATEGORIES)
def test_in_order_arrival_corrects_only_through_exits_and_only_downwards(
        name: str, taps: list[PricedTap], category: str) -> None:
    """Taps that arrive in tap order post their own charge and nothing else; an exit
    posts at most one correction, negative, on its entry (its Receipt's fare)."""
    arrival = in_order(taps)
    ledger, steps = replay(POLICIES[name], category, arrival)
    for tap, posted in zip(arrival, steps, strict=True):
        if tap.kind == "entry":
            assert [tap_id for tap_id, _ in posted] in ([], [tap.tap_id])
            assert all(delta > 0 for _, delta in posted)
        else:
            assert len(posted) <= 1
            assert all(tap_id != tap.tap_id and delta < 0 for tap_id, delta in posted)
            assert name == "distance" or posted == []
