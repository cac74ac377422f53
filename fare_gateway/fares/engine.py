"""Pricing a card's taps: a pure function of its accepted taps (contract section 5).

`price_day` takes every accepted tap of one card in one service day, in any order, and
what the card was charged before that day in the day's week and month (`Earlier`), and
returns what each tap costs and why (which rule, transfer, cap, repeat, distance leg or
inferred exit decided it: what a rider's statement says of the tap). `price_card`
prices any number of days, in order, each from the totals of the days before it.
Arrival order, duplicates and delays cannot change the result: the taps are sorted by
(`ts`, `device_id`, `seq`) before anything else happens.

Everything but the caps is decided within the service day; the caps carry a day's
charges into its week and month. So a day's charges depend only on its own taps and on
two figures from before it: the gateway keeps those per card (`fare_gateway/taps/
periods.py`) instead of re-pricing a month from its first tap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property, lru_cache
from typing import NamedTuple, Protocol

from geopy.distance import geodesic

from fare_gateway.fares.policy import FarePolicy, FareRule, month_of, week_of


class PricedTap(NamedTuple):
    """The facts of one accepted tap that its price can depend on.

    A named tuple, not a frozen dataclass: the tap path makes one for every tap of the
    card-days a batch re-prices, and a tuple is built in a third of the time.
    """

    tap_id: str
    device_id: str
    seq: int
    ts: int
    vehicle_id: str
    route_id: str
    kind: str  # entry | exit
    lat_e6: int
    lon_e6: int

    @property
    def order(self) -> tuple[int, str, int]:
        return (self.ts, self.device_id, self.seq)


class TapFacts(Protocol):
    """What `price_day` reads of a tap: a `PricedTap`, or any record of one that carries
    the same names (the statement prices the inbox rows it has read, as they are)."""

    @property
    def tap_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def ts(self) -> int: ...
    @property
    def vehicle_id(self) -> str: ...
    @property
    def route_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def lat_e6(self) -> int: ...
    @property
    def lon_e6(self) -> int: ...
    @property
    def order(self) -> tuple[int, str, int]: ...


class Charge(NamedTuple):
    """What one tap costs, and why: each decision of the engine that a sentence can name.

    The first five fields are the charge; the others say what decided it. Two charges
    are equal when the first five are (a distance leg closed at its maximum costs what
    it did before its exit, though its reason has changed). A named tuple, not a frozen
    dataclass: `price_day` builds one per tap of the day at every new tap, and a tuple of
    these fields (fourteen then) was built in 0.5 µs, the dataclass of the first five alone in
    0.95 and of all fourteen in 2.5.
    """

    tap_id: str
    amount: int
    full_fare: int = 0  # an entry's fare before transfer and cap (distance: its leg's)
    role: str = "exit"  # new_journey | transfer | repeat | exit
    capped: bool = False
    capped_by: int = 0  # what the cap took off the charge
    paid_before: int = 0  # a transfer: the highest full fare already paid in its journey
    pricing: str = ""  # an entry: flat | distance | inferred_exit | max_no_exit; "" otherwise
    rule: int | None = None  # the index in `policy.rules` of the rule that priced it
    window: tuple[int, int] | None = None  # that rule's local [start, end) minutes, if any
    routes: tuple[str, ...] = ()  # that rule's routes ("*": any)
    km: float | None = None  # a distance leg's length, on its entry and on its exit
    related: str | None = None  # repeat: the entry it repeats; exit: the entry whose
    #                             leg it ended; distance entry: the exit that ended it, or
    #                             the next entry that stood in for it (inferred_exit)
    since_ms: int = 0  # a repeat: how long after the entry it repeats
    cap: str = ""  # the cap that lowered the charge: daily | weekly | monthly

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charge) and self[:5] == other[:5]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:5])


@dataclass
class _Journey:
    start_ts: int
    transfers: int = 0
    highest_full: int = 0


class Earlier(NamedTuple):
    """What a card's taps before a service day were charged in that day's week (Monday
    to Sunday) and calendar month: where the day's weekly and monthly caps start from."""

    week: int = 0
    month: int = 0


NOTHING_EARLIER = Earlier()


@dataclass
class DayPrice:
    """The charges of a day by tap id; `total` is what the card pays for the day."""

    charges: dict[str, Charge] = field(default_factory=dict)
    earlier: Earlier = NOTHING_EARLIER

    @property
    def total(self) -> int:
        return sum(c.amount for c in self.charges.values())

    def amount(self, tap_id: str) -> int:
        charge = self.charges.get(tap_id)
        return charge.amount if charge else 0


def has_fix(lat_e6: int, lon_e6: int) -> bool:
    """A tap made without a fix carries 0, 0 (in the sea off Africa: no bus there)."""
    return lat_e6 != 0 or lon_e6 != 0


