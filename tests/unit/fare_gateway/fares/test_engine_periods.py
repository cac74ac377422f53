"""Worked examples in rupiah of the weekly and monthly caps (contract section 5, rule 4).

Every expected charge is written out by hand, one number per tap in the order the taps
happen, with the running totals that decide it in the comment beside it; none is
computed by calling the engine. Rule 4, quoted short: a charge is lowered to
`max(0, min(charge, day_cap - day_total, week_cap - week_total, month_cap - month_total))`,
the week running Monday to Sunday and the month being the calendar month, both by service
date (a tap before 03:00 local belongs to the day before). `Charge.cap` names the cap that
lowered the charge, the shortest period on a tie; `capped_by` is what it took off.

Unless a test says otherwise the fares are the built-in Suroboyo ones: 5,000 a journey
(2,000 from 05:00 to 07:00), transfers free within 120 minutes; the taps at 08:00, 10:30
and 13:00 are each a new journey (more than 120 minutes apart).
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta, timezone
from importlib import resources

from fare_gateway.fares.engine import CardPrice, Earlier, PricedTap, price_card, price_day
from fare_gateway.fares.policy import FarePolicy, builtin_policy, parse_policy, week_of
from tests.unit.fare_gateway.fares.test_engine_worked_examples import tap

WIB = timezone(timedelta(hours=7))  # Asia/Jakarta: UTC+7, no DST
SBY = builtin_policy()
SBY_TEXT = resources.files("fare_gateway.fares").joinpath("surabaya.toml").read_text("utf-8")


def wib(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    """Epoch milliseconds of a Jakarta wall-clock time."""
    return int(datetime(y, mo, d, h, mi, tzinfo=WIB).timestamp()) * 1000


def with_caps(caps: str) -> FarePolicy:
    """The built-in fares and transfers under other caps (`caps` is the [caps] body)."""
    return parse_policy(tomllib.loads(SBY_TEXT.split("[caps]")[0] + "[caps]\n" + caps))


def bus(ts: int, n: int = 0) -> PricedTap:
    """An entry on one of a few buses of route R1 (a new bus each time: never a repeat)."""
    return tap(ts, f"SBY-{n:04d}", "R1")


def two_journeys(y: int, mo: int, d: int) -> list[PricedTap]:
    """08:00 and 10:30: two journeys of 5,000 on the day, the daily cap's 10,000."""
    return [bus(wib(y, mo, d, 8), 1), bus(wib(y, mo, d, 10, 30), 2)]


def amounts(card: CardPrice, taps: list[PricedTap]) -> list[int]:
    assert set(card.charges) == {t.tap_id for t in taps}
    return [card.amount(t.tap_id) for t in taps]


def caps_named(card: CardPrice, taps: list[PricedTap]) -> list[tuple[str, int]]:
    """(`cap`, `capped_by`) of each tap, in the order listed."""
    return [(card.charges[t.tap_id].cap, card.charges[t.tap_id].capped_by) for t in taps]


# == Weekly cap ==========================================================================


def test_weekly_cap_binds_on_thursday_and_lasts_until_sunday() -> None:
    # Built-in fares, daily 10,000, a weekly cap of 34,000. Week of Monday 17 November 2025.
    policy = with_caps("daily = { regular = 10000 }\nweekly = { regular = 34000 }\n")
    mon_to_wed = [t for d in (17, 18, 19) for t in two_journeys(2025, 11, d)]
    thursday = two_journeys(2025, 11, 20)
    friday, sunday = bus(wib(2025, 11, 21, 8)), bus(wib(2025, 11, 23, 18))
    next_monday = two_journeys(2025, 11, 24)
    taps = [*mon_to_wed, *thursday, friday, sunday, *next_monday]
    card = price_card(policy, "regular", taps)
    assert amounts(card, taps) == [
        5000, 5000,   # Mon: week 10,000
        5000, 5000,   # Tue: week 20,000
        5000, 5000,   # Wed: week 30,000
        4000,         # Thu 08:00: min(5000, 10000 - 0, 34000 - 30000) = 4000; week 34,000
        0,            # Thu 10:30: min(5000, 10000 - 4000, 34000 - 34000) = 0
        0,            # Fri: the week is spent, whatever the day's cap leaves
        0,            # Sun: still the same week
        5000, 5000,   # next Mon: a new week, only the daily cap applies
    ]
    assert caps_named(card, [*thursday, friday, sunday]) == [
        ("weekly", 1000), ("weekly", 5000), ("weekly", 5000), ("weekly", 5000)]
    assert not card.charges[mon_to_wed[-1].tap_id].capped
    assert card.weeks == {date(2025, 11, 17): 34000, date(2025, 11, 24): 10000}


