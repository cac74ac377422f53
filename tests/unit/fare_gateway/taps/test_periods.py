"""A late tap that moves a week's cap, through the tap service on the fake store, and the
card's week and month totals (`fare_gateway/taps/periods.py`) it starts from.

The worked example, in rupiah, under the built-in policy (5,000 a journey, daily cap
10,000, weekly 50,000, monthly 180,000; the taps at 08:00 and 10:30 are two journeys, 150
minutes apart). A regular card rides the week of Monday 17 November 2025: 08:00 on
Monday, then 08:00 and 10:30 every day from Tuesday to Saturday, and 08:00 on Sunday.
Ten thousand a day is the most a day can cost, so the weekly cap cannot bind before
Friday: it binds on Saturday. The card goes on riding on Tuesday 25, Wednesday 26 and
Thursday 27.

Monday's 10:30 tap was made on a bus that then stayed offline: it arrives on the next
Wednesday evening, 9 days late, before Thursday's taps. The gateway here believes taps
up to 10 days old (an operator's `TRANSIT_TAP_MAX_AGE_DAYS`; the contract's default is
7). Every other batch arrives at 21:00 on the day its taps were made.

Expected, worked by hand (day / week before the tap -> charge):

    Mon 17 08:00          0 /      0 -> 5000
    Tue..Fri 08:00, 10:30 each day 10,000; week 45,000 after Friday
    Sat 22 08:00          0 / 45,000 -> 5000    (week 50,000)
    Sat 22 10:30       5000 / 50,000 -> 0       (weekly cap)
    Sun 23 08:00          0 / 50,000 -> 0       (weekly cap)
    Tue 25 08:00, Wed 26 08:00 and 10:30 -> 5000 each (a new week; November 65,000)

With Monday's 10:30 tap: Monday costs 10,000, so the week holds 50,000 before Saturday,
and Saturday's 08:00 tap costs min(5000, 10000 - 0, 50000 - 50000) = 0. The late tap is
charged 5,000 and Saturday's 08:00 tap gets a correction of -5,000 on Saturday's service
date: the week stays at 50,000, November at 65,000, the balance where it was.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from fare_gateway.fares.engine import Earlier, PricedTap, price_card
from fare_gateway.fares.policy import month_of, week_of
from fare_gateway.metrics import Metrics
from fare_gateway.taps import Outcome, TapService
from fare_gateway.taps.periods import CardPeriods, PeriodKey
from fare_gateway.taps.planning import CardDay, priced_tap
from ledger.domain import EntryDraft, TapAmount
from tests.unit.fare_gateway.taps.fakes import (
    BUS,
    KRL_TRAIN,
    OTHER_BUS,
    SBY_POLICY,
    FakeDevices,
    FakeRoutes,
    FakeStore,
    FakeUnitOfWork,
    at,
    card,
    tap,
)
from tests.unit.fare_gateway.taps.test_service import inbound, said
from transit.topics import Topics
from transit.window import EventWindow
from transit.wire import Tap

A = "04A0000000000001"
FUNDS = 100_000
MAX_AGE_DAYS = 10  # Monday's tap comes 9 days and 11 hours after it was made


class LateMonday(NamedTuple):
    """The worked example's taps, made afresh (new seqs) for each test."""

    mon: Tap
    late: Tap  # Monday 17, 10:30: arrives on Wednesday 26 at 21:30
    tue_to_fri: list[Tap]  # 08:00 and 10:30 each day
    sat: list[Tap]  # 08:00 and 10:30
    sun: Tap
    tue_25: Tap
    wed_26: list[Tap]  # 08:00 and 10:30
    thu_27: Tap  # arrives on Thursday, with the late tap sent again

    def on_time(self) -> list[Tap]:
        """Every tap but the late one, in the order they were made."""
        return [self.mon, *self.tue_to_fri, *self.sat, self.sun, self.tue_25, *self.wed_26]

    def arrivals(self) -> list[tuple[int, list[Tap]]]:
        """(the gateway's clock, the batch) until the late tap has come."""
        by_day: dict[int, list[Tap]] = {}
        for t in self.on_time():
            by_day.setdefault(SBY_POLICY.service_date(t.ts).day, []).append(t)
        return [*((at(day, 21), taps) for day, taps in sorted(by_day.items())),
                (at(26, 21, 30), [self.late])]


