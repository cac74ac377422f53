"""The demo's closed day as written (hardware_sim/history.py): every event inside the
business day, each bus's taps reaching the gateway in the order its spool numbers them,
the one late tap arriving after the later tap it re-prices, money on every card before
its first ride, and every stop on its bus's corridor."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fare_gateway.fares.policy import builtin_policy
from hardware_sim.history import (
    AGUS,
    DAY,
    RIDERS,
    Ride,
    Topup,
    stop_position,
    timeline,
)
from ledger.settlement import BusinessCalendar

TZ = "Asia/Jakarta"
DAY_D = date(2026, 11, 30)
# Mirrors the demo's assignment of corridors to bus numbers (hardware_sim/demo.py).
ROUTE_OF_BUS = {1: "R1", 2: "R2", 3: "TS1"}


def test_every_event_falls_in_the_business_day_and_no_tap_comes_from_the_future() -> None:
    policy = builtin_policy()
    calendar = BusinessCalendar(policy.timezone, policy.service_day_start_min)
    start, end = calendar.bounds(DAY_D)
    steps = timeline(DAY_D, TZ)
    assert len(steps) == len(DAY)
    for step in steps:
        assert start <= step.ts <= step.posted_ms < end, step
        # A tap's service day is the business day it is posted in (no midnight taps).
        assert policy.service_date(step.ts) == DAY_D
    assert [s.posted_ms for s in steps] == sorted(s.posted_ms for s in steps)
    # The first event is a kiosk top-up at 05:02 local time.
    first = steps[0]
    assert isinstance(first.event, Topup)
    assert datetime.fromtimestamp(first.posted_ms / 1000, ZoneInfo(TZ)).time().isoformat(
        ) == "05:02:00"


def test_each_bus_sends_its_taps_in_the_order_it_made_them() -> None:
    steps = timeline(DAY_D, TZ)
    for bus in ROUTE_OF_BUS:
        taps = [s.ts for s in steps if isinstance(s.event, Ride) and s.event.bus == bus]
        assert taps == sorted(taps), bus  # the spool numbers them as they are sent
        assert taps


def test_the_late_tap_arrives_after_the_later_tap_it_reprices() -> None:
    steps = timeline(DAY_D, TZ)
    agus = [s for s in steps if isinstance(s.event, Ride) and s.event.card == AGUS.card]
    assert [(s.event.bus, s.event.tapped.isoformat()) for s in agus] == [
        (1, "10:30:00"), (2, "09:45:00")]  # in arrival order: R1 first, the R2 tap late
    charged_first, late = agus
    assert late.ts < charged_first.ts < late.posted_ms
    # Within the transfer window of the late tap (120 minutes): the R1 tap becomes a
    # transfer once the late one is known.
    assert charged_first.ts - late.ts <= timedelta(minutes=120).total_seconds() * 1000
    assert late.posted_ms - late.ts == 80 * 60_000  # 09:45 made, 11:05 received


def test_money_before_the_first_ride_and_every_stop_on_its_corridor() -> None:
    steps = timeline(DAY_D, TZ)
    funded: set[str] = set()
    for step in steps:
        if isinstance(step.event, Topup):
            funded.add(step.event.card)
        else:
            assert step.event.card in funded, step.event
            lat, lon = stop_position(ROUTE_OF_BUS[step.event.bus], step.event.stop)
            assert -7_400_000 < lat < -7_200_000 and 112_600_000 < lon < 112_850_000
    categories = {r.category for r in RIDERS}
    assert categories <= set(builtin_policy().categories)
    assert categories == {"regular", "student", "senior"}
