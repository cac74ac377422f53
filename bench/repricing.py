"""Cost of re-pricing per new tap, beside the per-tap budget.

    python bench/repricing.py [--json FILE]

Two measures, taken in the same run:

- A whole service day priced by `price_day`, for days of 1, 20 and 50 taps on flat-fare
  and distance routes: the fare engine's share of every accepted tap, which re-prices
  its card's day (the figures quoted before weekly and monthly caps).
- One more tap on a card with 1, 20 and 100 taps in its month, through the Python the
  gateway runs for a batch (`planning.admit` and `planning.plan`), fed what the SQL unit
  of work would read (the card's loaded days, what the ledger holds for their taps, the
  card's week and month totals). In order, the tap falls on the card's latest day and
  that day alone is loaded. Late, it falls six days back: that day and every later one
  is loaded, and the later days whose starting totals moved are re-priced and corrected.

Each plan is checked against `price_card` over the card's whole month before it is
timed, and the late tap is checked to move the weekly cap of a later day on the cards of
100 taps. Beside the figures: one more tap on a 20-tap day through the same planning
path, the time to parse and verify one signed tap (work every tap costs anyway), and the
100 us a tap may take in all at the goal of 10,000 taps/s on one core. The goal here:
in order, one more tap on a card with 100 taps in its month costs no more than a 20-tap
day re-priced whole by `price_day`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_figures  # noqa: E402
from fare_gateway.fares.engine import CardPrice, PricedTap, price_card, price_day  # noqa: E402
from fare_gateway.fares.policy import FarePolicy, builtin_policy, parse_policy  # noqa: E402
from fare_gateway.taps import planning  # noqa: E402
from fare_gateway.taps.periods import MONTH, WEEK, CardPeriods, PeriodKey, period_keys  # noqa: E402
from fare_gateway.taps.planning import Arrival, CardDay, Plan  # noqa: E402
from ledger.domain import CardState, TapAmount  # noqa: E402
from transit.wire import Tap  # noqa: E402

T0 = 1764313202123
BUDGET_US = 100.0


def distance_policy(distance_extra: str, caps: str) -> FarePolicy:
    """A KRL route priced by distance and every other route flat."""
    return parse_policy(tomllib.loads(f"""
