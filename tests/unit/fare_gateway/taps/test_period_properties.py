"""Property: whatever order, batching and duplication taps of several weeks arrive in,
the tap service charges each one exactly what contract section 5's pure function
(`price_card`) says of all the card's taps, and keeps the week and month totals it says.

One to three cards, each of any category, ride on a few days of two to six weeks that
span a month's end (a year's, for some), on two buses of a flat route and two trains of a
distance route with exits, missing exits and inferred ones, under caps tight enough to
bind by the day, the week and the month. Some taps are denied at the reader, some carry
no position. Each tap arrives up to six days after it was made, some are sent again;
batches come in arrival order, each handled when the gateway's clock reads its latest
arrival and holding no tap more than seven days older than that (the contract's window,
`TRANSIT_TAP_MAX_AGE_DAYS`): no tap is turned away.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from fare_gateway.fares.engine import CardPrice, price_card
from fare_gateway.fares.policy import month_of, parse_policy, week_of
from fare_gateway.metrics import Metrics
from fare_gateway.taps import TapService
from fare_gateway.taps.planning import priced_tap
from ledger.domain import EntryDraft
from tests.unit.fare_gateway.taps.fakes import (
    BUS,
    KRL_TRAIN,
    OTHER_BUS,
    WIB,
    FakeDevices,
    FakeRoutes,
    FakeStore,
    card,
    tap,
)
from tests.unit.fare_gateway.taps.test_periods import ledger_periods
from tests.unit.fare_gateway.taps.test_service import inbound
from transit.topics import Topics
from transit.wire import Tap

POLICY = parse_policy(tomllib.loads("""
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student", "senior"]
default_category = "regular"

[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000, student = 1500 }
max = { regular = 13000, student = 6000 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 90 }

[[fares]]
routes = ["*"]
amount = { regular = 5000, student = 2500, senior = 1000 }

[transfers]
window_minutes = 120
max_transfers = 2

[caps]
daily = { regular = 14000, student = 6000 }
weekly = { regular = 30000, student = 12000, senior = 4000 }
monthly = { regular = 40000, student = 15000, senior = 6000 }
"""))

OTHER_TRAIN = ("KRL-1002-A", "KRL-1002", bytes(range(96, 128)))
BUSES = (BUS, OTHER_BUS)
TRAINS = (KRL_TRAIN, OTHER_TRAIN)
LON_E6 = 106_800_000
# Stations along the meridian 106.8 E, 0 to about 55 km apart; (0, 0) is a tap without a fix.
STATIONS = ((-6_200_000, LON_E6), (-6_290_000, LON_E6), (-6_425_000, LON_E6),
            (-6_700_000, LON_E6), (0, 0))
MONDAYS = (date(2025, 10, 20), date(2025, 10, 27), date(2025, 12, 22), date(2026, 1, 26))
FUNDS = 10_000_000  # never short: no card goes on the deny list
DAY_MS, MINUTE_MS = 86_400_000, 60_000
WINDOW_MS = 7 * DAY_MS
# Minutes after the service day's 03:00 start: 07:00 and two minutes later (a repeat on
# the same vehicle, inclusive), 07:30, 08:30 (the inferred exit's 90 minutes), 09:00 and
# 09:01 (the transfer window's 120 minutes, and just past), 13:00, 18:00, and 02:59 the
# next morning (still the same service day).
MOMENTS = (240, 242, 270, 330, 360, 361, 600, 900, 1439)


@dataclass(frozen=True)
class Scenario:
    """Cards, their taps, and the batches the taps (some twice) arrive in."""

    categories: dict[str, str]  # card -> category
    taps: list[Tap]
    batches: list[tuple[int, list[Tap]]]  # (the gateway's clock, the batch), in order


def day_start_ms(day: date) -> int:
    """Epoch ms of the 03:00 start of a service day in Jakarta."""
    return int(datetime.combine(day, time(3), WIB).timestamp() * 1000)


@st.composite
def rides(draw: st.DrawFn, token: str, first: date, days: int) -> list[dict[str, object]]:
    """One card's taps, as keyword arguments of `tap` (seqs are given later)."""
    out: list[dict[str, object]] = []
    for offset in draw(st.lists(st.integers(0, days - 1), min_size=1, max_size=6,
                                unique=True)):
        start = day_start_ms(first + timedelta(days=offset))
        for _ in range(draw(st.integers(1, 4))):
            # Mostly at the moments that matter, now and then anywhere in the day.
            minute = draw(st.sampled_from(MOMENTS) if draw(st.integers(0, 3))
                          else st.integers(0, 1439))
            ts = start + minute * MINUTE_MS + draw(st.sampled_from((0, 30_000)))
            lat, lon = draw(st.sampled_from(STATIONS))
            # One tap in ten denied at the reader: kept, never charged.
            denied = {} if draw(st.integers(0, 9)) else {"accepted": False,
                                                         "reason": "denylisted"}
            if draw(st.booleans()):
                out.append(dict(card=token, ts=ts, bus=draw(st.sampled_from(BUSES)),
                                lat_e6=lat, lon_e6=lon, **denied))
                continue
            train = draw(st.sampled_from(TRAINS))
            out.append(dict(card=token, ts=ts, bus=train, route_id="KRL-BOGOR",
                            lat_e6=lat, lon_e6=lon, **denied))
            if draw(st.booleans()):
                lat, lon = draw(st.sampled_from(STATIONS))
                out.append(dict(card=token, ts=ts + draw(st.integers(5, 150)) * MINUTE_MS,
                                bus=train, route_id="KRL-BOGOR", kind="exit", lat_e6=lat,
                                lon_e6=lon))
    return out