def has_position(tap: TapFacts) -> bool:
    """Whether the tap carries a position (`has_fix`)."""
    return has_fix(tap.lat_e6, tap.lon_e6)


def distance_km(a: TapFacts, b: TapFacts) -> float:
    """Geodesic (WGS-84) distance between two taps' positions."""
    return _geodesic_km(a.lat_e6, a.lon_e6, b.lat_e6, b.lon_e6)


@lru_cache(maxsize=8192)
def _geodesic_km(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    # Cached: re-pricing a day measures the same legs again at every new tap (a day
    # has a few dozen legs at most; the bound keeps a long run's memory flat).
    return float(geodesic((lat1_e6 / 1e6, lon1_e6 / 1e6), (lat2_e6 / 1e6, lon2_e6 / 1e6)).km)


def distance_fare(policy: FarePolicy, rule: FareRule, category: str, km: float) -> int:
    """`min(max, amount + step * ceil(max(0, km - base_km) / step_km))`."""
    assert rule.distance is not None and rule.max is not None
    d = rule.distance
    steps = math.ceil(max(0.0, km - d.base_km) / d.step_km)
    return min(policy.amount(rule.max, category),
               policy.amount(rule.amount, category) + d.step * steps)


def _inferred_exit(open_leg: tuple[TapFacts, FareRule] | None, tap: TapFacts) -> bool:
    """Rule 5: may this entry stand in for the tap-out its card's open leg lacks?"""
    if open_leg is None:
        return False
    entry, rule = open_leg
    minutes = rule.distance.infer_exit_minutes if rule.distance is not None else None
    return (minutes is not None and tap.vehicle_id != entry.vehicle_id
            and tap.ts - entry.ts <= minutes * 60_000
            and has_position(entry) and has_position(tap))


def price_day(policy: FarePolicy, category: str, taps: Iterable[TapFacts],
              earlier: Earlier = NOTHING_EARLIER) -> DayPrice:
    """The charge of every tap in a card's service day (accepted taps only), and why.

    `earlier` is what the card's taps before this day were charged in its week and its
    month, from which the weekly and monthly caps count (`price_card` works it out).
    """
    ordered = sorted({t.tap_id: t for t in taps}.values(), key=lambda t: t.order)
    repeat_ms = policy.repeat_tap_seconds * 1000
    window_ms = policy.transfer_window_minutes * 60_000

    # Pass 1: which entries are repeats, and each real entry's full fare (a distance
    # leg's depends on its exit, or on the entry that stands in for it, both later).
    roles: dict[str, str] = {}
    full: dict[str, int] = {}
    rules: dict[str, FareRule] = {}  # real entry -> the rule that priced it
    repeated: dict[str, TapFacts] = {}  # repeat -> the entry it repeats
    legs: dict[str, tuple[str, float]] = {}  # either end of a closed leg -> (other end, km)
    inferred: dict[str, tuple[str, float]] = {}  # entry -> (the next entry, km)
    open_leg: tuple[TapFacts, FareRule] | None = None  # the last entry, on a distance rule
    last_real: TapFacts | None = None
    for tap in ordered:
        if tap.kind == "exit":
            roles[tap.tap_id] = "exit"
            if open_leg is not None and open_leg[0].vehicle_id == tap.vehicle_id:
                entry, leg_rule = open_leg
                open_leg = None
                leg_km = distance_km(entry, tap)
                full[entry.tap_id] = distance_fare(policy, leg_rule, category, leg_km)
                legs[entry.tap_id] = (tap.tap_id, leg_km)
                legs[tap.tap_id] = (entry.tap_id, leg_km)
            continue
        if (last_real is not None and last_real.vehicle_id == tap.vehicle_id
                and tap.ts - last_real.ts <= repeat_ms):
            roles[tap.tap_id] = "repeat"
            repeated[tap.tap_id] = last_real
            continue
        if open_leg is not None and _inferred_exit(open_leg, tap):
            entry, leg_rule = open_leg
            leg_km = distance_km(entry, tap)
            full[entry.tap_id] = distance_fare(policy, leg_rule, category, leg_km)
            inferred[entry.tap_id] = (tap.tap_id, leg_km)
        last_real = tap
        roles[tap.tap_id] = "entry"
        open_leg = None  # an exit only counts before the card's next entry
        rule = policy.rule_for(tap.route_id, tap.ts)
        rules[tap.tap_id] = rule
        if rule.distance is not None and rule.max is not None:
            full[tap.tap_id] = policy.amount(rule.max, category)
            open_leg = (tap, rule)
        else:
            full[tap.tap_id] = policy.amount(rule.amount, category)

    # Pass 2: journeys, transfers and the caps, in event order.
    out = DayPrice(earlier=earlier)
    journey: _Journey | None = None
    day_cap, week_cap, month_cap = policy.caps(category)
    capping = day_cap is not None or week_cap is not None or month_cap is not None
    day_total, week_total, month_total = 0, earlier.week, earlier.month
    named: dict[int, tuple[int, tuple[int, int] | None]] = {}  # id(rule) -> index, window
    for tap in ordered:
        tap_id = tap.tap_id
        role = roles[tap_id]
        if role == "exit":
            end = legs.get(tap_id)
            out.charges[tap_id] = (Charge(tap_id, 0, 0, role) if end is None else
                                   Charge(tap_id, 0, 0, role, km=end[1], related=end[0]))
            continue
        if role == "repeat":
            first = repeated[tap_id]
            out.charges[tap_id] = Charge(tap_id, 0, 0, role, related=first.tap_id,
                                         since_ms=tap.ts - first.ts)
            continue
        fare = full[tap_id]
        paid_before = 0
        if (journey is not None and tap.ts - journey.start_ts <= window_ms
                and journey.transfers < policy.max_transfers):
            journey.transfers += 1
            paid_before = journey.highest_full
            charge = max(0, fare - paid_before)
            journey.highest_full = max(paid_before, fare)
            role = "transfer"
        else:
            journey = _Journey(start_ts=tap.ts, highest_full=fare)
            charge = fare
            role = "new_journey"
        capped_by = 0
        cap = ""
        if capping:
            # The tightest of the three wins; on a tie the shortest period is named (a
            # period already past its cap, after a policy lowered it, leaves nothing).
            allowed = charge
            if day_cap is not None and max(0, day_cap - day_total) < allowed:
                allowed, cap = max(0, day_cap - day_total), "daily"
            if week_cap is not None and max(0, week_cap - week_total) < allowed:
                allowed, cap = max(0, week_cap - week_total), "weekly"
            if month_cap is not None and max(0, month_cap - month_total) < allowed:
                allowed, cap = max(0, month_cap - month_total), "monthly"
            if cap:
                charge, capped_by = allowed, charge - allowed
            day_total += charge
            week_total += charge
            month_total += charge
        rule = rules[tap_id]
        known = named.get(id(rule))
        if known is None:
            index = 0
            while policy.rules[index] is not rule:
                index += 1
            known = named[id(rule)] = (index, None if rule.start_min is None
                                       or rule.end_min is None
                                       else (rule.start_min, rule.end_min))
        index, window = known
        km: float | None = None
        related: str | None = None
        if rule.distance is None:
            pricing = "flat"
        elif (end := legs.get(tap_id)) is not None:
            pricing, km, related = "distance", end[1], end[0]
        elif (stand_in := inferred.get(tap_id)) is not None:
            pricing, km, related = "inferred_exit", stand_in[1], stand_in[0]
        else:
            pricing = "max_no_exit"
        out.charges[tap_id] = Charge(tap_id, charge, fare, role, capped_by > 0, capped_by,
                                     paid_before, pricing, index, window, rule.routes, km,
                                     related, 0, cap if capped_by > 0 else "")
    return out


@dataclass
class CardPrice:
    """A card's charges over any number of service days: each day's `DayPrice` by service
    date, and what the card was charged in each week (by its Monday) and month (by its
    first day)."""

    days: dict[date, DayPrice] = field(default_factory=dict)
    weeks: dict[date, int] = field(default_factory=dict)
    months: dict[date, int] = field(default_factory=dict)

    @cached_property
    def charges(self) -> dict[str, Charge]:
        """Every tap's charge (built once: a card priced is not priced again)."""
        return {t: c for day in self.days.values() for t, c in day.charges.items()}

    @property
    def total(self) -> int:
        return sum(day.total for day in self.days.values())

    def amount(self, tap_id: str) -> int:
        charge = self.charges.get(tap_id)
        return charge.amount if charge else 0


def price_card(policy: FarePolicy, category: str, taps: Iterable[TapFacts]) -> CardPrice:
    """The charge of every accepted tap of a card, over as many days as they span: the
    pure function of contract section 5. Days are priced in order, each from what its
    week and month were charged before it; a week that spans two months counts toward
    each month by each tap's own service date."""
    by_day: dict[date, list[TapFacts]] = {}
    for tap in {t.tap_id: t for t in taps}.values():
        by_day.setdefault(policy.service_date(tap.ts), []).append(tap)
    out = CardPrice()
    for service_date in sorted(by_day):
        week, month = week_of(service_date), month_of(service_date)
        day = price_day(policy, category, by_day[service_date],
                        Earlier(out.weeks.get(week, 0), out.months.get(month, 0)))
        out.days[service_date] = day
        out.weeks[week] = out.weeks.get(week, 0) + day.total
        out.months[month] = out.months.get(month, 0) + day.total
    return out