categories = ["regular"]
[[fares]]
routes = ["KRL"]
amount = {{ regular = 3000 }}
max = {{ regular = 13000 }}
distance = {{ base_km = 25, step_km = 10, step = 1000{distance_extra} }}
[[fares]]
routes = ["*"]
amount = {{ regular = 5000 }}
[transfers]
window_minutes = 120
max_transfers = 2
[caps]
{caps}
"""))


DISTANCE = distance_policy("", "daily = { regular = 50000 }")
# The monthly cap sits above what 25 days of riding reach, so that the late tap below
# moves the weekly cap and nothing else.
CARD_DISTANCE = distance_policy(", infer_exit_minutes = 120",
                                "daily = { regular = 15000 }\nweekly = { regular = 50000 }\n"
                                "monthly = { regular = 200000 }")


def day(n: int, distance: bool) -> list[PricedTap]:
    """A service day of `n` taps 17 minutes apart: flat entries, or entry/exit pairs."""
    taps = []
    for i in range(n):
        ts = T0 + i * 17 * 60_000
        kind = "exit" if distance and i % 2 else "entry"
        taps.append(PricedTap(f"D:{i}", "D", i, ts, f"V{i // 2 if distance else i}",
                              "KRL" if distance else "R1", kind,
                              -6_200_000 - (i % 2) * 300_000, 106_800_000))
    return taps


def best_us(work: Mapping[str, Callable[[], object]], rounds: int = 9) -> dict[str, float]:
    """Each piece of work's best time per call, in us, over rounds that run every piece in
    turn: on a shared machine others' load then weighs on all of them alike. The time is
    the process's own CPU time; the wall clock would also count the time others held the
    core."""
    repeat = {}
    for name, fn in work.items():  # about 20 ms of each in a round
        calls, t0 = 0, time.process_time()
        while time.process_time() - t0 < 0.005:
            fn()
            calls += 1
        repeat[name] = 4 * calls
    best = dict.fromkeys(work, float("inf"))
    for _ in range(rounds):
        for name, fn in work.items():
            t0 = time.process_time()
            for _ in range(repeat[name]):
                fn()
            best[name] = min(best[name], (time.process_time() - t0) / repeat[name])
    return {name: t * 1e6 for name, t in best.items()}


# One card's month of riding, January 2026 in Jakarta. Every card's latest day is Sunday
# the 25th, so the late tap, six days back, falls on the Monday of the same week.
CARD = "04B3C4D5E6F70001"
ZONE = ZoneInfo("Asia/Jakarta")
LATEST = date(2026, 1, 25)
LATE_DAY = LATEST - timedelta(days=6)
A = (-6_200_000, 106_800_000)
B = (-6_500_000, 106_800_000)  # 33 km south of A: a KRL leg a step past its base 25 km
OPERATORS = {"R1": "SBY", "R2": "SBY", "KRL": "KAI"}

Slot = tuple[str, str, str, str, tuple[int, int]]  # local time, route, vehicle, kind, where
RIDES: dict[str, dict[int, tuple[Slot, ...]]] = {
    # Flat fares: an evening ride; or to work and back, each way with a transfer, the
    # morning at the early fare.
    "flat": {1: (("17:30", "R2", "V3", "entry", B),),
             4: (("06:30", "R1", "V1", "entry", A), ("06:50", "R2", "V2", "entry", B),
                 ("17:30", "R2", "V3", "entry", B), ("17:50", "R1", "V4", "entry", A))},
    # Distance: a morning train with no tap-out (the maximum stands); or a train each way,
    # tapped out.
    "distance": {1: (("07:30", "KRL", "V1", "entry", A),),
                 4: (("07:30", "KRL", "V1", "entry", A), ("08:10", "KRL", "V1", "exit", B),
                     ("17:30", "KRL", "V3", "entry", B), ("18:10", "KRL", "V3", "exit", A))},
}
# The new taps: a bus boarded after the morning ride (late: it reaches the gateway six
# days on; on the distance card of one ride a day it stands in for the train's missing
# tap-out), and a late-evening bus on the latest day (in order).
LATE: Slot = ("08:20", "R1", "V5", "entry", B)
IN_ORDER: Slot = ("21:00", "R1", "V6", "entry", A)
MONTHS = {1: (1, 1), 20: (20, 1), 100: (25, 4)}  # taps in the month: (days, taps a day)


def ride(service_date: date, slot: Slot, seq: int) -> PricedTap:
    """One tap of the card at a local time of a service day."""
    hhmm, route, vehicle, kind, (lat, lon) = slot
    ts = int(datetime.combine(service_date, clock.fromisoformat(hhmm), ZONE).timestamp()
             * 1000)
    device = f"D{vehicle[1:]}"
    return PricedTap(f"{device}:{seq}", device, seq, ts, vehicle, route, kind, lat, lon)


def month_of_taps(rides: Mapping[int, tuple[Slot, ...]], n: int) -> list[PricedTap]:
    """A card's `n` taps of the month, spread over its days up to the latest."""
    days, a_day = MONTHS[n]
    taps: list[PricedTap] = []
    for k in range(days):
        for slot in rides[a_day]:
            taps.append(ride(LATEST - timedelta(days=days - 1 - k), slot, len(taps) + 1))
    return taps


def as_tap(t: PricedTap) -> Tap:
    """The tap as the gateway receives it, verified (its digest already worked out)."""
    tap = Tap(device_id=t.device_id, seq=t.seq, vehicle_id=t.vehicle_id,
              route_id=t.route_id, card=CARD, kind=t.kind, accepted=True, ts=t.ts,
              lat_e6=t.lat_e6, lon_e6=t.lon_e6)
    assert tap.digest  # the gateway works it out for the tap's inbox row, before `plan`
    return tap


@dataclass(frozen=True)
class Batch:
    """A batch of one new tap, and what the SQL unit of work hands the planner for it."""

    policy: FarePolicy
    arrivals: tuple[Arrival, ...]
    cards: Mapping[str, CardState]
    history: Mapping[CardDay, Mapping[str, PricedTap]]
    amounts: Mapping[str, TapAmount]
    periods: Mapping[PeriodKey, int]

    def run(self) -> Plan:
        """What the gateway does in Python for the batch once the inbox took the tap."""
        admission = planning.admit(self.arrivals, self.cards, self.policy,
                                   LATEST.isoformat())
        return planning.plan(admission, {self.arrivals[0].tap.tap_id}, {}, self.cards,
                             self.history, self.amounts, OPERATORS, self.periods,
                             self.policy)


