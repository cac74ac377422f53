"""`transit fares check` (a policy read as a who-pays-what table) and `transit fares price`
(a CSV of taps priced offline, caps over day, week and month), run as an operator runs
them: the installed command in a subprocess; a failure is one `Error:` line, exit 1."""

from __future__ import annotations

import json
import re
from pathlib import Path

from testbed.gateway import transit
from tests.integration.commands import clean_env, failed, ok
from tests.unit.fare_gateway.fares.test_policy import CONTRACT_EXAMPLE, DISTANCE_RULE

CARD = "04A1B2C3D4E5F6"


def columns(line: str) -> list[str]:
    """The cells of an aligned line (columns are two or more spaces apart)."""
    return re.split(r"\s{2,}", line.strip())


def test_check_prints_who_pays_what_when(tmp_path: Path) -> None:
    policy = tmp_path / "fares.toml"  # the contract's example, a distance route first
    policy.write_text(CONTRACT_EXAMPLE.replace("[[fares]]", DISTANCE_RULE.strip() + "\n\n"
                                               "[[fares]]", 1))
    out = ok(transit("fares", "check", str(policy), env=clean_env())).stdout.splitlines()
    assert out[0] == (f"{policy}: ok (3 rules, categories regular, student, senior, "
                      "currency IDR)")
    rows = [columns(line) for line in out]
    assert ["route", "window", "rule", "regular", "student", "senior", "pricing"] in rows
    # The distance rule gives only `regular`: the others pay regular's base and maximum.
    distance = "base Rp3.000, max Rp13.000"
    assert ["KRL-BOGOR", "all day", "fares[0]", distance, distance, distance,
            "by distance: +Rp1.000 per 10 km beyond 25 km; no tap-out: the maximum"] in rows
    assert ["other routes", "05:00-07:00", "fares[1]", "Rp2.000", "Rp1.000", "Rp0",
            "flat"] in rows
    assert ["other routes", "07:00-05:00", "fares[2]", "Rp5.000", "Rp2.500", "Rp0",
            "flat"] in rows
    assert rows[rows.index(["caps", "daily", "weekly", "monthly"]) + 1:] == [
        ["regular", "Rp10.000", "Rp50.000", "Rp180.000"], ["student", "Rp5.000", "none", "none"],
        ["senior", "none", "none", "none"]]

    doc = json.loads(ok(transit("fares", "check", "--json", str(policy),
                                env=clean_env())).stdout)
    assert doc["ok"] is True
    assert [(f["route"], f["start"], f["end"], f["rule"]) for f in doc["fares"]] == [
        ("KRL-BOGOR", "00:00", "00:00", 0), ("*", "05:00", "07:00", 1),
        ("*", "07:00", "05:00", 2)]
    assert doc["fares"][0]["fares"]["senior"] == {"amount": 3000, "max": 13000}


def test_check_refuses_a_policy_that_leaves_minutes_unpriced(tmp_path: Path) -> None:
    policy = tmp_path / "early.toml"
    policy.write_text('[[fares]]\nroutes = ["R1"]\nstart = "05:00"\nend = "07:00"\n'
                      'amount = { regular = 2000 }\n')
    result = transit("fares", "check", str(policy), env=clean_env(), check=False)
    assert result.returncode == 1 and result.stdout == ""
    failed(result, str(policy), "no rule prices route R1 07:00-05:00",
           "any other route all day")