def late_monday(token: str = A) -> LateMonday:
    """The taps of the worked example for card `token`."""
    def two(day: int) -> list[Tap]:
        return [tap(token, at(day, 8), BUS), tap(token, at(day, 10, 30), OTHER_BUS)]

    return LateMonday(
        mon=tap(token, at(17, 8), BUS), late=tap(token, at(17, 10, 30), OTHER_BUS),
        tue_to_fri=[t for day in (18, 19, 20, 21) for t in two(day)], sat=two(22),
        sun=tap(token, at(23, 8), BUS), tue_25=tap(token, at(25, 8), BUS), wed_26=two(26),
        thu_27=tap(token, at(27, 8), BUS))


# -- the service, with what each batch asked the store to load --------------------------

@dataclass
class Loads:
    """What the batches asked to load: each card's first day, the card-days whose ledger
    amounts were read, the week and month totals read."""

    first: list[dict[str, str]] = field(default_factory=list)
    days: list[set[CardDay]] = field(default_factory=list)
    periods: list[set[PeriodKey]] = field(default_factory=list)


class NotingUnit(FakeUnitOfWork):
    """The fake unit of work, noting what it is asked to load."""

    def __init__(self, store: FakeStore, loads: Loads) -> None:
        super().__init__(store)
        self.loads = loads

    def charged_taps(self, first: Mapping[str, str], exclude: Collection[str]
                     ) -> dict[CardDay, dict[str, PricedTap]]:
        self.loads.first.append(dict(first))
        return super().charged_taps(first, exclude)

    def tap_amounts(self, days: Collection[CardDay]) -> dict[str, TapAmount]:
        self.loads.days.append(set(days))
        return super().tap_amounts(days)

    def period_totals(self, keys: Collection[PeriodKey]) -> dict[PeriodKey, int]:
        self.loads.periods.append(set(keys))
        return super().period_totals(keys)


@dataclass
class Gateway:
    """A tap service on a fake store, its clock set by the test."""

    store: FakeStore = field(default_factory=FakeStore)
    loads: Loads = field(default_factory=Loads)
    now: int = 0

    def __post_init__(self) -> None:
        self.store.state.cards = {A: card(A, FUNDS)}
        self.service = TapService(
            lambda: NotingUnit(self.store, self.loads), SBY_POLICY,
            FakeDevices(BUS, OTHER_BUS, KRL_TRAIN), FakeRoutes({"R1": "SBY"}), Topics(),
            Metrics(), window=EventWindow(max_age_days=MAX_AGE_DAYS),
            clock=lambda: self.now)

    def arrive(self, now: int, taps: list[Tap]) -> list[Outcome]:
        """One batch, handled when the gateway's clock reads `now`."""
        self.now = now
        return self.service.handle([inbound(t) for t in taps])

    def drafts_since(self, count: int) -> list[tuple[str | None, str, int, str | None]]:
        return [(d.idem_key, d.kind, d.amount, d.service_date)
                for d in self.store.state.entries[count:]]


def ledger_periods(entries: list[EntryDraft]) -> dict[PeriodKey, int]:
    """What the entries that name a tap add up to per card, week and month."""
    totals: dict[PeriodKey, int] = {}
    for d in entries:
        if d.tap_id is None or d.card is None or d.service_date is None:
            continue
        day = date.fromisoformat(d.service_date)
        for key in ((d.card, "week", week_of(day).isoformat()),
                    (d.card, "month", month_of(day).isoformat())):
            totals[key] = totals.get(key, 0) + d.amount
    return totals


