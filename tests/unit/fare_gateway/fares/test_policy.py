"""Fare policy files (contract section 5): the built-in policy, service days, rule matching,
and validation with errors that name the field (`transit fares check` runs in
tests/integration/fare_gateway/test_fares.py)."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from fare_gateway.fares.policy import (
    Distance,
    FarePolicy,
    PolicyError,
    builtin_policy,
    load_policy,
    parse_policy,
    policy_from_setting,
)

# The example of contract section 5, copied verbatim: the built-in default.
CONTRACT_EXAMPLE = """
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student", "senior"]
default_category = "regular"

[[fares]]                       # first rule that matches the entry wins
routes = ["*"]                  # route ids, or "*" for any
start = "05:00"                 # optional window [start, end) on the entry's local time
end = "07:00"
amount = { regular = 2000, student = 1000, senior = 0 }

[[fares]]
routes = ["*"]
amount = { regular = 5000, student = 2500, senior = 0 }

[transfers]
window_minutes = 120            # from the first entry of the journey
max_transfers = 2

[caps]
daily = { regular = 10000, student = 5000 }   # per card and service day; absent = no cap
weekly = { regular = 50000 }                  # Monday to Sunday, by service date
monthly = { regular = 180000 }                # calendar month, by service date
"""

DISTANCE_RULE = """
[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000 }
"""

WIB = timezone(timedelta(hours=7))  # Asia/Jakarta has been UTC+7 without DST since 1964


def wib_ms(y: int, mo: int, d: int, h: int, mi: int, s: int = 0, ms: int = 0) -> int:
    """Milliseconds since the epoch of a wall-clock time in Jakarta, computed by hand."""
    return int(datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=WIB).timestamp() * 1000)


def policy_text(text: str) -> FarePolicy:
    return parse_policy(tomllib.loads(text))


# -- the built-in policy --------------------------------------------------------------


def test_builtin_policy_equals_the_contract_example() -> None:
    assert builtin_policy() == policy_text(CONTRACT_EXAMPLE)


def test_builtin_policy_values() -> None:
    p = builtin_policy()
    assert p.currency == "IDR"
    assert p.timezone == "Asia/Jakarta"
    assert p.service_day_start_min == 3 * 60
    assert p.repeat_tap_seconds == 120
    assert p.categories == ("regular", "student", "senior")
    assert p.default_category == "regular"
    assert len(p.rules) == 2
    early, regular = p.rules
    assert early.routes == ("*",) and regular.routes == ("*",)
    assert (early.start_min, early.end_min) == (5 * 60, 7 * 60)
    assert (regular.start_min, regular.end_min) == (None, None)
    assert early.amount == {"regular": 2000, "student": 1000, "senior": 0}
    assert regular.amount == {"regular": 5000, "student": 2500, "senior": 0}
    assert early.distance is None and early.max is None
    assert (p.transfer_window_minutes, p.max_transfers) == (120, 2)
    assert p.daily_caps == {"regular": 10000, "student": 5000}
    assert p.cap("regular") == 10000 and p.cap("student") == 5000
    assert p.cap("senior") is None  # absent = no cap


def test_empty_fares_setting_means_the_builtin_policy(tmp_path: Path) -> None:
    assert policy_from_setting("") == builtin_policy()
    f = tmp_path / "p.toml"
    f.write_text(CONTRACT_EXAMPLE.replace("5000, student = 2500", "6000, student = 2500"))
    assert policy_from_setting(str(f)).rules[1].amount["regular"] == 6000


# -- service day ----------------------------------------------------------------------


def test_wib_helper_is_utc_plus_seven() -> None:
    assert wib_ms(2025, 11, 28, 14, 0, 2, 123) == 1764313202123  # the contract's example ts


@pytest.mark.parametrize("hm,expected", [
    ((2, 30), date(2025, 11, 27)),
    ((1, 30), date(2025, 11, 27)),
    ((0, 0), date(2025, 11, 27)),
    ((2, 59), date(2025, 11, 27)),
    ((3, 0), date(2025, 11, 28)),
    ((3, 1), date(2025, 11, 28)),
    ((14, 0), date(2025, 11, 28)),
    ((23, 59), date(2025, 11, 28)),
])
def test_service_date_starts_at_three_local(hm: tuple[int, int], expected: date) -> None:
    assert builtin_policy().service_date(wib_ms(2025, 11, 28, *hm)) == expected


def test_service_date_edges_to_the_millisecond() -> None:
    p = builtin_policy()
    start = wib_ms(2025, 11, 28, 3, 0)
    assert p.service_date(start - 1) == date(2025, 11, 27)
    assert p.service_date(start) == date(2025, 11, 28)
    # 02:30 WIB is 19:30 UTC the day before: not the UTC date either
    assert p.service_date(wib_ms(2025, 11, 28, 2, 30)) == date(2025, 11, 27)
    assert p.service_date(wib_ms(2026, 1, 1, 2, 30)) == date(2025, 12, 31)


def test_service_date_follows_the_policy_timezone_and_day_start() -> None:
    text = CONTRACT_EXAMPLE.replace('"Asia/Jakarta"', '"Asia/Jayapura"').replace(
        'service_day_start = "03:00"', 'service_day_start = "04:30"')
    p = policy_text(text)  # Jayapura is UTC+9
    ts = wib_ms(2025, 11, 28, 2, 20)  # 04:20 in Jayapura
    assert p.service_date(ts) == date(2025, 11, 27)
    assert p.service_date(ts + 10 * 60_000) == date(2025, 11, 28)  # 04:30 there


# -- rule matching --------------------------------------------------------------------


@pytest.mark.parametrize("hm,regular,student,senior", [
    ((4, 59), 5000, 2500, 0),
    ((5, 0), 2000, 1000, 0),
    ((6, 0), 2000, 1000, 0),
    ((6, 59), 2000, 1000, 0),
    ((7, 0), 5000, 2500, 0),
    ((7, 1), 5000, 2500, 0),
    ((14, 0), 5000, 2500, 0),
    ((2, 0), 5000, 2500, 0),
])
def test_first_matching_rule_with_the_early_window(hm: tuple[int, int], regular: int,
                                                   student: int, senior: int) -> None:
    p = builtin_policy()
    ts = wib_ms(2025, 11, 28, *hm)
    assert p.full_fare("R1", ts, "regular") == regular
    assert p.full_fare("R1", ts, "student") == student
    assert p.full_fare("R1", ts, "senior") == senior
    assert p.rule_for("R1", ts) is p.rules[0 if regular == 2000 else 1]


def test_early_window_edges_to_the_second() -> None:
    p = builtin_policy()
    assert p.full_fare("R1", wib_ms(2025, 11, 28, 6, 59, 59, 999), "regular") == 2000
    assert p.full_fare("R1", wib_ms(2025, 11, 28, 7, 0, 0, 0), "regular") == 5000
    assert p.full_fare("R1", wib_ms(2025, 11, 28, 4, 59, 59, 999), "regular") == 5000


def test_rules_match_by_route_and_order() -> None:
    p = policy_text(CONTRACT_EXAMPLE.replace("[[fares]]                       # first",
                                             '[[fares]]\nroutes = ["R9"]\namount = '
                                             '{ regular = 9000 }\n\n[[fares]]   # first', 1))
    noon = wib_ms(2025, 11, 28, 12, 0)
    six = wib_ms(2025, 11, 28, 6, 0)
    assert p.full_fare("R9", noon, "regular") == 9000
    assert p.full_fare("R9", six, "regular") == 9000   # first matching rule wins
    assert p.full_fare("R9", six, "student") == 9000   # student falls back to regular
    assert p.full_fare("R1", six, "regular") == 2000
    assert p.full_fare("R1", noon, "regular") == 5000


def test_missing_category_pays_the_default_category_amount() -> None:
    p = policy_text("""
