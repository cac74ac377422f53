"""Every local minute of every route priced (contract section 5): a policy that leaves a
minute of a route without a rule is refused naming the uncovered windows; and the new
keys `caps.weekly`, `caps.monthly` and `distance.infer_exit_minutes`, parsed or refused
with the field named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fare_gateway.fares.policy import (
    OTHER_ROUTES,
    Caps,
    FarePolicy,
    FareRule,
    PolicyError,
    builtin_policy,
    describe_gaps,
    parse_policy,
    uncovered,
    windows,
)
from tests.unit.commands import clean_runner, one_error
from transit.cli import cli

HEAD = 'categories = ["regular", "student"]\ndefault_category = "regular"\n'
ANY_TIME = '[[fares]]\namount = { regular = 5000 }\n'


def rule(routes: str = '"*"', start: str = "", end: str = "", amount: int = 5000) -> str:
    window = f'start = "{start}"\nend = "{end}"\n' if start else ""
    return f"[[fares]]\nroutes = [{routes}]\n{window}amount = {{ regular = {amount} }}\n"


def parsed(text: str) -> FarePolicy:
    return parse_policy(tomllib.loads(text))


def refusal(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parsed(text)
    return caught.value


# -- coverage ---------------------------------------------------------------------------

ISSUE_EXAMPLE = HEAD + rule('"R1"', "05:00", "07:00")


def test_the_issues_example_is_refused_naming_r1s_gap_and_every_other_routes() -> None:
    err = refusal(ISSUE_EXAMPLE)
    assert err.field == "fares"
    # R1 is priced 05:00-07:00 only: its gap runs from 07:00 over midnight to 05:00;
    # a route no rule names is priced at no minute at all
    assert err.problem == "no rule prices route R1 07:00-05:00; any other route all day"
    r1_morning = FareRule(("R1",), {"regular": 5000}, 5 * 60, 7 * 60)
    assert uncovered((r1_morning,)) == {"R1": [(7 * 60, 5 * 60)], OTHER_ROUTES: [(0, 0)]}
    assert uncovered(parsed(HEAD + ANY_TIME).rules) == {}


def test_a_midnight_spanning_gap_is_one_window() -> None:
    err = refusal(HEAD + rule('"*"', "06:00", "22:00"))
    assert err.problem == "no rule prices any other route 22:00-06:00"


def test_a_midnight_spanning_rule_covers_both_sides_of_midnight() -> None:
    # 22:00-06:00 over midnight and 06:00-21:00 leave only 21:00-22:00
    err = refusal(HEAD + rule('"*"', "22:00", "06:00") + rule('"*"', "06:00", "21:00"))
    assert err.problem == "no rule prices any other route 21:00-22:00"
    night_and_day = parsed(HEAD + rule('"*"', "22:00", "06:00", 8000)
                           + rule('"*"', "06:00", "22:00"))
    assert night_and_day.rule_at("R7", 23 * 60).amount["regular"] == 8000
    assert night_and_day.rule_at("R7", 0).amount["regular"] == 8000
    assert night_and_day.rule_at("R7", 5 * 60 + 59).amount["regular"] == 8000
    assert night_and_day.rule_at("R7", 6 * 60).amount["regular"] == 5000


def test_several_gaps_of_several_routes_are_all_named() -> None:
    text = (HEAD + rule('"R1"', "05:00", "12:00") + rule('"R1", "R2"', "13:00", "23:00")
            + rule('"*"', "03:00", "04:00"))
    assert refusal(text).problem == (
        "no rule prices route R1 23:00-03:00, 04:00-05:00, 12:00-13:00; "
        "route R2 23:00-03:00, 04:00-13:00; any other route 04:00-03:00")


def test_a_catch_all_rule_passes() -> None:
    assert len(parsed(ISSUE_EXAMPLE + ANY_TIME).rules) == 2
    sby = builtin_policy()
    assert sby.rule_at("R9", 12 * 60) is sby.rules[1]
    assert sby.rule_at("R9", 6 * 60) is sby.rules[0]


def test_a_named_route_covered_by_its_own_windows_and_a_star_evening_rule() -> None:
    r1_day = rule('"R1"', "05:00", "12:00", 4000) + rule('"R1"', "12:00", "19:00", 4500)
    evening = rule('"*"', "19:00", "05:00", 6000)
    # R1 is whole; other routes have only the evening
    assert refusal(HEAD + r1_day + evening).problem == "no rule prices any other route 05:00-19:00"
    policy = parsed(HEAD + r1_day + evening + rule('"*"', "05:00", "19:00", 5000))
    assert [policy.rule_at("R1", m).amount["regular"]
            for m in (4 * 60, 5 * 60, 11 * 60 + 59, 12 * 60, 18 * 60 + 59, 19 * 60)] == [
        6000, 4000, 4000, 4500, 4500, 6000]
    assert [policy.rule_at("R2", m).amount["regular"] for m in (4 * 60, 12 * 60, 20 * 60)] == [
        6000, 5000, 6000]


def test_windows_and_describe_gaps() -> None:
    day = [False] * 1440
    assert windows(day) == []
    assert windows([True] * 1440) == [(0, 0)]
    day[0:60] = [True] * 60
    day[1380:1440] = [True] * 60
    day[600:601] = [True]
    assert windows(day) == [(1380, 60), (600, 601)]   # 23:00-01:00 is one window
    assert describe_gaps({"R1": [(1380, 60), (600, 601)], OTHER_ROUTES: [(0, 0)]}) == (
        "no rule prices route R1 23:00-01:00, 10:00-10:01; any other route all day")


def test_transit_fares_check_names_fares_and_the_gaps(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    policy = tmp_path / "r1-morning.toml"
    policy.write_text(ISSUE_EXAMPLE)
    result = clean_runner(tmp_path, monkeypatch).invoke(cli, ["fares", "check", str(policy)])
    line = one_error(result)
    assert result.exit_code == 1
    assert f"{policy}: fares: no rule prices route R1 07:00-05:00; any other route all day" in line


# -- weekly and monthly caps, infer_exit_minutes ------------------------------------------------


def test_weekly_and_monthly_caps_are_parsed() -> None:
    policy = parsed(HEAD + ANY_TIME + "[caps]\ndaily = { regular = 10000 }\n"
                    "weekly = { regular = 50000, student = 20000 }\n"
                    "monthly = { student = 60000 }\n")
    assert policy.weekly_caps == {"regular": 50000, "student": 20000}
    assert policy.monthly_caps == {"student": 60000}
    assert policy.caps("regular") == Caps(10000, 50000, None)
    assert policy.caps("student") == Caps(None, 20000, 60000)
    assert parsed(HEAD + ANY_TIME).caps("regular") == Caps(None, None, None)
    assert builtin_policy().caps("regular") == Caps(10000, 50000, 180000)
    assert builtin_policy().caps("senior") == Caps(None, None, None)


@pytest.mark.parametrize("caps,field", [
    ("weekly = { regular = -1 }", "caps.weekly.regular"),
    ("weekly = { regular = 1.5 }", "caps.weekly.regular"),
    ("weekly = { regular = '50000' }", "caps.weekly.regular"),
    ("weekly = { regular = true }", "caps.weekly.regular"),
    ("weekly = { regular = 100000001 }", "caps.weekly.regular"),
    ("weekly = { child = 1000 }", "caps.weekly.child"),
    ("weekly = {}", "caps.weekly"),
    ("weekly = 50000", "caps.weekly"),
    ("monthly = { regular = -180000 }", "caps.monthly.regular"),
    ("monthly = { student = 1e5 }", "caps.monthly.student"),
    ("monthly = [180000]", "caps.monthly"),
    ("yearly = { regular = 1 }", "caps.yearly"),
])
def test_bad_weekly_and_monthly_caps_are_refused_by_name(caps: str, field: str) -> None:
    assert refusal(HEAD + ANY_TIME + "[caps]\n" + caps + "\n").field == field


def distance_rule(extra: str) -> str:
    return (HEAD + '[[fares]]\nroutes = ["KRL"]\namount = { regular = 3000 }\n'
            "max = { regular = 13000 }\n"
            f"distance = {{ base_km = 25, step_km = 10, step = 1000{extra} }}\n" + ANY_TIME)


@pytest.mark.parametrize("extra,minutes", [
    ("", None), (", infer_exit_minutes = 1", 1), (", infer_exit_minutes = 120", 120),
    (", infer_exit_minutes = 1440", 1440),
])
def test_infer_exit_minutes_is_optional_and_parsed(extra: str, minutes: int | None) -> None:
    distance = parsed(distance_rule(extra)).rules[0].distance
    assert distance is not None and distance.infer_exit_minutes == minutes


@pytest.mark.parametrize("value", ["0", "-5", "1441", "1.5", '"120"', "true", "[120]"])
def test_bad_infer_exit_minutes_is_refused_by_name(value: str) -> None:
    err = refusal(distance_rule(f", infer_exit_minutes = {value}"))
    assert err.field == "fares[0].distance.infer_exit_minutes"