WEEK_17 = (A, "week", "2025-11-17")
WEEK_24 = (A, "week", "2025-11-24")
NOVEMBER = (A, "month", "2025-11-01")


def test_a_late_monday_tap_moves_the_weekly_cap_and_corrects_saturday() -> None:
    gw = Gateway()
    taps = late_monday()
    receipts = [said(gw.arrive(now, batch)) for now, batch in taps.arrivals()[:-1]]
    assert receipts == [
        [("charged", 5000, 95_000)],                               # Mon 17
        [("charged", 5000, 85_000)] * 2,                           # Tue 18
        [("charged", 5000, 75_000)] * 2,                           # Wed 19
        [("charged", 5000, 65_000)] * 2,                           # Thu 20
        [("charged", 5000, 55_000)] * 2,                           # Fri 21: week 45,000
        [("charged", 5000, 50_000), ("charged", 0, 50_000)],       # Sat 22: week 50,000
        [("charged", 0, 50_000)],                                  # Sun 23: weekly cap
        [("charged", 5000, 45_000)],                               # Tue 25
        [("charged", 5000, 35_000)] * 2]                           # Wed 26
    assert gw.store.state.periods == {WEEK_17: 50_000, WEEK_24: 15_000, NOVEMBER: 65_000}

    # Monday's 10:30 tap, on the evening of Wednesday 26.
    posted = len(gw.store.state.entries)
    now, batch = taps.arrivals()[-1]
    assert said(gw.arrive(now, batch)) == [("charged", 5000, 35_000)]
    assert gw.drafts_since(posted) == [
        (f"tap:{taps.late.tap_id}", "fare", 5000, "2025-11-17"),
        (f"corr:{taps.sat[0].tap_id}:{taps.late.tap_id}", "correction", -5000, "2025-11-22")]
    # It loaded every day of the card from its own on, the next week's too.
    assert gw.loads.first[-1] == {A: "2025-11-17"}
    assert gw.loads.days[-1] == {(A, f"2025-11-{d}") for d in (17, 18, 19, 20, 21, 22, 23,
                                                                25, 26)}
    assert gw.store.state.periods == {WEEK_17: 50_000, WEEK_24: 15_000, NOVEMBER: 65_000}
    assert gw.store.state.cards[A].balance == 35_000

    # Thursday's tap, and the late one delivered again: only Thursday is loaded.
    posted = len(gw.store.state.entries)
    assert said(gw.arrive(at(27, 21), [taps.thu_27, taps.late])) == [
        ("charged", 5000, 30_000), ("duplicate", 5000, 30_000)]
    assert gw.drafts_since(posted) == [(f"tap:{taps.thu_27.tap_id}", "fare", 5000,
                                        "2025-11-27")]
    assert gw.loads.first[-1] == {A: "2025-11-27"}
    assert gw.loads.days[-1] == {(A, "2025-11-27")}
    assert gw.loads.periods[-1] == {WEEK_24, NOVEMBER}

    # Each tap costs what section 5's pure function says of all of them, and the kept
    # totals are the ledger's.
    everything = [*taps.on_time(), taps.late, taps.thu_27]
    expected = price_card(SBY_POLICY, "regular", [priced_tap(t) for t in everything])
    assert {t.tap_id: gw.store.fare_of(t.tap_id) for t in everything} == {
        t.tap_id: expected.amount(t.tap_id) for t in everything}
    assert [gw.store.fare_of(t.tap_id) for t in taps.sat] == [0, 0]
    assert gw.store.state.periods == ledger_periods(gw.store.state.entries) == {
        WEEK_17: 50_000, WEEK_24: 20_000, NOVEMBER: 70_000}
    assert gw.store.state.cards[A].balance == FUNDS - expected.total == 30_000