categories = ["regular", "student", "senior"]
default_category = "regular"
[[fares]]
amount = { regular = 4000, student = 2000 }
""")
    noon = wib_ms(2025, 11, 28, 12, 0)
    assert p.full_fare("R1", noon, "regular") == 4000
    assert p.full_fare("R1", noon, "student") == 2000
    assert p.full_fare("R1", noon, "senior") == 4000
    assert p.amount(p.rules[0].amount, "senior") == 4000


def test_missing_category_falls_back_to_a_non_first_default() -> None:
    p = policy_text("""
categories = ["student", "regular"]
default_category = "regular"
[[fares]]
amount = { regular = 4000, student = 2000 }
[[fares]]
routes = ["R2"]
amount = { regular = 7000 }
""")
    assert p.default_category == "regular"
    assert p.amount(p.rules[1].amount, "student") == 7000


def test_a_window_spanning_midnight() -> None:
    p = policy_text("""
categories = ["regular"]
[[fares]]
start = "22:00"
end = "02:00"
amount = { regular = 8000 }
[[fares]]
amount = { regular = 5000 }
""")
    fare = {hm: p.full_fare("R1", wib_ms(2025, 11, 28, *hm), "regular")
            for hm in [(21, 59), (22, 0), (23, 30), (0, 0), (1, 59), (2, 0), (12, 0)]}
    assert fare == {(21, 59): 5000, (22, 0): 8000, (23, 30): 8000, (0, 0): 8000,
                    (1, 59): 8000, (2, 0): 5000, (12, 0): 5000}


def test_distance_rule_from_the_contract() -> None:
    p = policy_text(CONTRACT_EXAMPLE.replace("[transfers]", DISTANCE_RULE + "\n[transfers]"))
    rule = p.rules[2]
    assert rule.routes == ("KRL-BOGOR",)
    assert rule.amount == {"regular": 3000}
    assert rule.max == {"regular": 13000}
    assert rule.distance == Distance(base_km=25, step_km=10, step=1000)
    noon = wib_ms(2025, 11, 28, 12, 0)
    # the contract's example policy lists catch-all rules first, so they win ...
    assert p.full_fare("KRL-BOGOR", noon, "regular") == 5000
    # ... and a distance route listed first is charged its maximum at entry
    first = policy_text("categories = ['regular', 'student']\n" + DISTANCE_RULE
                        + "[[fares]]\namount = { regular = 5000 }\n")
    assert first.full_fare("KRL-BOGOR", noon, "regular") == 13000
    assert first.full_fare("KRL-BOGOR", noon, "student") == 13000  # max falls back too
    assert first.full_fare("R1", noon, "regular") == 5000


def test_defaults_of_optional_keys() -> None:
    p = policy_text("[[fares]]\namount = { regular = 5000 }\n")
    assert p.currency == "IDR" and p.timezone == "Asia/Jakarta"
    assert p.service_day_start_min == 180 and p.repeat_tap_seconds == 120
    assert p.categories == ("regular",) and p.default_category == "regular"
    assert p.daily_caps == {} and p.cap("regular") is None


# -- broken policy files --------------------------------------------------------------

BASE_HEAD = """
categories = ["regular", "student", "senior"]
default_category = "regular"
"""
GOOD_RULE = """
[[fares]]
amount = { regular = 5000 }
"""

BROKEN = {
    "bad_toml": ("currency = \"IDR\nfares = [", "file"),
    "unknown_top_key": (BASE_HEAD + "colour = 'blue'\n" + GOOD_RULE, "colour"),
    "unknown_rule_key": (BASE_HEAD + GOOD_RULE + "[[fares]]\nprice = 1\namount = "
                         "{ regular = 1 }\n", "fares[1].price"),
    "amount_float": (BASE_HEAD + GOOD_RULE + "[[fares]]\namount = { regular = 5000.0 }\n",
                     "fares[1].amount.regular"),
    "amount_negative": (BASE_HEAD + GOOD_RULE + "[[fares]]\namount = { regular = -1 }\n",
                        "fares[1].amount.regular"),
    "amount_string": (BASE_HEAD + "[[fares]]\namount = { regular = '5000' }\n",
                      "fares[0].amount.regular"),
    "amount_bool": (BASE_HEAD + "[[fares]]\namount = { regular = true }\n",
                    "fares[0].amount.regular"),
    "unknown_category": (BASE_HEAD + "[[fares]]\namount = { regular = 5000, child = 0 }\n",
                         "fares[0].amount.child"),
    "no_default_amount": (BASE_HEAD + "[[fares]]\namount = { student = 2500 }\n",
                          "fares[0].amount.regular"),
    "no_amount": (BASE_HEAD + "[[fares]]\nroutes = ['R1']\n", "fares[0].amount"),
    "start_without_end": (BASE_HEAD + "[[fares]]\nstart = '05:00'\namount = "
                          "{ regular = 2000 }\n", "fares[0].end"),
    "end_without_start": (BASE_HEAD + "[[fares]]\nend = '07:00'\namount = "
                          "{ regular = 2000 }\n", "fares[0].start"),
    "bad_hhmm_24": (BASE_HEAD + GOOD_RULE + "[[fares]]\nstart = '24:00'\nend = '07:00'\n"
                    "amount = { regular = 2000 }\n", "fares[1].start"),
    "bad_hhmm_short": (BASE_HEAD + "[[fares]]\nstart = '05:00'\nend = '7:00'\n"
                       "amount = { regular = 2000 }\n", "fares[0].end"),
    "bad_hhmm_minutes": (BASE_HEAD + "[[fares]]\nstart = '05:60'\nend = '07:00'\n"
                         "amount = { regular = 2000 }\n", "fares[0].start"),
    "toml_time_not_string": (BASE_HEAD + "[[fares]]\nstart = 05:00:00\nend = '07:00'\n"
                             "amount = { regular = 2000 }\n", "fares[0].start"),
    "bad_day_start": ('service_day_start = "3:00"\n' + BASE_HEAD + GOOD_RULE,
                      "service_day_start"),
    "unknown_timezone": ('timezone = "Asia/Atlantis"\n' + BASE_HEAD + GOOD_RULE, "timezone"),
    "timezone_path": ('timezone = "../../etc/passwd"\n' + BASE_HEAD + GOOD_RULE, "timezone"),
    "timezone_number": ("timezone = 7\n" + BASE_HEAD + GOOD_RULE, "timezone"),
    "distance_without_max": (BASE_HEAD + "[[fares]]\nroutes = ['KRL']\namount = "
                             "{ regular = 3000 }\ndistance = { base_km = 25, step_km = 10, "
                             "step = 1000 }\n", "fares[0].max"),
    "max_without_distance": (BASE_HEAD + "[[fares]]\nroutes = ['KRL']\namount = "
                             "{ regular = 3000 }\nmax = { regular = 13000 }\n",
                             "fares[0].distance"),
    "max_below_base": (BASE_HEAD + GOOD_RULE + "[[fares]]\nroutes = ['KRL']\namount = "
                       "{ regular = 3000 }\nmax = { regular = 2000 }\ndistance = "
                       "{ base_km = 25, step_km = 10, step = 1000 }\n",
                       "fares[1].max.regular"),
    "max_below_base_by_fallback": (BASE_HEAD + "[[fares]]\nroutes = ['KRL']\namount = "
                                   "{ regular = 3000, student = 14000 }\nmax = "
                                   "{ regular = 13000 }\ndistance = { base_km = 25, "
                                   "step_km = 10, step = 1000 }\n", "fares[0].max.student"),
    "distance_missing_step_km": (BASE_HEAD + "[[fares]]\nroutes = ['KRL']\namount = "
                                 "{ regular = 3000 }\nmax = { regular = 13000 }\ndistance = "
                                 "{ base_km = 25, step = 1000 }\n",
                                 "fares[0].distance.step_km"),
    "distance_zero_step_km": (BASE_HEAD + "[[fares]]\nroutes = ['KRL']\namount = "
                              "{ regular = 3000 }\nmax = { regular = 13000 }\ndistance = "
                              "{ base_km = 25, step_km = 0, step = 1000 }\n",
                              "fares[0].distance.step_km"),
    "empty_fares": (BASE_HEAD + "fares = []\n", "fares"),
    "no_fares": (BASE_HEAD, "fares"),
    "bad_route_id": (BASE_HEAD + "[[fares]]\nroutes = ['R 1']\namount = { regular = 1 }\n",
                     "fares[0].routes[0]"),
    "empty_routes": (BASE_HEAD + "[[fares]]\nroutes = []\namount = { regular = 1 }\n",
                     "fares[0].routes"),
    "default_not_in_categories": ('categories = ["regular"]\ndefault_category = "adult"\n'
                                  + GOOD_RULE, "default_category"),
    "duplicate_categories": ('categories = ["regular", "regular"]\n' + GOOD_RULE,
                             "categories"),
    "bad_currency": ('currency = "rp"\n' + BASE_HEAD + GOOD_RULE, "currency"),
    "negative_repeat": ("repeat_tap_seconds = -1\n" + BASE_HEAD + GOOD_RULE,
                        "repeat_tap_seconds"),
    "cap_unknown_category": (BASE_HEAD + GOOD_RULE + "[caps]\ndaily = { child = 1000 }\n",
                             "caps.daily.child"),
    "cap_float": (BASE_HEAD + GOOD_RULE + "[caps]\ndaily = { regular = 1e4 }\n",
                  "caps.daily.regular"),
    "unknown_transfer_key": (BASE_HEAD + GOOD_RULE + "[transfers]\nwindow = 120\n",
                             "transfers.window"),
    "transfer_window_float": (BASE_HEAD + GOOD_RULE + "[transfers]\nwindow_minutes = 1.5\n",
                              "transfers.window_minutes"),
    "start_equals_end": (BASE_HEAD + "[[fares]]\nstart = '05:00'\nend = '05:00'\n"
                         "amount = { regular = 2000 }\n", "fares[0].end"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_policy_files_name_the_field(case: str, tmp_path: Path) -> None:
    text, field = BROKEN[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert err.field == field
    message = str(err)
    assert f"{field}:" in message
    assert message.startswith(f"{path}: ")  # and the file it is in
    assert err.problem and err.problem in message
    assert "\n" not in message.strip() or case == "bad_toml"


def test_bad_toml_says_so(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BROKEN["bad_toml"][0])
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(path)


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "nope.toml")
    assert info.value.field == "file"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"currency = \"\xff\xfe\"\n")
    with pytest.raises(PolicyError) as info:
        load_policy(binary)
    assert info.value.field == "file"


def test_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_policy({"fares": []})


def test_the_service_day_start_of_an_event() -> None:
    p = builtin_policy()
    start = wib_ms(2025, 11, 27, 3, 0)
    assert p.service_day_start_ms(wib_ms(2025, 11, 28, 1, 30)) == start  # the day before
    assert p.service_day_start_ms(start) == start
    assert p.service_day_start_ms(start - 1) == start - 86_400_000