def test_builtin_weekly_cap_cannot_bind_before_friday_and_ties_with_the_daily_on_friday() -> None:
    # Built-in: daily 10,000, weekly 50,000. Mon..Thu reach 40,000 at most, so the week
    # first binds on Friday, where the day's and the week's caps run out together.
    mon_to_thu = [t for d in (17, 18, 19, 20) for t in two_journeys(2025, 11, d)]
    friday = [*two_journeys(2025, 11, 21), bus(wib(2025, 11, 21, 13), 3)]
    saturday, sunday = bus(wib(2025, 11, 22, 8)), bus(wib(2025, 11, 23, 8))
    next_monday = bus(wib(2025, 11, 24, 8))
    taps = [*mon_to_thu, *friday, saturday, sunday, next_monday]
    card = price_card(SBY, "regular", taps)
    assert amounts(card, taps) == [
        *[5000] * 8,  # Mon..Thu: 10,000 a day, week 40,000
        5000,         # Fri 08:00: week 45,000
        5000,         # Fri 10:30: day 10,000 and week 50,000, reached but not passed
        0,            # Fri 13:00: day 10000 - 10000 = 0 = week 50000 - 50000: a tie
        0,            # Sat: day 10000 - 0, week 50000 - 50000 = 0
        0,            # Sun: the same
        5000,         # next Monday
    ]
    assert caps_named(card, [friday[2], saturday, sunday, next_monday]) == [
        ("daily", 5000),    # the tie names the shorter period
        ("weekly", 5000), ("weekly", 5000), ("", 0)]
    assert card.weeks == {date(2025, 11, 17): 50000, date(2025, 11, 24): 5000}
    assert card.months == {date(2025, 11, 1): 55000}   # far below the monthly 180,000


def test_a_category_without_a_weekly_cap_pays_every_day() -> None:
    # Built-in: students have a daily cap of 5,000 and no weekly or monthly cap.
    taps = [t for d in range(17, 24) for t in two_journeys(2025, 11, d)]
    card = price_card(SBY, "student", taps)
    assert amounts(card, taps) == [2500, 2500] * 7   # 2,500 a journey, 5,000 a day
    assert card.weeks == {date(2025, 11, 17): 35000}


# == A week over a month's end ===========================================================


def test_a_week_over_a_months_end_counts_whole_and_each_month_its_own_days() -> None:
    # Daily 10,000, weekly 35,000, monthly 25,000. The week of Monday 29 December 2025
    # runs to Sunday 4 January 2026: December's cap binds on the 31st, January's taps
    # pay again, until the week's cap binds on Friday the 2nd.
    policy = with_caps("daily = { regular = 10000 }\nweekly = { regular = 35000 }\n"
                       "monthly = { regular = 25000 }\n")
    mon, tue = two_journeys(2025, 12, 29), two_journeys(2025, 12, 30)
    wed = two_journeys(2025, 12, 31)
    new_years_night = bus(wib(2026, 1, 1, 2, 30), 3)   # service day: Wednesday 31 December
    thu = two_journeys(2026, 1, 1)
    fri, sun = bus(wib(2026, 1, 2, 8)), bus(wib(2026, 1, 4, 8))
    next_mon = bus(wib(2026, 1, 5, 8))
    taps = [*mon, *tue, *wed, new_years_night, *thu, fri, sun, next_mon]
    card = price_card(policy, "regular", taps)
    assert amounts(card, taps) == [
        5000, 5000,   # Mon 29 Dec: week 10,000, December 10,000
        5000, 5000,   # Tue 30 Dec: week 20,000, December 20,000
        5000,         # Wed 31 Dec 08:00: week 25,000, December 25,000
        0,            # Wed 10:30: min(5000, 10000 - 5000, 35000 - 25000, 25000 - 25000) = 0
        0,            # 1 Jan 02:30 is still 31 December's service day: December is spent
        5000, 5000,   # Thu 1 Jan: January 0 -> 10,000, week 25,000 -> 35,000
        0,            # Fri 2 Jan: week 35000 - 35000 = 0 (January has 15,000 left)
        0,            # Sun 4 Jan: the same week
        5000,         # Mon 5 Jan: a new week, January 15,000
    ]
    assert caps_named(card, [wed[1], new_years_night, fri, sun]) == [
        ("monthly", 5000), ("monthly", 5000), ("weekly", 5000), ("weekly", 5000)]
    assert SBY.service_date(new_years_night.ts) == date(2025, 12, 31)
    assert card.weeks == {date(2025, 12, 29): 35000, date(2026, 1, 5): 5000}
    assert card.months == {date(2025, 12, 1): 25000, date(2026, 1, 1): 15000}
    assert card.days[date(2025, 12, 31)].total == 5000