def test_the_gateway_will_not_start_on_a_policy_that_leaves_minutes_unpriced(
        tmp_path: Path) -> None:
    policy = tmp_path / "early.toml"
    policy.write_text('[[fares]]\nroutes = ["*"]\nstart = "05:00"\nend = "23:00"\n'
                      'amount = { regular = 2000 }\n')
    env = clean_env(TRANSIT_FARES=str(policy),
                    TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db")
    failed(transit("gateway", env=env, check=False), "TRANSIT_FARES",
           "no rule prices any other route 23:00-05:00")


def test_price_caps_a_regular_riders_week(tmp_path: Path) -> None:
    policy = tmp_path / "fares.toml"
    policy.write_text(CONTRACT_EXAMPLE)
    # A regular rider on the built-in policy (5,000 a ride, 2,000 from 05:00 to 07:00;
    # caps 10,000 a day, 50,000 a week Monday to Sunday); each ride 4 h after the last,
    # past the 120-minute transfer window, so each is a new journey.
    rides = [  # (local time, charge, why), worked out by hand
        ("2025-11-24 08:00", 5000, "Mon: day 5,000"),
        ("2025-11-24 12:00", 5000, "day 10,000: the daily cap"),
        ("2025-11-24 16:00", 0, "daily cap reached"),
        ("2025-11-25 08:00", 5000, "Tue"), ("2025-11-25 12:00", 5000, "week 20,000"),
        ("2025-11-26 08:00", 5000, "Wed"), ("2025-11-26 12:00", 5000, "week 30,000"),
        ("2025-11-27 08:00", 5000, "Thu"), ("2025-11-27 12:00", 5000, "week 40,000"),
        ("2025-11-28 06:00", 2000, "Fri, early fare: week 42,000"),
        ("2025-11-28 12:00", 5000, "week 47,000"),
        ("2025-11-29 12:00", 3000, "Sat: day 0 of 10,000, but 50,000 - 47,000 = 3,000 "
                                   "left of the week"),
        ("2025-11-29 16:00", 0, "the weekly cap reached"),
        ("2025-12-01 08:00", 5000, "Mon: a new week, a new month"),
    ]
    taps = tmp_path / "taps.csv"
    taps.write_text("card,ts,kind,vehicle_id,route_id,lat,lon\n" + "".join(
        f"{CARD},{when},entry,SBY-0042,R1,-7.2575,112.7521\n" for when, _, _ in rides))
    out = ok(transit("fares", "price", str(policy), str(taps), env=clean_env())).stdout
    lines = out.splitlines()
    assert columns(lines[0]) == ["service date", "time", "card", "route", "vehicle", "kind",
                                 "charge", "why"]
    charged = [columns(line) for line in lines[1:1 + len(rides)]]
    assert [(f"{c[0]} {c[1]}", c[6]) for c in charged] == [
        (f"{when}:00", f"Rp{amount:,}".replace(",", ".")) for when, amount, _ in rides]
    assert charged[0][2:6] == [CARD, "R1", "SBY-0042", "entry"]
    assert charged[0][7].startswith("New journey")
    assert "cap" in charged[11][7]  # why the Saturday ride cost 3,000
    totals = {tuple(columns(line)[2:5]) for line in lines[2 + len(rides):]}
    assert {("day", "2025-11-29", "Rp3.000"), ("week", "2025-11-24", "Rp50.000"),
            ("week", "2025-12-01", "Rp5.000"), ("month", "2025-11-01", "Rp50.000"),
            ("month", "2025-12-01", "Rp5.000"), ("total", "Rp55.000")} <= totals

    doc = json.loads(ok(transit("fares", "price", "--json", str(policy), str(taps),
                                env=clean_env())).stdout)
    saturday = doc["taps"][11]
    assert (saturday["amount"], saturday["capped_by"], saturday["cap"]) == (3000, 2000,
                                                                           "weekly")
    assert doc["cards"][CARD]["weeks"] == {"2025-11-24": 50000, "2025-12-01": 5000}


def test_price_names_every_bad_line_and_prices_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "fares.toml"
    policy.write_text(CONTRACT_EXAMPLE)
    taps = tmp_path / "taps.csv"
    taps.write_text("card,ts,kind,vehicle_id,route_id,lat,lon,category\n"
                    f"{CARD},2025-11-24 08:00,entry,SBY-0042,R1,,,\n"
                    f"{CARD},2025-11-24 25:00,entry,SBY-0042,R1,,,\n"
                    f"{CARD},2025-11-24 09:00,entry,SBY-0042,R1,,,vip\n"
                    + f"{CARD},yesterday,entry,SBY-0042,R1,,,\n" * 22)
    result = transit("fares", "price", str(policy), str(taps), env=clean_env(), check=False)
    assert result.returncode == 1 and result.stdout == ""
    failed(result, str(taps), "24 bad lines", "nothing priced")
    problems = result.stderr.splitlines()[:-1]
    assert problems[0].startswith(f"{taps}:3: ts '2025-11-24 25:00' is no real time")
    assert problems[1].startswith(f"{taps}:4: category 'vip' is not one of the policy's")
    assert problems[2].startswith(f"{taps}:5: ts 'yesterday' is not ISO-8601")
    assert len(problems) == 21 and problems[-1] == "... and 4 more bad lines"
