"""Pricing a card's service day: a pure function of its accepted taps (contract section 5).

`price_day` takes every accepted tap of one card in one service day, in any order, and
returns what each costs. Arrival order, duplicates and delays cannot change the result:
the taps are sorted by (`ts`, `device_id`, `seq`) before anything else happens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from geopy.distance import geodesic

from fare_gateway.fares.policy import FarePolicy, FareRule


@dataclass(frozen=True)
class PricedTap:
    """The facts of one accepted tap that its price can depend on."""

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


@dataclass(frozen=True)
class Charge:
    """What one tap costs, and why."""

    tap_id: str
    amount: int
    full_fare: int = 0
    role: str = "exit"  # new_journey | transfer | repeat | exit
    capped: bool = False


@dataclass
class _Journey:
    start_ts: int
    transfers: int = 0
    highest_full: int = 0


@dataclass
class DayPrice:
    """The charges of a day by tap id; `total` is what the card pays for the day."""

    charges: dict[str, Charge] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(c.amount for c in self.charges.values())

    def amount(self, tap_id: str) -> int:
        charge = self.charges.get(tap_id)
        return charge.amount if charge else 0


def distance_km(a: PricedTap, b: PricedTap) -> float:
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


def price_day(policy: FarePolicy, category: str, taps: Iterable[PricedTap]) -> DayPrice:
    """The charge of every tap in a card's service day (accepted taps only)."""
    ordered = sorted({t.tap_id: t for t in taps}.values(), key=lambda t: t.order)
    repeat_ms = policy.repeat_tap_seconds * 1000
    window_ms = policy.transfer_window_minutes * 60_000
    cap = policy.cap(category)

    # Pass 1: which entries are repeats, and each real entry's full fare (a distance
    # leg's depends on its exit, which comes later in the day).
    roles: dict[str, str] = {}
    full: dict[str, int] = {}
    open_leg: dict[str, tuple[PricedTap, FareRule]] = {}  # vehicle -> distance entry
    last_real: PricedTap | None = None
    for tap in ordered:
        if tap.kind == "exit":
            roles[tap.tap_id] = "exit"
            leg = open_leg.pop(tap.vehicle_id, None)
            if leg is not None:
                entry, leg_rule = leg
                full[entry.tap_id] = distance_fare(policy, leg_rule, category,
                                                   distance_km(entry, tap))
            continue
        if (last_real is not None and last_real.vehicle_id == tap.vehicle_id
                and tap.ts - last_real.ts <= repeat_ms):
            roles[tap.tap_id] = "repeat"
            continue
        last_real = tap
        roles[tap.tap_id] = "entry"
        open_leg.clear()  # an exit only counts before the card's next entry
        rule = policy.rule_for(tap.route_id, tap.ts)
        if rule is None:
            full[tap.tap_id] = 0
        elif rule.distance is not None and rule.max is not None:
            full[tap.tap_id] = policy.amount(rule.max, category)
            open_leg[tap.vehicle_id] = (tap, rule)
        else:
            full[tap.tap_id] = policy.amount(rule.amount, category)

    # Pass 2: journeys, transfers and the daily cap, in event order.
    out = DayPrice()
    journey: _Journey | None = None
    total = 0
    for tap in ordered:
        role = roles[tap.tap_id]
        if role in ("exit", "repeat"):
            out.charges[tap.tap_id] = Charge(tap.tap_id, 0, 0, role)
            continue
        fare = full[tap.tap_id]
        if (journey is not None and tap.ts - journey.start_ts <= window_ms
                and journey.transfers < policy.max_transfers):
            journey.transfers += 1
            charge = max(0, fare - journey.highest_full)
            journey.highest_full = max(journey.highest_full, fare)
            role = "transfer"
        else:
            journey = _Journey(start_ts=tap.ts, highest_full=fare)
            charge = fare
            role = "new_journey"
        capped = False
        if cap is not None:
            allowed = max(0, cap - total)
            if charge > allowed:
                charge, capped = allowed, True
        total += charge
        out.charges[tap.tap_id] = Charge(tap.tap_id, charge, fare, role, capped)
    return out
