"""Who pays what when: a fare policy read as a table of routes, local time windows and
categories, for an operator to read a policy before it goes live (`transit fares check`).

Each route the rules name, and every other route, gets its day cut into windows: a new
window wherever the first matching rule changes, so windows split at every rule start
and end that applies to the route, and neighbouring minutes priced by the same rule stay
one window (over midnight too: `22:00-05:00`). Pure functions of the policy; amounts are
worded by the `money` function the caller hands in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fare_gateway.fares.policy import (
    MINUTES_PER_DAY,
    OTHER_ROUTES,
    Distance,
    FarePolicy,
    hhmm,
    named_routes,
    windows,
)

Money = Callable[[int], str]


@dataclass(frozen=True)
class CategoryFare:
    """What one category pays under a rule: the fare (a distance rule's base) and, on a
    distance rule, the maximum."""

    amount: int
    max: int | None = None


@dataclass(frozen=True)
class FareWindow:
    """One row of the table: a route, a local window [start, end) and the rule over it."""

    route: str  # a route id, or OTHER_ROUTES
    start_min: int
    end_min: int  # before start_min: over midnight; equal to it: all day
    rule: int  # the index in `policy.rules`
    fares: dict[str, CategoryFare]  # every category, in the policy's order
    distance: Distance | None

    @property
    def window(self) -> str:
        """`05:00-07:00`, `22:00-05:00` over midnight, or `all day`."""
        if self.start_min == self.end_min:
            return "all day"
        return f"{hhmm(self.start_min)}-{hhmm(self.end_min)}"


def route_windows(policy: FarePolicy, route: str) -> list[tuple[int, int, int]]:
    """The (start, end, rule index) windows of a route's day, by start time."""
    # Only the rules that name the route or "*" can price it: a policy naming 1,500
    # routes took minutes when every minute of every route tried every rule.
    mine = [(i, rule) for i, rule in enumerate(policy.rules)
            if "*" in rule.routes or route in rule.routes]
    by_minute = [next(i for i, rule in mine if rule.matches(route, m))
                 for m in range(MINUTES_PER_DAY)]
    found = [(start, end, rule) for rule in sorted(set(by_minute))
             for start, end in windows([r == rule for r in by_minute])]
    return sorted(found)


def fare_windows(policy: FarePolicy) -> list[FareWindow]:
    """Every row of the table: the named routes in the order the rules name them, then
    the other routes, each route's windows by start time."""
    rows = []
    for route in named_routes(policy.rules):
        for start, end, i in route_windows(policy, route):
            rule = policy.rules[i]
            fares = {cat: CategoryFare(policy.amount(rule.amount, cat),
                                       None if rule.max is None
                                       else policy.amount(rule.max, cat))
                     for cat in policy.categories}
            rows.append(FareWindow(route, start, end, i, fares, rule.distance))
    return rows


def route_name(route: str) -> str:
    """A route as the table names it (`other routes` for every route no rule names)."""
    return "other routes" if route == OTHER_ROUTES else route


def cell(fare: CategoryFare, money: Money) -> str:
    """A category's fare in a row: `Rp5.000`, or `base Rp3.000, max Rp13.000`."""
    if fare.max is None:
        return money(fare.amount)
    return f"base {money(fare.amount)}, max {money(fare.max)}"


def pricing(distance: Distance | None, money: Money) -> str:
    """How a row's rule prices a ride: `flat`, or its distance steps and exits."""
    if distance is None:
        return "flat"
    steps = (f"by distance: +{money(distance.step)} per {distance.step_km} km beyond "
             f"{distance.base_km} km")
    if distance.infer_exit_minutes is None:
        return f"{steps}; no tap-out: the maximum"
    return (f"{steps}; no tap-out: exit inferred at the next entry within "
            f"{distance.infer_exit_minutes} min, else the maximum")


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as lines in aligned columns (the last column is not padded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if i < len(row))
              for i in range(max(len(row) for row in rows))]
    return ["  ".join(text.ljust(widths[i]) if i < len(row) - 1 else text
                      for i, text in enumerate(row)).rstrip() for row in rows]


def transfer_rule(policy: FarePolicy) -> str:
    """The transfer rule in one sentence."""
    if policy.max_transfers == 0:
        return "Transfers: none (every entry starts a new journey)."
    most = "1 transfer" if policy.max_transfers == 1 else f"{policy.max_transfers} transfers"
    return (f"Transfers: up to {most} within {policy.transfer_window_minutes} min of a "
            "journey's first entry; a transfer pays its fare less the highest fare "
            "already paid in the journey, never less than nothing.")


def caps_rows(policy: FarePolicy, money: Money) -> list[list[str]]:
    """The caps per category (daily, weekly, monthly; `none` where absent), with a header."""
    rows = [["caps", "daily", "weekly", "monthly"]]
    for cat in policy.categories:
        rows.append([cat, *("none" if cap is None else money(cap)
                            for cap in policy.caps(cat))])
    return rows


def table_lines(policy: FarePolicy, money: Money) -> list[str]:
    """The whole table as plain-text lines: fares, then transfers and caps."""
    cats = list(policy.categories)
    rows = [["route", "window", "rule", *cats, "pricing"]]
    for row in fare_windows(policy):
        rows.append([route_name(row.route), row.window, f"fares[{row.rule}]",
                     *(cell(row.fares[cat], money) for cat in cats),
                     pricing(row.distance, money)])
    return [
        f"Local time {policy.timezone}; a service day starts at "
        f"{hhmm(policy.service_day_start_min)}; an entry on the same vehicle within "
        f"{policy.repeat_tap_seconds} s of the last is a free repeat; a category a rule "
        f"leaves out pays {policy.default_category}'s fare.",
        "",
        *aligned(rows),
        "",
        transfer_rule(policy),
        "",
        *aligned(caps_rows(policy, money)),
    ]


def table_json(policy: FarePolicy) -> dict[str, Any]:
    """The same table for tools: amounts as whole numbers of the currency."""
    fares = []
    for row in fare_windows(policy):
        d = row.distance
        fares.append({
            "route": row.route, "start": hhmm(row.start_min), "end": hhmm(row.end_min),
            "rule": row.rule, "pricing": "flat" if d is None else "distance",
            "fares": {cat: {"amount": f.amount, "max": f.max} for cat, f in row.fares.items()},
            "distance": None if d is None else {
                "base_km": d.base_km, "step_km": d.step_km, "step": d.step,
                "infer_exit_minutes": d.infer_exit_minutes},
        })
    return {
        "currency": policy.currency, "timezone": policy.timezone,
        "service_day_start": hhmm(policy.service_day_start_min),
        "repeat_tap_seconds": policy.repeat_tap_seconds,
        "categories": list(policy.categories), "default_category": policy.default_category,
        "fares": fares,
        "transfers": {"window_minutes": policy.transfer_window_minutes,
                      "max_transfers": policy.max_transfers},
        "caps": {cat: policy.caps(cat)._asdict() for cat in policy.categories},
    }