def loaded(policy: FarePolicy, taps: list[PricedTap], tap: Tap, before: CardPrice
           ) -> Batch:
    """The batch as the gateway builds it: the days from the new tap's on, what the
    ledger holds for their taps (what the pure function charged them) and the card's
    kept week and month totals."""
    cards = {CARD: CardState(CARD, "regular", "active", 10_000_000, 1)}
    arrivals = (Arrival(0, tap),)
    admission = planning.admit(arrivals, cards, policy, LATEST.isoformat())
    new = admission.to_price({tap.tap_id})
    first = planning.first_days(new)
    history: dict[CardDay, dict[str, PricedTap]] = {}
    for t in taps:
        service_date = policy.service_date(t.ts).isoformat()
        if service_date >= first[CARD]:
            history.setdefault((CARD, service_date), {})[t.tap_id] = t
    days = planning.days_in_play(new, history)
    charges = before.charges
    # Only an entry has a fare entry in the ledger; an exit changes its entry's.
    amounts = {t.tap_id: TapAmount(charges[t.tap_id].amount, OPERATORS[t.route_id])
               for key in days for t in history.get(key, {}).values()
               if t.kind == "entry" and charges[t.tap_id].role != "repeat"}
    kept = kept_totals(before)
    periods = {k: kept[k] for k in period_keys(days) if k in kept}
    return Batch(policy, arrivals, cards, history, amounts, periods)


def kept_totals(price: CardPrice) -> dict[PeriodKey, int]:
    """The card's week and month totals as `fare_periods` keeps them."""
    return {**{(CARD, WEEK, d.isoformat()): v for d, v in price.weeks.items()},
            **{(CARD, MONTH, d.isoformat()): v for d, v in price.months.items()}}


@dataclass(frozen=True)
class Case:
    """One more tap on a card: its batch, checked, and what its plan does."""

    batch: Batch
    days_repriced: int
    later_corrections: int
    weekly_moved: bool
    reprice: Callable[[], object]  # the re-pricing alone: the card's book, the tap added


def prepare(policy: FarePolicy, taps: list[PricedTap], new: PricedTap) -> Case:
    """The batch of one more tap, once its plan is found to agree with the pure function
    over the card's whole month."""
    when = policy.service_date(new.ts)
    before = price_card(policy, "regular", taps)
    batch = loaded(policy, taps, as_tap(new), before)
    result = batch.run()
    after = price_card(policy, "regular", [*taps, new])
    held = {t.tap_id: before.amount(t.tap_id) for t in taps}
    for draft in result.drafts:
        assert draft.tap_id is not None
        held[draft.tap_id] = held.get(draft.tap_id, 0) + draft.amount
    wrong = [t for t in [*taps, new] if held.get(t.tap_id, 0) != after.amount(t.tap_id)]
    if wrong:
        raise SystemExit(f"the plan disagrees with price_card on {len(wrong)} taps")
    kept = kept_totals(after)
    if any(kept[k] != v for k, v in result.periods.items()):
        raise SystemExit("the plan's week and month totals disagree with price_card")
    days = {d: day_taps for (_, d), day_taps in batch.history.items()}
    nets = {t: a.net for t, a in batch.amounts.items()}
    kept_now = {(kind, start): v for (_, kind, start), v in batch.periods.items()}

    def reprice() -> list[object]:
        """What replaced `price_day` of the whole day: the card's book, the tap added."""
        book = CardPeriods(policy, "regular", days, nets, kept_now)
        return list(book.add(when.isoformat(), new))

    days_repriced = len(reprice())
    corrections = sum(1 for d in result.drafts
                      if d.kind == "correction" and (d.service_date or "") > when.isoformat())
    weekly = any(policy.service_date(t.ts) > when
                 and before.amount(t.tap_id) != after.amount(t.tap_id)
                 and "weekly" in (before.charges[t.tap_id].cap, after.charges[t.tap_id].cap)
                 for t in taps)
    return Case(batch, days_repriced, corrections, weekly, reprice)


CARD_POLICIES = (
    ("built-in policy, caps 10,000 a day, 50,000 a week, 180,000 a month", "flat",
     builtin_policy()),
    ("distance route with inferred exits, caps 15,000 / 50,000 / 200,000", "distance",
     CARD_DISTANCE))


def card_cases() -> dict[str, Case]:
    """Every card case by figure name: for each policy, one more tap on a day of 20 (the
    old worst case, through the same path), then on cards of 1, 20 and 100 taps in their
    month, in order and late."""
    cases = {}
    for _, key, policy in CARD_POLICIES:
        whole = day(21, key == "distance")
        cases[f"card_{key}_20_in_one_day"] = prepare(policy, whole[:20], whole[20])
        for n in MONTHS:
            taps = month_of_taps(RIDES[key], n)
            cases[f"card_{key}_{n}_in_order"] = prepare(policy, taps,
                                                        ride(LATEST, IN_ORDER, 10_000))
            late = cases[f"card_{key}_{n}_late"] = prepare(policy, taps,
                                                           ride(LATE_DAY, LATE, 10_000))
            if n == 100 and not (late.later_corrections and late.weekly_moved):
                raise SystemExit(f"{key}: the late tap no longer moves the weekly cap of "
                                 "later days; the figure would not include corrections")
    return cases


