"""A card's statement (contract section 7): every tap and every movement of its balance,
oldest first, with the running balance and one sentence saying why.

What it is made of:

* the card's ledger postings, each joined to its entry: a fare (`tap:{tap_id}`) merges
  into its tap's line, and every other entry is a line of its own: `correction`,
  `topup`, `refund`, `transfer_out` (on the lost card) and `transfer_in` (on its
  replacement: the same entry, seen from the other posting), `adjustment`;
* the card's taps in the inbox: accepted ones (`tap`, amount 0 when they cost nothing:
  a repeat, an exit) and those refused at the reader (`denied`, with the reader's
  reason). Rejected taps and taps of unknown cards are left out, as `card_taps` does.

A tap line's time and date are the tap's own (`ts`, its service date); any other line's
are its entry's posting time and the service day that time falls in. Lines are ordered
by that time (ties: the entry's id), the window picks them by that date, and
`opening_balance` is the sum of the card's postings of the lines before the window,
summed by the database.

A sentence says what the engine decided when the money moved, so that a line's amount
and its sentence agree: a tap's day is priced again with the taps that had reached the
gateway by then (those received earlier, and those of its own batch up to it in tap
order, the order in which the gateway priced a batch), and a correction's sentence
explains the corrected tap's new charge as of the late tap that caused it (a late tap of
an earlier day of the week or month moves what a later day's caps leave: its
correction is explained by the later day as it stood when that tap came in). Every
pricing of a day, its replay included, starts the day's weekly and monthly caps from
what the ledger holds for the card's earlier days of that week and month. Most days
arrive in tap order and hold entries only: every tap's charge then depends on earlier
taps alone, and one pricing of the whole day gives each tap's charge at its time; not
so on a rule that infers exits, where a later entry may stand in for an earlier one's
missing tap-out.

Reading it (`card_statement`) takes one pass over the card's postings, which returns
the window's movements other than fares and, summed by the database, the lines before
the window and the window's fares; the fares themselves are read from the card's
entries by service date (a fare entry moves its amount, negated, on its card), the
card's taps by service date, and what its taps' entries hold per service date from the
first Monday or first of the month the window's days count from (one grouped query).
Should the fares not add up to what the postings say (data written other than by the
tap path), they are read from the postings instead.
"""

from __future__ import annotations

import gc
import math
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from typing import Any, NamedTuple, Protocol

from sqlalchemy import BigInteger, and_, case, cast, func, literal, null, or_, select, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import CardReplacement, Dispute, TapRecord
from fare_gateway.fares.engine import (
    NOTHING_EARLIER,
    Charge,
    DayPrice,
    Earlier,
    PricedTap,
    has_fix,
    price_day,
)
from fare_gateway.fares.policy import FarePolicy, FareRule, month_of, week_of
from fare_gateway.riders import explain
from fare_gateway.riders.links import own_card
from fare_gateway.riders.times import iso_z
from ledger.adapters.db import READS_ONLY, Sessions
from ledger.adapters.models import Card, Entry, Posting
from ledger.adapters.sql import one_of
from ledger.services import CardNotFound
from ledger.settlement import BusinessCalendar
from tracking.adapters.models import Stop

DEFAULT_DAYS = 30  # the window when none is asked: the last 30 service dates, today's included
MAX_DAYS = 3 * 365 + 1  # the longest window a request may ask: three years
STOP_RADIUS_M = 150.0  # a tap names the nearest stop at most this far away
STOPS_TTL_S = 300.0  # how long `Statements` keeps the network's stops
SHOWN_TAPS = ("charged", "not_charged")  # inbox statuses that are the card's own taps
MOVEMENT_TYPES = ("correction", "topup", "refund", "adjustment")  # lines named by their kind
BEFORE, FARES, MOVED, AFTER = 0, 1, 2, 3  # where a posting's line falls (`_postings`)
# Cells of the stop search, in millionths of a degree: 2,000 is 222 m of latitude, and
# of longitude wherever |latitude| < 47 (farther from the equator more cells are looked
# at).
CELL_E6 = 2000
METRES_PER_E6 = 0.1113195  # metres per millionth of a degree of latitude