# == Monthly cap =========================================================================


def test_monthly_cap_binds_mid_month_and_the_first_of_the_next_month_pays_again() -> None:
    # Daily 10,000, monthly 42,000, no weekly cap. November 2025.
    policy = with_caps("daily = { regular = 10000 }\nmonthly = { regular = 42000 }\n")
    nov_3_to_6 = [t for d in (3, 4, 5, 6) for t in two_journeys(2025, 11, d)]
    nov_7 = two_journeys(2025, 11, 7)
    nov_18 = bus(wib(2025, 11, 18, 8))
    dec_1_night = bus(wib(2025, 12, 1, 2, 30), 3)   # service day: Sunday 30 November
    dec_1 = [bus(wib(2025, 12, 1, 3), 4), bus(wib(2025, 12, 1, 8), 5)]
    taps = [*nov_3_to_6, *nov_7, nov_18, dec_1_night, *dec_1]
    card = price_card(policy, "regular", taps)
    assert amounts(card, taps) == [
        *[5000] * 8,  # 3..6 November: 10,000 a day, month 40,000
        2000,         # 7 Nov 08:00: min(5000, 10000 - 0, 42000 - 40000) = 2000
        0,            # 7 Nov 10:30: month 42000 - 42000 = 0
        0,            # 18 Nov: the month is spent
        0,            # 1 Dec 02:30: 30 November's service day, still November
        5000,         # 1 Dec 03:00: December's first service day; not in 05:00-07:00
        5000,         # 1 Dec 08:00: a new journey (more than 120 minutes after 03:00)
    ]
    assert caps_named(card, [*nov_7, nov_18, dec_1_night, *dec_1]) == [
        ("monthly", 3000), ("monthly", 5000), ("monthly", 5000), ("monthly", 5000),
        ("", 0), ("", 0)]
    assert card.months == {date(2025, 11, 1): 42000, date(2025, 12, 1): 10000}


# == Service dates =======================================================================


def test_a_0230_tap_on_monday_belongs_to_sundays_service_day_and_so_to_last_week() -> None:
    # Built-in. Mon 17..Fri 21 November: 10,000 a day, the week's 50,000 reached.
    week = [t for d in (17, 18, 19, 20, 21) for t in two_journeys(2025, 11, d)]
    night = bus(wib(2025, 11, 24, 2, 30), 3)    # Monday 24th, 02:30: Sunday's service day
    morning = bus(wib(2025, 11, 24, 3), 4)      # Monday 24th, 03:00: Monday's
    assert SBY.service_date(night.ts) == date(2025, 11, 23)
    assert week_of(SBY.service_date(night.ts)) == date(2025, 11, 17)
    assert SBY.service_date(morning.ts) == date(2025, 11, 24)
    taps = [*week, night, morning]
    card = price_card(SBY, "regular", taps)
    assert amounts(card, taps) == [*[5000] * 10,
                                   0,       # week of the 17th: 50000 - 50000 = 0
                                   5000]    # week of the 24th: nothing charged yet
    assert card.charges[night.tap_id].cap == "weekly"
    assert card.weeks == {date(2025, 11, 17): 50000, date(2025, 11, 24): 5000}


# == A late tap ==========================================================================


