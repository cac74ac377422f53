"""The who-pays-what table of a fare policy (`transit fares check`): windows split where
the first matching rule changes and nowhere else, over midnight, named routes against
the other routes, distance rules, and categories paying the default category's fare."""

from __future__ import annotations

import tomllib

from fare_gateway.fares.policy import OTHER_ROUTES, FarePolicy, builtin_policy, parse_policy
from fare_gateway.fares.table import (
    CategoryFare,
    aligned,
    fare_windows,
    table_json,
    table_lines,
)
from fare_gateway.riders.explain import rupiah


def policy(text: str) -> FarePolicy:
    return parse_policy(tomllib.loads('categories = ["regular", "student"]\n' + text))


def rows(p: FarePolicy) -> list[tuple[str, str, int]]:
    """(route, window, rule index) of every row, in the table's order."""
    return [(w.route, w.window, w.rule) for w in fare_windows(p)]


def test_the_builtin_policy_is_two_windows_of_every_route() -> None:
    # 05:00-07:00 the early fare; the rest of the day, through midnight, the standard one.
    assert rows(builtin_policy()) == [(OTHER_ROUTES, "05:00-07:00", 0),
                                      (OTHER_ROUTES, "07:00-05:00", 1)]
    early, standard = fare_windows(builtin_policy())
    assert early.fares == {"regular": CategoryFare(2000), "student": CategoryFare(1000),
                           "senior": CategoryFare(0)}
    assert standard.fares["student"] == CategoryFare(2500)


def test_a_route_rule_splits_only_that_routes_day() -> None:
    p = policy("""
[[fares]]
routes = ["R1"]
start = "06:00"
end = "07:00"
amount = { regular = 3000 }
[[fares]]
routes = ["*"]
start = "06:30"
end = "09:00"
amount = { regular = 2000 }
[[fares]]
routes = ["*"]
amount = { regular = 5000 }
""")
    assert rows(p) == [
        # R1: its own rule first; the early rule only from 07:00, where R1's ends; the
        # standard fare from 09:00 round midnight to 06:00 is one window, not two.
        ("R1", "06:00-07:00", 0), ("R1", "07:00-09:00", 1), ("R1", "09:00-06:00", 2),
        # Other routes are not split at R1's 06:00 and 07:00.
        (OTHER_ROUTES, "06:30-09:00", 1), (OTHER_ROUTES, "09:00-06:30", 2)]


def test_a_rule_over_midnight_is_one_window() -> None:
    p = policy("""
[[fares]]
start = "22:00"
end = "02:00"
amount = { regular = 7000 }
[[fares]]
amount = { regular = 5000 }
""")
    assert rows(p) == [(OTHER_ROUTES, "02:00-22:00", 1), (OTHER_ROUTES, "22:00-02:00", 0)]
    night = table_json(p)["fares"][1]
    assert (night["start"], night["end"], night["rule"]) == ("22:00", "02:00", 0)


def test_a_category_a_rule_leaves_out_pays_the_default_categorys_fare() -> None:
    p = policy("""
[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 13000, student = 6000 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 90 }
[[fares]]
amount = { regular = 5000 }
""")
    krl, other = fare_windows(p)
    assert (krl.route, krl.window, other.route, other.window) == (
        "KRL-BOGOR", "all day", OTHER_ROUTES, "all day")
    assert krl.fares == {"regular": CategoryFare(3000, 13000),
                         "student": CategoryFare(3000, 6000)}
    assert other.fares == {"regular": CategoryFare(5000), "student": CategoryFare(5000)}


def test_the_text_names_distance_steps_inferred_exits_transfers_and_caps() -> None:
    p = policy("""
[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 90 }
[[fares]]
routes = ["KRL-BEKASI"]
amount = { regular = 3000 }
max = { regular = 8000 }
distance = { base_km = 10, step_km = 5, step = 500 }
[[fares]]
amount = { regular = 5000, student = 2500 }
[transfers]
window_minutes = 90
max_transfers = 1
[caps]
daily = { regular = 10000 }
monthly = { student = 60000 }
""")
    lines = table_lines(p, rupiah)
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["route", "window", "rule", "regular", "student", "pricing"]
    bogor = next(line for line in table if line.startswith("KRL-BOGOR"))
    assert bogor.split("  ")[0] == "KRL-BOGOR"
    assert "base Rp3.000, max Rp13.000" in bogor
    assert ("by distance: +Rp1.000 per 10 km beyond 25 km; no tap-out: exit inferred at "
            "the next entry within 90 min, else the maximum") in bogor
    bekasi = next(line for line in table if line.startswith("KRL-BEKASI"))
    assert bekasi.endswith("+Rp500 per 5 km beyond 10 km; no tap-out: the maximum")
    other = next(line for line in table if line.startswith("other routes"))
    assert other.split() == ["other", "routes", "all", "day", "fares[2]", "Rp5.000",
                             "Rp2.500", "flat"]
    # Columns line up: every cell of the header starts where its column does.
    assert bogor.index("fares[0]") == table[0].index("rule")
    assert any("up to 1 transfer within 90 min" in line for line in lines)
    caps = lines[lines.index("caps     daily     weekly  monthly"):]
    assert caps[1:3] == ["regular  Rp10.000  none    none", "student  none      none    Rp60.000"]
    assert all(line == line.rstrip() for line in lines)


def test_no_transfers_and_other_currencies_are_said_so() -> None:
    p = policy('currency = "SGD"\n[[fares]]\namount = { regular = 150 }\n')
    lines = table_lines(p, lambda a: f"{a:,} SGD")
    assert "Transfers: none (every entry starts a new journey)." in lines
    assert "other routes  all day  fares[0]  150 SGD  150 SGD  flat" in lines


def test_the_json_gives_whole_numbers_and_null_for_no_cap() -> None:
    doc = table_json(builtin_policy())
    assert doc["fares"][0] == {"route": "*", "start": "05:00", "end": "07:00", "rule": 0,
                               "pricing": "flat", "distance": None,
                               "fares": {"regular": {"amount": 2000, "max": None},
                                         "student": {"amount": 1000, "max": None},
                                         "senior": {"amount": 0, "max": None}}}
    assert doc["caps"]["regular"] == {"daily": 10000, "weekly": 50000, "monthly": 180000}
    assert doc["caps"]["senior"] == {"daily": None, "weekly": None, "monthly": None}
    assert doc["transfers"] == {"window_minutes": 120, "max_transfers": 2}


def test_aligned_pads_every_column_but_the_last() -> None:
    assert aligned([["a", "bbb", "c"], ["dd", "e", "ffff"], ["g", "", ""]]) == [
        "a   bbb  c", "dd  e    ffff", "g"]
    assert aligned([]) == []