class StatementError(ValueError):
    """A statement request that cannot be answered; `code` says which kind."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TapRow(NamedTuple):
    """One inbox row of the card, as the statement reads it (a named tuple: a card with
    two years of history has thousands, built in a third of a dataclass's time)."""

    tap_id: str
    device_id: str
    seq: int
    ts: int
    vehicle_id: str
    route_id: str
    kind: str
    accepted: bool
    reason: str | None
    lat_e6: int
    lon_e6: int
    service_date: str
    status: str
    received_ms: int

    @property
    def order(self) -> tuple[int, str, int]:
        """Tap order, (`ts`, `device_id`, `seq`): the row is the engine's `TapFacts`."""
        return (self.ts, self.device_id, self.seq)

    def priced(self) -> PricedTap:
        """The facts of the tap its price depends on."""
        return PricedTap(self.tap_id, self.device_id, self.seq, self.ts, self.vehicle_id,
                         self.route_id, self.kind, self.lat_e6, self.lon_e6)


class Movement(NamedTuple):
    """One posting of the card's account with its entry; `amount` is the posting's (what
    the card's balance moved), not the entry's headline."""

    entry_id: int
    kind: str
    idem_key: str
    posted_ms: int
    amount: int
    tap_id: str | None
    reference: str | None
    service_date: str | None
    route_id: str | None
    category: str | None
    card: str | None  # the entry's card: for a transfer, the lost card


class StopRow(NamedTuple):
    """A GTFS stop, where a tap can be said to have been made."""

    stop_id: str
    name: str
    lat_e6: int
    lon_e6: int


class Replacement(NamedTuple):
    """This card, lost, was replaced by `new_card` at `created_ms`."""

    new_card: str
    created_ms: int


class StatementItem(NamedTuple):
    """One line of the statement; `ts` in epoch ms (ISO-8601 in `as_json`)."""

    ts: int
    type: str  # tap | denied | correction | topup | refund | transfer_in | transfer_out
    #            | adjustment
    amount: int
    balance_after: int
    tap_id: str | None
    route_id: str | None
    vehicle_id: str | None
    reason: str | None
    explanation: str
    stop_id: str | None
    stop_name: str | None
    service_date: str
    # For staff (`Statement.as_json(staff=True)`): the ledger entry behind the line (a
    # tap's fare; None for a line that moved nothing) and that entry's reference (a
    # top-up's payment reference, an adjustment's, `dispute:N` for a refund, the
    # replacement card for a transfer).
    entry_id: int | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Window:
    """Service dates `first`..`last` (inclusive) and the posting times they span."""

    first: date
    last: date
    start_ms: int  # first's service day begins
    end_ms: int  # last's ends (exclusive)
    # The dates as the rows write them, compared with every line's: made once.
    first_text: str = field(init=False, repr=False, compare=False)
    last_text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_text", self.first.isoformat())
        object.__setattr__(self, "last_text", self.last.isoformat())

    def holds_date(self, service_date: str) -> bool:
        return self.first_text <= service_date <= self.last_text

    def holds_ms(self, ms: int) -> bool:
        return self.start_ms <= ms < self.end_ms


@dataclass(frozen=True)
class Statement:
    """A card's statement for a window of service dates."""

    card: str
    currency: str
    window: Window
    opening_balance: int
    closing_balance: int
    items: tuple[StatementItem, ...]
    language: str

    def as_json(self, staff: bool = False) -> dict[str, Any]:
        """The statement as contract section 7 shows it (times ISO-8601 UTC with `Z`);
        for staff, each item also names its ledger entry and that entry's reference."""
        items = [{"ts": iso_z(i.ts), "type": i.type, "amount": i.amount,
                  "balance_after": i.balance_after, "tap_id": i.tap_id,
                  "route_id": i.route_id, "vehicle_id": i.vehicle_id,
                  "reason": i.reason, "explanation": i.explanation,
                  "stop_id": i.stop_id, "stop_name": i.stop_name,
                  "service_date": i.service_date} for i in self.items]
        if staff:
            for item, line in zip(items, self.items, strict=True):
                item["entry_id"], item["reference"] = line.entry_id, line.reference
        return {
            "card": self.card, "currency": self.currency,
            "from": self.window.first_text, "to": self.window.last_text,
            "opening_balance": self.opening_balance,
            "closing_balance": self.closing_balance,
            "items": items}


def statement_window(policy: FarePolicy, first: date | None, last: date | None,
                     today: date) -> Window:
    """The window asked for: `last` defaults to today, `first` to 29 days before `last`.

    Raises StatementError when `first` is after `last` or the window is longer than
    MAX_DAYS, or a date is outside the years the calendar covers.
    """
    last = today if last is None else last
    first = last - timedelta(days=DEFAULT_DAYS - 1) if first is None else first
    if first > last:
        raise StatementError("bad_window", f"from ({first.isoformat()}) is after to "
                                           f"({last.isoformat()}; today when not given)")
    if (last - first).days + 1 > MAX_DAYS:
        raise StatementError("window_too_long",
                             f"a statement covers at most {MAX_DAYS} days; ask for "
                             "several shorter windows")
    calendar = BusinessCalendar(policy.timezone, policy.service_day_start_min)
    try:
        start, end = calendar.bounds(first)[0], calendar.bounds(last)[1]
    except ValueError as exc:  # SettlementError: a year the calendar does not cover
        raise StatementError("bad_date", str(exc)) from None
    return Window(first, last, start, end)


# -- pricing as it was ---------------------------------------------------------------


def infers_exits(rule: FareRule) -> bool:
    """A distance rule on which the card's next entry may stand in for a missing tap-out."""
    return rule.distance is not None and rule.distance.infer_exit_minutes is not None


class DayTotals:
    """What the ledger holds for a card's taps by service date (ISO), and since when:
    the net of each day's fares and corrections, as it stood at any posting time, from
    which a day's weekly and monthly caps start.

    Made from (service date, posting time, amount) sums. A day's caps start from what
    its earlier days held when its taps were priced: a late tap of an earlier day,
    posted after them, moved the totals only for what came after it.
    """

    def __init__(self, posted: Iterable[tuple[str, int, int]] = ()) -> None:
        by_date: dict[str, list[tuple[int, int]]] = {}
        for day, posted_ms, amount in posted:
            by_date.setdefault(day, []).append((posted_ms, amount))
        self.dates = sorted(by_date)
        self._sums = [0]  # _sums[i]: the total of the first i dates
        self._times: list[list[int]] = []  # each date's posting times, in order
        self._running: list[list[int]] = []  # and its total after each of them
        for day in self.dates:
            moves = sorted(by_date[day])
            self._times.append([t for t, _ in moves])
            self._running.append(list(accumulate(a for _, a in moves)))
            self._sums.append(self._sums[-1] + self._running[-1][-1])

    def _span(self, first: str, before: str) -> range:
        return range(bisect_left(self.dates, first), bisect_left(self.dates, before))

    def between(self, first: str, before: str, at_ms: int | None = None) -> int:
        """The total of the dates from `first` up to (not including) `before`: as it
        stands, or as it stood once the entries posted by `at_ms` were in."""
        span = self._span(first, before)
        if not span:
            return 0
        if at_ms is None:
            return self._sums[span.stop] - self._sums[span.start]
        total = 0
        for i in span:
            k = bisect_right(self._times[i], at_ms)
            if k:
                total += self._running[i][k - 1]
        return total

    def earlier(self, service_date: str, at_ms: int | None = None) -> Earlier:
        """What the card was charged before this day in its week and in its month (as
        it stood at `at_ms`, if given)."""
        day = date.fromisoformat(service_date)
        return Earlier(self.between(week_of(day).isoformat(), service_date, at_ms),
                       self.between(month_of(day).isoformat(), service_date, at_ms))

    def settled_by(self, service_date: str) -> int:
        """When the last entry of the days before this one in its week and month was
        posted (-1: none): from then on its caps start where they do now."""
        span = self._span(period_start([service_date]), service_date)
        return max((self._times[i][-1] for i in span), default=-1)


def period_start(service_dates: Iterable[str]) -> str:
    """The first service date whose charges some of these days' caps count from: the
    earliest Monday or first of the month among their weeks and months."""
    days = [date.fromisoformat(d) for d in service_dates]
    return min(min(week_of(d), month_of(d)) for d in days).isoformat()


def arrival_key(tap: TapRow) -> tuple[int, int, str, int]:
    """The order in which the gateway priced a card's taps: by arrival, and within one
    batch (one `received_ms`) in tap order."""
    return (tap.received_ms, tap.ts, tap.device_id, tap.seq)


def event_key(tap: TapRow) -> tuple[int, str, int]:
    return (tap.ts, tap.device_id, tap.seq)


class DayPrices:
    """A card-day's prices as the gateway computed them when each of its taps arrived.

    `totals` is what the ledger holds for the card's days (`DayTotals`): every pricing
    of the day, the replay of its arrivals included, starts the day's weekly and
    monthly caps from what its earlier days of the week and month held then.
    """

    def __init__(self, policy: FarePolicy, category: str, taps: Iterable[TapRow],
                 totals: DayTotals | None = None) -> None:
        self.policy = policy
        self.category = category
        self.arrival = sorted(taps, key=arrival_key)
        self.totals = totals
        day = self.arrival[0].service_date if self.arrival else None
        self.service_date = day
        # A day that arrived in tap order and holds entries only: a tap's charge depends
        # on earlier taps alone, so the whole day's price is each tap's price at its own
        # arrival. An exit changes what an earlier tap costs, and so does an entry after
        # one on a rule that infers exits (it may stand in for the missing tap-out); and
        # a late tap of an earlier day, posted after this day's first, moved the caps
        # the day's later taps start from.
        self.causal = totals is None or day is None or (
            totals.settled_by(day) < self.arrival[0].received_ms)
        previous: tuple[int, str, int] | None = None
        for t in self.arrival:
            if not self.causal:
                break
            order = (t.ts, t.device_id, t.seq)
            if (t.kind != "entry" or (previous is not None and order < previous)
                    or infers_exits(policy.rule_for(t.route_id, t.ts))):
                self.causal = False
            previous = order
        self._as_of: dict[tuple[int, Earlier], DayPrice] = {}
        self._position: dict[str, int] | None = None
        self.whole = (self._priced(len(self.arrival) - 1, None).charges if self.causal
                      else None)

    def earlier(self, at_ms: int | None = None) -> Earlier:
        """What the day's week and month held before it, as of `at_ms` (None: now)."""
        if self.totals is None or self.service_date is None:
            return NOTHING_EARLIER
        return self.totals.earlier(self.service_date, at_ms)

    def _priced(self, upto: int, at_ms: int | None) -> DayPrice:
        """The day priced with its first `upto + 1` arrivals, its caps starting from
        what the ledger held at `at_ms`."""
        earlier = self.earlier(at_ms)
        key = (upto, earlier)
        if key not in self._as_of:
            self._as_of[key] = price_day(self.policy, self.category,
                                         self.arrival[:upto + 1], earlier)
        return self._as_of[key]

    def position(self, tap_id: str) -> int | None:
        """Where the tap came in the day's arrivals."""
        if self._position is None:
            self._position = {t.tap_id: i for i, t in enumerate(self.arrival)}
        return self._position.get(tap_id)

    def charge_at(self, tap_id: str, as_of: str | None = None, at_ms: int | None = None
                  ) -> Charge | None:
        """What `tap_id` cost once `as_of` (by default the tap itself) had been priced,
        from the ledger as it stood at `at_ms` (that pricing's posting time; None: now).
        """
        if self.whole is not None and (as_of is None or as_of == tap_id):
            return self.whole.get(tap_id)
        # Nothing is ever corrected in a causal day, but a correction there (a policy
        # changed since) is explained by the exact replay all the same.
        i = self.position(tap_id if as_of is None else as_of)
        return None if i is None else self._priced(i, at_ms).charges.get(tap_id)

    def charge_when(self, tap_id: str, received_ms: int, at_ms: int | None = None
                    ) -> Charge | None:
        """What `tap_id` cost when a tap of another day received at `received_ms` (and
        posted at `at_ms`) re-priced this one: with the day's taps received before it."""
        upto = bisect_left(self.arrival, received_ms, key=lambda t: t.received_ms) - 1
        if upto < 0:
            return None
        return self._priced(upto, at_ms).charges.get(tap_id)


# -- stops ---------------------------------------------------------------------------


def _cell(value_e6: int) -> int:
    return value_e6 // CELL_E6


def _grown(lat_cell: int, lon_cell: int, within_m: float) -> tuple[int, int, int, int]:
    """The box holding every point at most `within_m` from some point of this cell
    (lat_lo, lat_hi, lon_lo, lon_hi): the cell grown by that reach, the longitude's
    reach taken at the cell's edge farthest from the equator (where a degree of
    longitude is shortest)."""
    lat_lo, lon_lo = lat_cell * CELL_E6, lon_cell * CELL_E6
    lat_hi, lon_hi = lat_lo + CELL_E6 - 1, lon_lo + CELL_E6 - 1
    dlat = math.ceil(within_m / METRES_PER_E6)
    widest = min(90_000_000, max(abs(lat_lo), abs(lat_hi)) + dlat)
    dlon = math.ceil(dlat / max(math.cos(math.radians(widest / 1e6)), 0.01))
    return lat_lo - dlat, lat_hi + dlat, lon_lo - dlon, lon_hi + dlon


def _near_cells(lat_cell: int, lon_cell: int, within_m: float) -> list[tuple[int, int]]:
    """Every cell that the grown box of this cell touches."""
    lat_lo, lat_hi, lon_lo, lon_hi = _grown(lat_cell, lon_cell, within_m)
    return [(la, lo) for la in range(_cell(lat_lo), _cell(lat_hi) + 1)
            for lo in range(_cell(lon_lo), _cell(lon_hi) + 1)]


class StopIndex:
    """Stops by cell, for the nearest stop of many points at once."""

    def __init__(self, stops: Iterable[StopRow], within_m: float = STOP_RADIUS_M) -> None:
        self.within_m = within_m
        self.by_cell: dict[tuple[int, int], list[StopRow]] = {}
        for stop in stops:
            self.by_cell.setdefault((_cell(stop.lat_e6), _cell(stop.lon_e6)), []).append(stop)

    def nearest(self, points: Mapping[str, tuple[int, int]]) -> dict[str, StopRow]:
        """For each point (by key) the nearest stop at most `within_m` away, if any (on
        a tie, the lower stop id).

        Distances are equirectangular, like tracking's `approx_metres` (within a
        fraction of a per cent over a city), compared squared in millionths of a degree
        of latitude.
        """
        limit = (self.within_m / METRES_PER_E6) ** 2
        # A point's cell -> the stops in its grown box and the cosine of the cell's
        # middle latitude (within 0.002 degrees of every point's: millimetres at 150 m),
        # worked out once for all the points of the cell (a rider's taps gather at a few
        # stops).
        near: dict[tuple[int, int], tuple[list[StopRow], float]] = {}
        found: dict[str, StopRow] = {}
        for key, (lat, lon) in points.items():
            if not self.by_cell or not has_fix(lat, lon):
                continue
            cell = (_cell(lat), _cell(lon))
            around = near.get(cell)
            if around is None:
                around = near[cell] = self._around(cell)
            candidates, cos = around
            best: StopRow | None = None
            best_d = limit
            for stop in candidates:
                dy = stop.lat_e6 - lat
                dx = (stop.lon_e6 - lon) * cos
                d = dx * dx + dy * dy
                if d < best_d or (d == best_d and (best is None
                                                   or stop.stop_id < best.stop_id)):
                    best, best_d = stop, d
            if best is not None:
                found[key] = best
        return found

    def _around(self, cell: tuple[int, int]) -> tuple[list[StopRow], float]:
        lat_lo, lat_hi, lon_lo, lon_hi = _grown(*cell, self.within_m)
        return ([s for c in _near_cells(*cell, self.within_m) for s in self.by_cell.get(c, ())
                 if lat_lo <= s.lat_e6 <= lat_hi and lon_lo <= s.lon_e6 <= lon_hi],
                math.cos(math.radians((cell[0] * CELL_E6 + CELL_E6 // 2) / 1e6)))


def nearest_stops(points: Mapping[str, tuple[int, int]], stops: Iterable[StopRow],
                  within_m: float = STOP_RADIUS_M) -> dict[str, StopRow]:
    """For each point (by key) the nearest of `stops` at most `within_m` away, if any."""
    return StopIndex(stops, within_m).nearest(points)


# -- the statement, assembled --------------------------------------------------------


class _Line(NamedTuple):
    key: tuple[int, int, str, int]
    type: str
    amount: int
    tap: TapRow | None
    movement: Movement | None
    service_date: str


def correction_late_tap(movement: Movement) -> str | None:
    """The late tap a correction names: its key is `corr:{tap_id}:{late_tap_id}`."""
    prefix = f"corr:{movement.tap_id}:"
    if movement.tap_id is None or not movement.idem_key.startswith(prefix):
        return None
    return movement.idem_key[len(prefix):] or None


def dispute_of(movement: Movement) -> int | None:
    """The dispute a refund answers: its reference is `dispute:{id}`."""
    ref = movement.reference or ""
    number = ref.removeprefix("dispute:")
    return int(number) if ref.startswith("dispute:") and number.isdigit() else None


def assemble(policy: FarePolicy, card: str, category: str, opening: int,
             movements: Sequence[Movement], taps: Sequence[TapRow], window: Window,
             lang: str = explain.DEFAULT_LANGUAGE, *, replaced: Replacement | None = None,
             disputes: Mapping[int, str | None] | None = None,
             stops: Mapping[str, StopRow] | None = None,
             held: DayTotals | None = None) -> Statement:
    """The statement from what the database holds: pure, the rules in the module's text.

    `movements` and `taps` may hold more than the window (the days that corrections in
    the window re-priced, and the late taps of other days that caused them, for their
    sentences); only the window's lines are shown. `disputes` names each refunded
    dispute's tap; `stops` the stop of each tap by id; `held` what the ledger holds for
    the card's taps by service date, from which each day's weekly and monthly caps
    start (none: nothing before the window counts).
    """
    disputes = disputes or {}
    stops = stops or {}
    totals = held or DayTotals()
    by_id = {t.tap_id: t for t in taps if t.status in SHOWN_TAPS}
    fares: dict[str, Movement] = {}
    day_category: dict[str, str] = {}
    lines: list[_Line] = []
    for m in movements:
        if m.kind in ("fare", "correction") and m.service_date and m.category:
            day_category.setdefault(m.service_date, m.category)
        if m.kind == "fare" and m.tap_id is not None and m.tap_id in by_id:
            fares[m.tap_id] = m
            continue
        if m.kind == "fare":  # a fare whose tap the inbox does not hold: shown as it is
            if m.service_date and window.holds_date(m.service_date):
                lines.append(_Line((m.posted_ms, m.entry_id, "", 0), "tap", m.amount, None,
                                   m, m.service_date))
            continue
        if not window.holds_ms(m.posted_ms):
            continue
        if m.kind == "transfer":
            kind = "transfer_out" if m.card == card else "transfer_in"
        else:  # a kind this version does not know moved the balance all the same
            kind = m.kind if m.kind in MOVEMENT_TYPES else "adjustment"
        lines.append(_Line((m.posted_ms, m.entry_id, "", 0), kind, m.amount,
                           by_id.get(m.tap_id) if m.tap_id else None, m,
                           policy.service_date(m.posted_ms).isoformat()))
    for t in by_id.values():
        if not window.holds_date(t.service_date):
            continue
        # No fare: an accepted tap that cost nothing when it came (a repeat, an exit).
        fare = fares.get(t.tap_id)
        lines.append(_Line((t.ts, fare.entry_id if fare else 0, t.device_id, t.seq),
                           "tap" if t.status == "charged" else "denied",
                           fare.amount if fare else 0, t, fare, t.service_date))
    lines.sort(key=lambda line: line.key)

    accepted: dict[str, list[TapRow]] = {}
    for t in by_id.values():
        if t.status == "charged":
            accepted.setdefault(t.service_date, []).append(t)
    days: dict[str, DayPrices] = {}

    def day_of(service_date: str) -> DayPrices:
        if service_date not in days:
            days[service_date] = DayPrices(policy, day_category.get(service_date, category),
                                           accepted.get(service_date, []), totals)
        return days[service_date]

    sentences: dict[tuple[Any, ...], str] = {}
    items: list[StatementItem] = []
    balance = opening
    for line in lines:
        balance += line.amount
        tap, moved = line.tap, line.movement
        stop = stops.get(tap.tap_id) if tap else None
        stop_id, stop_name = (stop.stop_id, stop.name) if stop else (None, None)
        if line.type == "tap" and tap is not None:
            # The common line, kept short: most of a long statement is rides.
            fare = line.movement
            # Priced from the ledger as it stood when the tap's fare was posted.
            charge = day_of(tap.service_date).charge_at(
                tap.tap_id, at_ms=fare.posted_ms if fare else tap.received_ms)
            replaced_by = (replaced.new_card if replaced is not None
                           and tap.received_ms > replaced.created_ms else None)
            key = (replaced_by, None if charge is None else charge[1:])
            text = sentences.get(key)
            if text is None:
                text = sentences[key] = explain.tap_sentence(
                    charge, lang, replaced_by, boarding(policy, charge, by_id))
            items.append(StatementItem(line.key[0], "tap", line.amount, balance, tap.tap_id,
                                       tap.route_id, tap.vehicle_id, None, text, stop_id,
                                       stop_name, line.service_date,
                                       fare.entry_id if fare else None))
            continue
        text = _sentence(policy, line, day_of, by_id, lang)
        route = tap.route_id if tap else (moved.route_id if moved else None)
        tap_id = tap.tap_id if tap else (moved.tap_id if moved else None)
        if line.type == "refund" and moved is not None:
            tap_id = disputes.get(dispute_of(moved) or -1)
        items.append(StatementItem(
            line.key[0], line.type, line.amount, balance, tap_id, route,
            tap.vehicle_id if tap else None,
            tap.reason if tap and line.type == "denied" else None, text, stop_id, stop_name,
            line.service_date, moved.entry_id if moved else None,
            moved.reference if moved else None))
    return Statement(card, policy.currency, window, opening, balance, tuple(items), lang)


class Boarded(Protocol):
    """What `boarding` reads of the entry that stood in for a tap-out."""

    @property
    def ts(self) -> int: ...
    @property
    def route_id(self) -> str: ...
    @property
    def vehicle_id(self) -> str: ...


def boarding(policy: FarePolicy, charge: Charge | None, by_id: Mapping[str, Boarded]
             ) -> explain.Boarding | None:
    """The next entry that stood in for an inferred exit's missing tap-out, if known."""
    if charge is None or charge.pricing != "inferred_exit" or charge.related is None:
        return None
    entry = by_id.get(charge.related)
    if entry is None:
        return None
    return explain.Boarding(policy.local_time(entry.ts).strftime("%H:%M"), entry.route_id,
                            entry.vehicle_id)


def _sentence(policy: FarePolicy, line: _Line, day_of: Callable[[str], DayPrices],
              by_id: Mapping[str, TapRow], lang: str) -> str:
    """The explanation of any line but a ride's, which `assemble` words itself."""
    tap, m = line.tap, line.movement
    if line.type == "denied" and tap is not None:
        return explain.denied_sentence(tap.reason, lang)
    assert m is not None
    if line.type == "tap":  # a fare whose tap the inbox does not hold
        return explain.fare_entry_sentence(line.amount, m.route_id, lang)
    if line.type == "correction":
        late_id = correction_late_tap(m)
        corrected = by_id.get(m.tap_id) if m.tap_id else None
        late_tap = by_id.get(late_id) if late_id else None
        charge = None
        if corrected is not None:
            day = day_of(corrected.service_date)
            if late_tap is not None and late_tap.service_date != corrected.service_date:
                # A late tap of another day moved what this day's week or month had
                # left: the day as it stood when that tap came in.
                charge = day.charge_when(corrected.tap_id, late_tap.received_ms, m.posted_ms)
            else:
                charge = day.charge_at(corrected.tap_id, late_id, m.posted_ms)
        late = None if late_tap is None else explain.LateTap(
            late_tap.tap_id, policy.local_time(late_tap.ts).strftime("%H:%M"),
            late_tap.route_id, late_tap.kind, late_tap.service_date)
        return explain.correction_sentence(
            charge, m.amount, late, lang,
            corrected_on=corrected.service_date if corrected is not None else "",
            boarded=boarding(policy, charge, by_id))
    if line.type == "topup":
        return explain.topup_sentence(m.amount, m.reference, lang)
    if line.type == "refund":
        return explain.refund_sentence(m.amount, dispute_of(m), lang)
    if line.type == "transfer_in":
        return explain.transfer_in_sentence(m.amount, m.card, lang)
    if line.type == "transfer_out":
        return explain.transfer_out_sentence(m.amount, m.reference, lang)
    if m.kind == "adjustment":
        return explain.adjustment_sentence(m.amount, m.reference, lang)
    return explain.movement_sentence(m.kind, m.amount, lang)


# -- reading it ----------------------------------------------------------------------


class Postings(NamedTuple):
    """What one pass over the card's postings says of a window."""

    opening: int  # the sum of the postings of the lines dated before the window
    movements: list[Movement]  # the window's lines other than fares
    fares: int  # how many fares the window holds
    fares_sum: int  # and what they moved


def _postings(conn: Connection, account_id: int, window: Window) -> Postings:
    """One pass over the card's postings, each with its entry: the window's movements
    other than fares as rows, and as one sum each (made by the database) the lines
    before the window and the window's fares, which `_fares` reads one by one.

    (Grouping the one pass instead, each movement a group of its own, took half as long
    again as these scans of the materialised pass, on PostgreSQL.)
    """
    e, p = Entry.__table__.c, Posting.__table__.c
    fare = e.kind == "fare"
    first, last = window.first_text, window.last_text
    part = case((or_(and_(fare, e.service_date < first),
                     and_(~fare, e.posted_ms < window.start_ms)), BEFORE),
                (and_(fare, e.service_date <= last), FARES),
                (and_(~fare, e.posted_ms < window.end_ms), MOVED), else_=AFTER)
    moved = (select(e.id, e.kind, e.idem_key, e.posted_ms, p.amount, e.tap_id, e.reference,
                    e.service_date, e.route_id, e.category, e.card, part.label("part"))
             .select_from(Posting.__table__.join(Entry.__table__, e.id == p.entry_id))
             .where(p.account_id == account_id).cte("moved"))
    m = moved.c
    nothing = null()
    # (A sum of bigints is a numeric in PostgreSQL: cast, or the union's every amount
    # would come back a Decimal.)
    total = cast(func.coalesce(func.sum(m.amount), 0), BigInteger)
    rows = conn.execute(union_all(
        select(m.id, m.kind, m.idem_key, m.posted_ms, m.amount, m.tap_id, m.reference,
               m.service_date, m.route_id, m.category, m.card, m.part).where(m.part == MOVED),
        *(select(cast(func.count(), BigInteger), nothing, nothing, nothing, total, nothing,
                 nothing, nothing, nothing, nothing, nothing, literal(which))
          .where(m.part == which) for which in (BEFORE, FARES)))).all()
    sums = {row[11]: (int(row[0]), int(row[4])) for row in rows if row[11] != MOVED}
    return Postings(sums[BEFORE][1], [Movement._make(row[:11]) for row in rows
                                      if row[11] == MOVED], *sums[FARES])


def _fares(conn: Connection, card: str, window: Window) -> list[Movement]:
    """The window's fares, from the card's entries (`ix_entries_card_service_date`): a
    fare entry moves its amount, negated, on its card."""
    e = Entry.__table__.c
    rows = conn.execute(
        select(e.id, e.posted_ms, -e.amount, e.tap_id, e.service_date, e.route_id,
               e.category)
        .where(e.card == card, e.kind == "fare", e.service_date >= window.first_text,
               e.service_date <= window.last_text)).all()
    return [Movement(entry_id, "fare", f"tap:{tap_id}", posted, amount, tap_id, None, day,
                     route, category, card)
            for entry_id, posted, amount, tap_id, day, route, category in rows]


def _posted_fares(conn: Connection, account_id: int, window: Window) -> list[Movement]:
    """The window's fares as the card's postings hold them: only when those read from
    the entries do not add up to the postings (data written other than by the tap path)."""
    e, p = Entry.__table__.c, Posting.__table__.c
    rows = conn.execute(
        select(e.id, e.kind, e.idem_key, e.posted_ms, p.amount, e.tap_id, e.reference,
               e.service_date, e.route_id, e.category, e.card)
        .select_from(Posting.__table__.join(Entry.__table__, e.id == p.entry_id))
        .where(p.account_id == account_id, e.kind == "fare",
               e.service_date >= window.first_text, e.service_date <= window.last_text)
    ).all()
    return [Movement._make(row) for row in rows]


def _taps(conn: Connection, card: str, window: Window, also: Iterable[str],
          tap_ids: Iterable[str] = ()) -> list[TapRow]:
    """The card's taps of the window's days, of `also` and those named in `tap_ids`
    (`ix_taps_card_service_date`)."""
    t = TapRecord.__table__.c
    wanted = [and_(t.service_date >= window.first_text, t.service_date <= window.last_text)]
    extra = sorted(set(also))
    if extra:
        wanted.append(one_of(conn, t.service_date, extra))
    named = sorted(set(tap_ids))
    if named:
        wanted.append(one_of(conn, t.tap_id, named))
    rows = conn.execute(
        select(t.tap_id, t.device_id, t.seq, t.ts, t.vehicle_id, t.route_id, t.kind,
               t.accepted, t.reason, t.lat_e6, t.lon_e6, t.service_date, t.status,
               t.received_ms)
        .where(t.card == card, t.status.in_(SHOWN_TAPS), or_(*wanted))
    ).all()
    return [TapRow._make(row) for row in rows]


def day_totals(conn: Connection, card: str, first: str, last: str) -> DayTotals:
    """What the ledger holds for the card's taps on each service date `first`..`last`:
    its fare and correction entries (the entries that name a tap), summed by the
    database per date and posting time (`ix_entries_card_service_date`; the tap path
    posts a batch at one instant, so a card has a few sums a day)."""
    e = Entry.__table__.c
    rows = conn.execute(
        select(e.service_date, e.posted_ms, cast(func.sum(e.amount), BigInteger))
        .where(e.card == card, e.tap_id.is_not(None), e.service_date >= first,
               e.service_date <= last)
        .group_by(e.service_date, e.posted_ms)).all()
    return DayTotals((day, int(posted), int(total)) for day, posted, total in rows
                     if day is not None)


def load_stops(conn: Connection) -> StopIndex:
    """Every stop of the network, indexed."""
    s = Stop.__table__.c
    return StopIndex(StopRow._make(row) for row in conn.execute(
        select(s.stop_id, s.name, s.lat_e6, s.lon_e6)).all())


def card_statement(session: Session, policy: FarePolicy, card: str,
                   first: date | None = None, last: date | None = None,
                   lang: str = explain.DEFAULT_LANGUAGE, today: date | None = None,
                   now_ms: int | None = None, stops: StopIndex | None = None) -> Statement:
    """A card's statement for service dates `first`..`last` (see `statement_window`).

    Raises CardNotFound, or StatementError for a window that cannot be asked for. No
    rider is assumed: the caller decides whose card may be read. Stops come from
    `stops` when given (`Statements` keeps them), else from one query of them all.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    window = statement_window(policy, first, last,
                              policy.service_date(now) if today is None else today)
    # Read-only from the start (on SQLite, no write lock), unless the caller has begun.
    conn = (session.connection() if session.in_transaction()
            else session.connection(execution_options=READS_ONLY))
    c = Card.__table__.c
    found = conn.execute(select(c.account_id, c.category).where(c.card == card)).first()
    if found is None:
        raise CardNotFound(f"no card {card}")
    account_id, category = found
    postings = _postings(conn, account_id, window)
    movements = postings.movements
    also = {m.service_date for m in movements
            if m.kind == "correction" and m.service_date
            and not window.holds_date(m.service_date)}
    # The tap behind each correction, which may be of another day (a late tap that
    # moved its week's or month's totals).
    causes = {late for m in movements if m.kind == "correction"
              and (late := correction_late_tap(m)) is not None}
    taps = _taps(conn, card, window, also, causes)
    held = day_totals(conn, card, period_start([window.first_text, *also]),
                      max([window.last_text, *also]))
    fares = _fares(conn, card, window)
    if (len(fares), sum(f.amount for f in fares)) != (postings.fares, postings.fares_sum):
        fares = _posted_fares(conn, account_id, window)
    movements = movements + fares
    r = CardReplacement.__table__.c
    gone = conn.execute(select(r.new_card, r.created_ms).where(r.old_card == card)).first()
    refunds = {n for m in movements if m.kind == "refund" and (n := dispute_of(m)) is not None}
    disputes: dict[int, str | None] = {}
    if refunds:
        # By id alone: the ids come from this card's own refund entries, and a refund of
        # a lost card's dispute is credited to the card that replaced it.
        d = Dispute.__table__.c
        disputes = {int(i): tap for i, tap in conn.execute(
            select(d.id, d.tap_id).where(one_of(conn, d.id, sorted(refunds))))}
    points = {t.tap_id: (t.lat_e6, t.lon_e6) for t in taps if window.holds_date(t.service_date)}
    for m in movements:  # a correction's line names its tap's stop too
        if m.kind == "correction" and m.tap_id:
            points.update((t.tap_id, (t.lat_e6, t.lon_e6)) for t in taps
                          if t.tap_id == m.tap_id)
    return assemble(policy, card, category, postings.opening, movements,
                    taps, window, lang, replaced=Replacement(*gone) if gone else None,
                    disputes=disputes,
                    stops=(stops or load_stops(conn)).nearest(points), held=held)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a statement is made.

    A two-year statement makes some 30,000 small objects (rows, lines, charges), each
    counted towards the collector's next pass: 40 passes a statement, one in ten of the
    older generation, and now and then a pass over the whole heap (measured, 18 ms a
    statement on average and 47 ms at worst, of 87 ms). Nothing made here forms a
    cycle, so nothing waits for the collector; held off, the objects are counted as one
    pass when it is back on. The collector is the process's: other threads' objects
    made meanwhile are collected then, a statement later at most.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


class Statements:
    """The statement use cases, each in a session of its own that only reads.

    The network's stops are kept, indexed, and read again every `stops_ttl_s` (the
    network changes with `transit gtfs import` alone; the map's network is kept the
    same way): a two-year statement then names its stops without a query (measured
    7 ms of its time: the query of the cells around 3,000 taps and their index).
    """

    def __init__(self, sessions: Sessions, policy: FarePolicy,
                 stops_ttl_s: float = STOPS_TTL_S) -> None:
        self.sessions = sessions
        self.policy = policy
        self.stops_ttl_s = stops_ttl_s
        self._stops: tuple[float, StopIndex] | None = None

    def stop_index(self, conn: Connection) -> StopIndex:
        """The stops, read again once they are older than `stops_ttl_s`."""
        kept = self._stops
        if kept is None or time.monotonic() - kept[0] > self.stops_ttl_s:
            # Two requests may both read them: the later copy wins, both are right.
            kept = self._stops = (time.monotonic(), load_stops(conn))
        return kept[1]

    def of_card(self, card: str, first: date | None = None, last: date | None = None,
                lang: str = explain.DEFAULT_LANGUAGE, account_id: int | None = None
                ) -> Statement:
        """A card's statement; with `account_id`, only if the card is linked to that
        account (CardNotFound otherwise, as for a card that does not exist)."""
        with self.sessions() as session:
            # Read-only from the start: on SQLite this takes no write lock.
            conn = session.connection(execution_options=READS_ONLY)
            if conn.dialect.name == "postgresql":
                # A card's postings are a few thousand rows: a parallel worker costs more
                # to start than it saves (measured: the two-year join 10.9 ms with one,
                # 6.6 ms without). For this read-only transaction alone.
                conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            if account_id is not None:
                own_card(session, account_id, card)
            with collector_paused():
                return card_statement(session, self.policy, card, first, last, lang,
                                      stops=self.stop_index(conn))