def test_a_late_tap_that_leaves_its_days_total_alone_corrects_nothing() -> None:
    gw = Gateway()
    taps = late_monday()
    for now, batch in taps.arrivals()[:-1]:
        gw.arrive(now, batch)
    posted = len(gw.store.state.entries)
    # Tuesday 18 at 13:00, arriving on Wednesday 26: Tuesday has paid its 10,000 already.
    late = tap(A, at(18, 13), BUS)
    assert said(gw.arrive(at(26, 21, 30), [late])) == [("charged", 0, 35_000)]
    assert gw.drafts_since(posted) == [(f"tap:{late.tap_id}", "fare", 0, "2025-11-18")]
    assert gw.store.state.periods == ledger_periods(gw.store.state.entries) == {
        WEEK_17: 50_000, WEEK_24: 15_000, NOVEMBER: 65_000}


# -- CardPeriods: which days a new tap prices again --------------------------------------

def book_of(taps: list[Tap], first: str) -> CardPeriods:
    """A card's days from `first` on, as the batch would load them, holding what the
    ledger would (section 5's charges), with the totals kept for every day."""
    priced = [priced_tap(t) for t in taps]
    charges = price_card(SBY_POLICY, "regular", priced)
    days: dict[str, dict[str, PricedTap]] = {}
    for t in priced:
        day = SBY_POLICY.service_date(t.ts).isoformat()
        if day >= first:
            days.setdefault(day, {})[t.tap_id] = t
    held = {t.tap_id: charges.amount(t.tap_id) for t in priced}
    stored = {**{("week", d.isoformat()): total for d, total in charges.weeks.items()},
              **{("month", d.isoformat()): total for d, total in charges.months.items()}}
    return CardPeriods(SBY_POLICY, "regular", days, held, stored)


def test_a_new_tap_prices_again_the_later_days_it_can_change_and_no_others() -> None:
    taps = late_monday()
    book = book_of(taps.on_time(), "2025-11-17")
    priced = {d: price.total for d, price in book.add("2025-11-17", priced_tap(taps.late))}
    # Monday and Saturday change. Tuesday to Friday start from 5,000 more and cost the
    # same (pricing them again is allowed, not required); Saturday costs 5,000 less, so
    # Sunday and the next week start where they did: left alone.
    assert {"2025-11-17", "2025-11-22"} <= set(priced) <= {
        "2025-11-17", "2025-11-18", "2025-11-19", "2025-11-20", "2025-11-21", "2025-11-22"}
    expected = price_card(SBY_POLICY, "regular",
                          [priced_tap(t) for t in [*taps.on_time(), taps.late]])
    assert priced == {d: expected.days[date.fromisoformat(d)].total for d in priced}
    assert book.totals == {d.isoformat(): day.total for d, day in expected.days.items()}
    assert book.earlier("2025-11-23") == Earlier(week=50_000, month=50_000)
    assert book.earlier("2025-11-25") == Earlier(week=0, month=50_000)


def test_a_new_tap_that_leaves_its_days_total_alone_prices_no_later_day() -> None:
    taps = late_monday()
    book = book_of(taps.on_time(), "2025-11-18")
    priced = {d: price.total for d, price in book.add("2025-11-18",
                                                      priced_tap(tap(A, at(18, 13), BUS)))}
    assert priced == {"2025-11-18": 10_000}


def test_days_before_those_loaded_count_from_the_kept_totals() -> None:
    taps = late_monday()
    # Loaded from Saturday on: Monday to Friday (45,000) are known only by the totals.
    book = book_of(taps.on_time(), "2025-11-22")
    assert set(book.days) == {"2025-11-22", "2025-11-23", "2025-11-25", "2025-11-26"}
    assert book.earlier("2025-11-22") == Earlier(week=45_000, month=45_000)
    assert book.earlier("2025-11-23") == Earlier(week=50_000, month=50_000)
    assert book.earlier("2025-11-26") == Earlier(week=5000, month=55_000)
    # A tap of Saturday evening: the week is spent.
    evening = priced_tap(tap(A, at(22, 19), BUS))
    priced = dict(book.add("2025-11-22", evening))
    assert list(priced) == ["2025-11-22"]
    assert priced["2025-11-22"].charges[evening.tap_id].cap == "weekly"