def test_a_late_tap_from_monday_arriving_on_wednesday_moves_the_weekly_cap() -> None:
    # Daily 10,000, weekly 24,000. Week of Monday 17 November 2025. Monday's 10:30 tap
    # arrives on Wednesday evening, after Wednesday's taps were priced without it.
    policy = with_caps("daily = { regular = 10000 }\nweekly = { regular = 24000 }\n")
    mon_0800 = bus(wib(2025, 11, 17, 8), 1)
    tue = two_journeys(2025, 11, 18)
    wed = [*two_journeys(2025, 11, 19), bus(wib(2025, 11, 19, 13), 3)]
    late = bus(wib(2025, 11, 17, 10, 30), 2)
    on_time = [mon_0800, *tue, *wed]

    before = price_card(policy, "regular", on_time)
    assert amounts(before, on_time) == [
        5000,                # Mon 08:00: week 5,000
        5000, 5000,          # Tue: week 15,000
        5000,                # Wed 08:00: week 20,000
        4000,                # Wed 10:30: min(5000, 10000 - 5000, 24000 - 20000) = 4000
        0,                   # Wed 13:00: min(5000, 10000 - 9000, 24000 - 24000) = 0
    ]

    everything = [*on_time, late]
    after = price_card(policy, "regular", everything)
    assert amounts(after, [mon_0800, late, *tue, *wed]) == [
        5000, 5000,          # Mon: week 10,000
        5000, 5000,          # Tue: week 20,000
        4000,                # Wed 08:00: min(5000, 10000 - 0, 24000 - 20000) = 4000
        0,                   # Wed 10:30: 24000 - 24000 = 0
        0,                   # Wed 13:00: 0, as before
    ]
    changed = {t.tap_id for t in on_time if before.amount(t.tap_id) != after.amount(t.tap_id)}
    assert changed == {wed[0].tap_id, wed[1].tap_id}
    # corrections -1,000 and -4,000 on Wednesday pay for the late 5,000: the week stays at its cap
    assert sum(after.amount(t.tap_id) - before.amount(t.tap_id) for t in wed) == -5000
    assert before.weeks == after.weeks == {date(2025, 11, 17): 24000}
    assert caps_named(after, wed) == [("weekly", 1000), ("weekly", 5000), ("weekly", 5000)]

    # a pure function of the taps: however they arrive, and twice over, the same charges
    expected = {t: tuple(c) for t, c in after.charges.items()}
    for arrival in (everything[::-1], [late, *on_time], sorted(everything, key=lambda t: t.tap_id),
                    [*everything, late, wed[0]]):
        again = price_card(policy, "regular", arrival)
        assert {t: tuple(c) for t, c in again.charges.items()} == expected
        assert (again.weeks, again.months) == (after.weeks, after.months)


# == The tie rule and capped_by ==========================================================


def test_three_caps_running_out_together_name_the_daily() -> None:
    # Daily, weekly and monthly all 10,000; Monday 1 December 2025 starts both a week
    # and a month.
    policy = with_caps("daily = { regular = 10000 }\nweekly = { regular = 10000 }\n"
                       "monthly = { regular = 10000 }\n")
    taps = [*two_journeys(2025, 12, 1), bus(wib(2025, 12, 1, 13), 3),
            bus(wib(2025, 12, 1, 13, 30), 4)]
    card = price_card(policy, "regular", taps)
    assert amounts(card, taps) == [
        5000, 5000,   # every total 10,000
        0,            # 13:00: 10000 - 10000 = 0 for the day, the week and the month
        0,            # 13:30: a transfer, max(0, 5000 - 5000) = 0 before any cap
    ]
    assert caps_named(card, taps) == [("", 0), ("", 0), ("daily", 5000), ("", 0)]
    assert [card.charges[t.tap_id].capped for t in taps] == [False, False, True, False]
    assert card.charges[taps[3].tap_id].role == "transfer"


def test_weekly_and_monthly_tying_name_the_weekly() -> None:
    # Daily 10,000, weekly and monthly 15,000; the week of Monday 1 December 2025.
    policy = with_caps("daily = { regular = 10000 }\nweekly = { regular = 15000 }\n"
                       "monthly = { regular = 15000 }\n")
    monday = two_journeys(2025, 12, 1)
    tuesday = [bus(wib(2025, 12, 2, 6), 1), bus(wib(2025, 12, 2, 8, 30), 2),
               bus(wib(2025, 12, 2, 11), 3)]
    taps = [*monday, *tuesday]
    card = price_card(policy, "regular", taps)
    assert amounts(card, taps) == [
        5000, 5000,   # Mon: day, week and month 10,000
        2000,         # Tue 06:00, the early fare: week and month 12,000
        3000,         # Tue 08:30, a new journey (150 min): min(5000, 10000 - 2000,
        #               15000 - 12000, 15000 - 12000) = 3000, week and month tied
        0,            # Tue 11:00: min(5000, 10000 - 5000, 0, 0) = 0
    ]
    assert caps_named(card, tuesday) == [("", 0), ("weekly", 2000), ("weekly", 5000)]
    assert [card.charges[t.tap_id].full_fare for t in tuesday] == [2000, 5000, 5000]


def test_a_week_already_past_its_cap_is_named_before_a_longer_period() -> None:
    # After a policy lowered the weekly cap mid-week, the week may start past it: both
    # the week (50,000 - 60,000 < 0) and the month (180,000 - 180,000 = 0) leave nothing;
    # the shorter period is named, and the charge is 0, never negative.
    policy = builtin_policy()
    entry = PricedTap("A:1", "A", 1, 1764313202123, "V1", "R1", "entry", 0, 0)
    day = price_day(policy, "regular", [entry], Earlier(week=60_000, month=180_000))
    charge = day.charges["A:1"]
    assert (charge.amount, charge.cap, charge.capped_by) == (0, "weekly", 5000)