def signed(made: list[dict[str, object]]) -> list[Tap]:
    """The taps, each device's seqs rising with time as a validator's do."""
    seqs: dict[object, int] = {}
    taps = []
    for kwargs in sorted(made, key=lambda k: (k["ts"], k["card"])):
        device = kwargs["bus"]
        seqs[device] = seqs.get(device, 0) + 1
        taps.append(tap(seq=seqs[device], **kwargs))  # type: ignore[arg-type]
    return taps


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    first = draw(st.sampled_from(MONDAYS))
    days = 7 * draw(st.integers(2, 6))
    categories = {f"04C00000000000{i:02d}": draw(st.sampled_from(POLICY.categories))
                  for i in range(draw(st.integers(1, 3)))}
    taps = signed([r for token in categories for r in draw(rides(token, first, days))])
    # Each copy sent: (arrival, a tiebreak, the tap). Mostly within the hour, some days late.
    sends = []
    for t in taps:
        delay = draw(st.one_of(st.integers(0, 60), st.integers(0, 6 * 1440))) * MINUTE_MS
        sends.append((t.ts + delay, draw(st.integers(0, 9)), t))
        if draw(st.integers(0, 4)) == 0:  # sent again: its receipt was lost
            again = min(WINDOW_MS - MINUTE_MS,
                        delay + draw(st.integers(0, 2 * 1440)) * MINUTE_MS)
            sends.append((t.ts + again, draw(st.integers(0, 9)), t))
    sends.sort(key=lambda s: (s[0], s[1], s[2].tap_id))
    batches: list[tuple[int, list[Tap]]] = []
    oldest = 0
    for arrival, _, t in sends:
        # A new batch now and then, and whenever this one's clock would leave a tap of
        # it more than seven days behind.
        if not batches or draw(st.integers(0, 3)) == 0 or arrival - oldest > WINDOW_MS:
            batches.append((arrival, []))
            oldest = t.ts
        batches[-1] = (arrival, [*batches[-1][1], t])
        oldest = min(oldest, t.ts)
    return Scenario(categories, taps, batches)


def expected(scenario: Scenario) -> dict[str, CardPrice]:
    """Section 5's charges of each card's accepted taps."""
    return {token: price_card(POLICY, category, [priced_tap(t) for t in scenario.taps
                                                  if t.card == token and t.accepted])
            for token, category in scenario.categories.items()}


def within(total: int, cap: int | None) -> bool:
    return cap is None or total <= cap


def day_totals(entries: list[EntryDraft]) -> dict[tuple[str, str], int]:
    """What the entries that name a tap add up to per card and service date."""
    totals: dict[tuple[str, str], int] = {}
    for d in entries:
        if d.tap_id is not None and d.card is not None and d.service_date is not None:
            key = (d.card, d.service_date)
            totals[key] = totals.get(key, 0) + d.amount
    return totals


@settings(max_examples=30, deadline=None)
@given(scenarios())
def test_any_arrival_charges_section_5s_pure_function(scenario: Scenario) -> None:
    store = FakeStore()
    store.state.cards = {token: card(token, FUNDS, category, account_id=i + 1)
                         for i, (token, category) in enumerate(scenario.categories.items())}
    clock = [0]
    service = TapService(store.unit, POLICY, FakeDevices(*BUSES, *TRAINS),
                         FakeRoutes({"R1": "SBY", "KRL-BOGOR": "KAI"}), Topics(), Metrics(),
                         clock=lambda: clock[0])
    for now, batch in scenario.batches:
        clock[0] = now
        outcomes = service.handle([inbound(t) for t in batch])
        assert {o.status for o in outcomes} <= {"charged", "not_charged", "duplicate"}

    want = expected(scenario)
    entries = store.state.entries
    assert {t.tap_id: store.fare_of(t.tap_id) for t in scenario.taps} == {
        t.tap_id: want[t.card].amount(t.tap_id) for t in scenario.taps}
    for token, price in want.items():
        assert store.state.cards[token].balance == FUNDS - price.total
    kept = store.state.periods
    assert kept == ledger_periods(entries)
    assert {k: v for k, v in kept.items() if v} == {
        (token, kind, start.isoformat()): total for token, price in want.items()
        for kind, totals in (("week", price.weeks), ("month", price.months))
        for start, total in totals.items() if total}

    # No day, week or month of any card over its cap.
    for (token, day), total in day_totals(entries).items():
        daily, weekly, monthly = POLICY.caps(scenario.categories[token])
        service_date = date.fromisoformat(day)
        week = kept[(token, "week", week_of(service_date).isoformat())]
        month = kept[(token, "month", month_of(service_date).isoformat())]
        assert total >= 0
        assert within(total, daily) and within(week, weekly) and within(month, monthly)