def print_cards(cases: Mapping[str, Case], us: Mapping[str, float],
                figures: dict[str, Any]) -> None:
    """The card figures, one line per card."""
    print("one more tap on a card, as the gateway plans it (planning.admit + planning.plan,"
          " no database):")
    for label, key, _ in CARD_POLICIES:
        print(f"  {label}:")
        one_day = figures[f"card_{key}_20_in_one_day_us"] = round(
            us[f"card_{key}_20_in_one_day"], 2)
        print(f"    {'20 taps in one day (the old worst case)':<41}: in order "
              f"{one_day:6.1f} us ({one_day / BUDGET_US:4.0%} of the budget)")
        for n, (days, a_day) in MONTHS.items():
            name = f"card_{key}_{n}"
            late = cases[f"{name}_late"]
            in_order_us = figures[f"{name}_in_order_us"] = round(us[f"{name}_in_order"], 2)
            late_us = figures[f"{name}_late_us"] = round(us[f"{name}_late"], 2)
            figures[f"{name}_late_days_repriced"] = late.days_repriced
            figures[f"{name}_late_later_corrections"] = late.later_corrections
            month = (f"{n:>3} tap{'s' if n > 1 else ' '} in its month "
                     f"({a_day} a day, {days:>2} day{'s' if days > 1 else ' '})")
            print(f"    {month:<41}: in order {in_order_us:6.1f} us "
                  f"({in_order_us / BUDGET_US:4.0%} of the budget); late {late_us:6.1f} us "
                  f"({late_us / BUDGET_US:4.0%}), {late.days_repriced} days re-priced, "
                  f"{late.later_corrections} later tap"
                  f"{'' if late.later_corrections == 1 else 's'} corrected"
                  f"{', weekly cap moved' if late.weekly_moved else ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args()
    load = round(os.getloadavg()[0], 2)
    secret = b"k" * 32
    payload = Tap(device_id="D", seq=1, vehicle_id="V", route_id="R1", card="04A1B2C3D4",
                  kind="entry", accepted=True, ts=T0, lat_e6=0, lon_e6=0).signed(secret).encode()
    days = (("flat fares", "flat", builtin_policy(), False),
            ("distance route, entry/exit pairs", "distance", DISTANCE, True))
    work: dict[str, Callable[[], object]] = {
        "parse_verify": lambda: Tap.parse(payload).verify(secret)}
    for _, key, policy, distance in days:
        for n in (1, 20, 50):
            work[f"{key}_{n}_taps"] = partial(price_day, policy, "regular", day(n, distance))
    cases = card_cases()
    work.update((name, case.batch.run) for name, case in cases.items())
    work.update((f"{name}_reprice", case.reprice) for name, case in cases.items())
    us = best_us(work)
    floor = us["parse_verify"]
    print(f"parse + verify one signed tap: {floor:.1f} us (work every tap costs)")
    print(f"budget per tap at 10,000 taps/s on one core: {BUDGET_US:.1f} us")
    figures: dict[str, Any] = {"parse_verify_us": round(floor, 2), "budget_us": BUDGET_US}
    for label, key, _, _ in days:
        for n in (1, 20, 50):
            t = figures[f"{key}_{n}_taps_us"] = round(us[f"{key}_{n}_taps"], 2)
            print(f"re-price a day of {n:>2} taps ({label}): {t:8.1f} us per new tap "
                  f"= {t / floor:4.1f}x parse+verify, {t / BUDGET_US:4.0%} of the budget")
    print_cards(cases, us, figures)
    for key in ("flat", "distance"):
        whole = figures[f"{key}_20_taps_us"]
        alone = figures[f"card_{key}_100_in_order_reprice_us"] = round(
            us[f"card_{key}_100_in_order_reprice"], 2)
        late_alone = figures[f"card_{key}_100_late_reprice_us"] = round(
            us[f"card_{key}_100_late_reprice"], 2)
        card = figures[f"card_{key}_100_in_order_us"]
        old_path = figures[f"card_{key}_20_in_one_day_us"]
        met = alone <= whole and card <= old_path
        figures[f"goal_{key}_100_in_order_met"] = met
        print(f"goal ({key}): in order, one more tap on a card with 100 taps in its month "
              f"costs no more than one on a 20-tap day did: re-pricing alone "
              f"{alone:.1f} us (late {late_alone:.1f}) against price_day of the whole day "
              f"{whole:.1f} us; the whole plan {card:.1f} us against {old_path:.1f} us "
              f"through the same path: {'met' if met else 'NOT met'}")
    figures["load_average_at_start"] = load
    print(f"load average at the start (1 min): {load:.2f} on {os.cpu_count()} cores")
    write_figures(args.json, "repricing", figures)


if __name__ == "__main__":
    main()
