"""Fare policy files: load, validate and query the TOML of contract section 5."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from transit.topics import ID_PATTERN

HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
CURRENCY = re.compile(r"[A-Z]{3}")
CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_FARE = 100_000_000
MINUTES_PER_DAY = 24 * 60
MAX_POLICY_BYTES = 64 * 1024  # the built-in policy is 564 bytes, the contract's example 1.5 KB


class PolicyError(ValueError):
    """A fare policy that cannot be used; `field` names where, the message says what."""

    def __init__(self, field: str, problem: str, source: str = "") -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Distance:
    """Distance pricing: `step` per started `step_km` beyond `base_km`."""

    base_km: int
    step_km: int
    step: int
    infer_exit_minutes: int | None = None  # rule 5: a next entry may stand in for the exit


@dataclass(frozen=True)
class FareRule:
    """One `[[fares]]` table: which routes and local times it covers, and what it costs."""

    routes: tuple[str, ...]
    amount: dict[str, int]
    start_min: int | None = None
    end_min: int | None = None
    max: dict[str, int] | None = None
    distance: Distance | None = None

    def matches(self, route_id: str, local_minute: int) -> bool:
        """True when the rule covers this route at this local minute of the day."""
        if "*" not in self.routes and route_id not in self.routes:
            return False
        if self.start_min is None or self.end_min is None:
            return True
        if self.start_min <= self.end_min:
            return self.start_min <= local_minute < self.end_min
        return local_minute >= self.start_min or local_minute < self.end_min  # spans midnight


@dataclass(frozen=True)
class FarePolicy:
    """A whole fare policy, validated."""

    currency: str
    timezone: str
    service_day_start_min: int
    repeat_tap_seconds: int
    categories: tuple[str, ...]
    default_category: str
    rules: tuple[FareRule, ...]
    transfer_window_minutes: int
    max_transfers: int
    daily_caps: dict[str, int]
    weekly_caps: dict[str, int] = field(default_factory=dict)
    monthly_caps: dict[str, int] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_time(self, ts_ms: int) -> datetime:
        """The wall-clock time of `ts_ms` in the policy's time zone."""
        return datetime.fromtimestamp(ts_ms / 1000, self.tz)

    def service_date(self, ts_ms: int) -> date:
        """The service day of an event: local date, the day starting at `service_day_start`."""
        return (self.local_time(ts_ms) - timedelta(minutes=self.service_day_start_min)).date()

    def service_day_start_ms(self, ts_ms: int) -> int:
        """When the service day of an event began (epoch ms)."""
        day = self.service_date(ts_ms)
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz) + timedelta(
            minutes=self.service_day_start_min)
        return int(start.timestamp() * 1000)

    def __post_init__(self) -> None:
        # Re-pricing a day asks for the same (route, minute) again at every new tap. A
        # rule depends only on the route and the local minute of the day, and time zone
        # offsets are whole minutes, so the UTC minute is a sound key. The cache is
        # bounded: a long-running gateway meets new minutes all day long.
        object.__setattr__(self, "_rule_at", lru_cache(maxsize=8192)(self._rule_at_minute))

    def rule_for(self, route_id: str, ts_ms: int) -> FareRule:
        """The first rule matching the route at the event's local time (every minute of
        every route has one: `uncovered` refuses a policy that leaves one unpriced)."""
        found: FareRule = self._rule_at(route_id, ts_ms // 60_000)  # type: ignore[attr-defined]
        return found

    def _rule_at_minute(self, route_id: str, utc_minute: int) -> FareRule:
        local = self.local_time(utc_minute * 60_000)
        return self.rule_at(route_id, local.hour * 60 + local.minute)

    def rule_at(self, route_id: str, local_minute: int) -> FareRule:
        """The first rule matching the route at a local minute of the day."""
        for rule in self.rules:
            if rule.matches(route_id, local_minute):
                return rule
        raise LookupError(f"no fare rule for route {route_id} at minute {local_minute}")

    def amount(self, table: dict[str, int], category: str) -> int:
        """A category's amount in a rule's table, falling back to the default category."""
        return table.get(category, table[self.default_category])

    def full_fare(self, route_id: str, ts_ms: int, category: str) -> int:
        """The full fare of an entry: the first matching rule's amount (max on distance routes)."""
        rule = self.rule_for(route_id, ts_ms)
        if rule.distance is not None and rule.max is not None:
            return self.amount(rule.max, category)
        return self.amount(rule.amount, category)

    def lowest_fare(self, category: str) -> int:
        """The cheapest full fare a category can pay anywhere: below it, a card is denied."""
        return min(self.amount(rule.amount, category) for rule in self.rules)

    def cap(self, category: str) -> int | None:
        """The category's daily cap (None: no cap)."""
        return self.daily_caps.get(category)

    def caps(self, category: str) -> Caps:
        """The category's daily, weekly and monthly caps (None: no cap)."""
        return Caps(self.daily_caps.get(category), self.weekly_caps.get(category),
                    self.monthly_caps.get(category))


class Caps(NamedTuple):
    """A category's caps by service day, week (Monday to Sunday) and calendar month."""

    daily: int | None
    weekly: int | None
    monthly: int | None


def week_of(service_date: date) -> date:
    """The Monday of a service date's week (weeks run Monday to Sunday)."""
    return service_date - timedelta(days=service_date.weekday())


def month_of(service_date: date) -> date:
    """The first day of a service date's calendar month."""
    return service_date.replace(day=1)


def _covered_minutes(rules: tuple[FareRule, ...], route_id: str) -> list[bool]:
    covered = [False] * MINUTES_PER_DAY
    for rule in rules:
        if "*" not in rule.routes and route_id not in rule.routes:
            continue
        if rule.start_min is None or rule.end_min is None:
            return [True] * MINUTES_PER_DAY
        start, end = rule.start_min, rule.end_min
        span = range(start, end) if start < end else [*range(start, MINUTES_PER_DAY),
                                                      *range(0, end)]
        for minute in span:
            covered[minute] = True
    return covered


def windows(minutes: list[bool]) -> list[tuple[int, int]]:
    """The [start, end) runs of True in a day of minutes; a run over midnight is one
    window whose end is before its start."""
    runs: list[tuple[int, int]] = []
    minute = 0
    while minute < MINUTES_PER_DAY:
        if minutes[minute]:
            start = minute
            while minute < MINUTES_PER_DAY and minutes[minute]:
                minute += 1
            runs.append((start, minute % MINUTES_PER_DAY))
        else:
            minute += 1
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == 0:
        runs = [(runs[-1][0], runs[0][1]), *runs[1:-1]]
    return runs


def hhmm(minute: int) -> str:
    """A minute of the day as "HH:MM"."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


OTHER_ROUTES = "*"
"""Stands for every route that no rule names, in `uncovered` and the fare table."""


def named_routes(rules: tuple[FareRule, ...]) -> list[str]:
    """The routes the rules name, in first-named order, then `OTHER_ROUTES`."""
    names = dict.fromkeys(r for rule in rules for r in rule.routes if r != "*")
    return [*names, OTHER_ROUTES]


def uncovered(rules: tuple[FareRule, ...]) -> dict[str, list[tuple[int, int]]]:
    """For each route (`OTHER_ROUTES`: any route no rule names), the local windows
    [start, end) that no rule prices; empty when every minute of every route is."""
    gaps = {}
    for route in named_routes(rules):
        missing = windows([not c for c in _covered_minutes(rules, route)])
        if missing:
            gaps[route] = missing
    return gaps


def describe_gaps(gaps: dict[str, list[tuple[int, int]]]) -> str:
    """`uncovered`'s answer as one sentence naming each route's unpriced windows."""
    parts = []
    for route, runs in gaps.items():
        name = "any other route" if route == OTHER_ROUTES else f"route {route}"
        spans = ", ".join("all day" if s == e else f"{hhmm(s)}-{hhmm(e)}" for s, e in runs)
        parts.append(f"{name} {spans}")
    return "no rule prices " + "; ".join(parts)


def _hhmm(value: Any, field: str) -> int:
    if not isinstance(value, str) or not HHMM.fullmatch(value):
        raise PolicyError(field, f'must be a time "HH:MM", got {value!r}')
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def _int(value: Any, field: str, lo: int = 0, hi: int = MAX_FARE) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(field, f"must be a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise PolicyError(field, f"must be between {lo} and {hi}, got {value}")
    return value


def _table(value: Any, field: str, categories: tuple[str, ...]) -> dict[str, int]:
    if not isinstance(value, dict) or not value:
        raise PolicyError(field, "must be a table of category = amount")
    out = {}
    for cat, amount in value.items():
        if cat not in categories:
            raise PolicyError(f"{field}.{cat}",
                              f"unknown category (known: {', '.join(categories)})")
        out[cat] = _int(amount, f"{field}.{cat}")
    return out


KNOWN_TOP = {"currency", "timezone", "service_day_start", "repeat_tap_seconds", "categories",
             "default_category", "fares", "transfers", "caps"}
KNOWN_RULE = {"routes", "start", "end", "amount", "max", "distance"}


def _rule(raw: Any, i: int, categories: tuple[str, ...], default: str) -> FareRule:
    field = f"fares[{i}]"
    if not isinstance(raw, dict):
        raise PolicyError(field, "must be a table")
    unknown = set(raw) - KNOWN_RULE
    if unknown:
        raise PolicyError(f"{field}.{sorted(unknown)[0]}", "unknown key")
    routes = raw.get("routes", ["*"])
    if not isinstance(routes, list) or not routes:
        raise PolicyError(f"{field}.routes", 'must be a non-empty list of route ids or "*"')
    for j, route in enumerate(routes):
        if not isinstance(route, str) or not (route == "*" or ID_PATTERN.fullmatch(route)):
            raise PolicyError(f"{field}.routes[{j}]", f"not a route id: {route!r}")
    if ("start" in raw) != ("end" in raw):
        raise PolicyError(f"{field}.{'end' if 'start' in raw else 'start'}",
                          "start and end must be given together")
    start = _hhmm(raw["start"], f"{field}.start") if "start" in raw else None
    end = _hhmm(raw["end"], f"{field}.end") if "end" in raw else None
    if start is not None and start == end:
        raise PolicyError(f"{field}.end", "must differ from start")
    if "amount" not in raw:
        raise PolicyError(f"{field}.amount", "is required")
    amount = _table(raw["amount"], f"{field}.amount", categories)
    if default not in amount:
        raise PolicyError(f"{field}.amount.{default}", "the default category must have an amount")
    maximum = None
    distance = None
    if "distance" in raw or "max" in raw:
        if "distance" not in raw or "max" not in raw:
            raise PolicyError(f"{field}.{'max' if 'distance' in raw else 'distance'}",
                              "a distance rule needs both distance and max")
        maximum = _table(raw["max"], f"{field}.max", categories)
        if default not in maximum:
            raise PolicyError(f"{field}.max.{default}", "the default category must have a maximum")
        d = raw["distance"]
        if not isinstance(d, dict):
            raise PolicyError(f"{field}.distance", "must be a table {base_km, step_km, step}")
        extra = set(d) - {"base_km", "step_km", "step", "infer_exit_minutes"}
        if extra:
            raise PolicyError(f"{field}.distance.{sorted(extra)[0]}", "unknown key")
        for key in ("base_km", "step_km", "step"):
            if key not in d:
                raise PolicyError(f"{field}.distance.{key}", "is required")
        distance = Distance(
            base_km=_int(d["base_km"], f"{field}.distance.base_km", 0, 10_000),
            step_km=_int(d["step_km"], f"{field}.distance.step_km", 1, 10_000),
            step=_int(d["step"], f"{field}.distance.step"),
            infer_exit_minutes=(_int(d["infer_exit_minutes"],
                                     f"{field}.distance.infer_exit_minutes", 1, 1440)
                                if "infer_exit_minutes" in d else None),
        )
        for cat in set(amount) | set(maximum):
            base = amount.get(cat, amount[default])
            top = maximum.get(cat, maximum[default])
            if top < base:
                raise PolicyError(f"{field}.max.{cat}", f"maximum {top} is below the base {base}")
    return FareRule(tuple(routes), amount, start, end, maximum, distance)


def parse_policy(doc: dict[str, Any], source: str = "") -> FarePolicy:
    """Validate a decoded TOML document; raises PolicyError naming the field."""
    try:
        return _parse(doc)
    except PolicyError as exc:
        raise PolicyError(exc.field, exc.problem, source) from None


def _parse(doc: dict[str, Any]) -> FarePolicy:
    unknown = set(doc) - KNOWN_TOP
    if unknown:
        raise PolicyError(sorted(unknown)[0], "unknown key")
    currency = doc.get("currency", "IDR")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise PolicyError("currency", f"must be an ISO 4217 code like IDR, got {currency!r}")
    timezone = doc.get("timezone", "Asia/Jakarta")
    try:
        if not isinstance(timezone, str):
            raise ValueError
        ZoneInfo(timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise PolicyError("timezone", f"unknown time zone {timezone!r}") from None
    day_start = _hhmm(doc.get("service_day_start", "03:00"), "service_day_start")
    repeat = _int(doc.get("repeat_tap_seconds", 120), "repeat_tap_seconds", 0, 86_400)
    categories = doc.get("categories", ["regular"])
    if not isinstance(categories, list) or not categories:
        raise PolicyError("categories", "must be a non-empty list of names")
    for i, cat in enumerate(categories):
        if not isinstance(cat, str) or not CATEGORY.fullmatch(cat):
            raise PolicyError(f"categories[{i}]", f"not a category name: {cat!r}")
    if len(set(categories)) != len(categories):
        raise PolicyError("categories", "names must be unique")
    cats = tuple(categories)
    default = doc.get("default_category", cats[0])
    if default not in cats:
        raise PolicyError("default_category", f"{default!r} is not in categories")
    fares = doc.get("fares")
    if not isinstance(fares, list) or not fares:
        raise PolicyError("fares", "at least one [[fares]] rule is required")
    rules = tuple(_rule(raw, i, cats, default) for i, raw in enumerate(fares))
    gaps = uncovered(rules)
    if gaps:
        raise PolicyError("fares", describe_gaps(gaps))
    transfers = doc.get("transfers", {})
    if not isinstance(transfers, dict):
        raise PolicyError("transfers", "must be a table")
    extra = set(transfers) - {"window_minutes", "max_transfers"}
    if extra:
        raise PolicyError(f"transfers.{sorted(extra)[0]}", "unknown key")
    window = _int(transfers.get("window_minutes", 0), "transfers.window_minutes", 0, 1440)
    max_transfers = _int(transfers.get("max_transfers", 0), "transfers.max_transfers", 0, 100)
    caps = doc.get("caps", {})
    if not isinstance(caps, dict):
        raise PolicyError("caps", "must be a table")
    extra = set(caps) - {"daily", "weekly", "monthly"}
    if extra:
        raise PolicyError(f"caps.{sorted(extra)[0]}", "unknown key")
    daily, weekly, monthly = (_table(caps[name], f"caps.{name}", cats) if name in caps else {}
                              for name in ("daily", "weekly", "monthly"))
    return FarePolicy(currency, timezone, day_start, repeat, cats, default, rules,
                      window, max_transfers, daily, weekly, monthly)


def load_policy(path: str | Path) -> FarePolicy:
    """Read and validate a policy file; raises PolicyError (never a bare traceback).

    A policy is a few hundred bytes to a few KB; a file over `MAX_POLICY_BYTES` is
    refused before it is parsed, and no more than that is ever read (a device or a pipe
    named by mistake has no end). `tomllib` recurses once per level of nested arrays and
    inline tables, so a file nested a few hundred deep exhausts Python's stack: that is
    refused as such, however it is spelled.
    """
    source = str(path)
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError("file", f"cannot read: {exc.strerror}", source) from None
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError("file", f"larger than {MAX_POLICY_BYTES:,} bytes, the limit for a "
                                  "fare policy (a real one is a few KB)", source)
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PolicyError("file", "is not UTF-8 text", source) from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError("file", f"not valid TOML: {exc}", source) from None
    except RecursionError:
        raise PolicyError("file", "arrays or tables nested too deeply (a fare policy nests "
                                  "them two or three levels at most)", source) from None
    return parse_policy(doc, source)


def builtin_policy() -> FarePolicy:
    """The built-in Surabaya policy of contract section 5."""
    text = resources.files("fare_gateway.fares").joinpath("surabaya.toml").read_text("utf-8")
    return parse_policy(tomllib.loads(text), "built-in")


def policy_from_setting(value: str) -> FarePolicy:
    """`TRANSIT_FARES`: a file path, or empty for the built-in policy."""
    return load_policy(value) if value else builtin_policy()
