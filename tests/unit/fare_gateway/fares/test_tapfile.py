"""Reading a CSV of taps for `transit fares price`: each form of `ts`, the defaults of
the optional columns, and every bad line named with its number before anything is priced."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fare_gateway.fares import tapfile
from fare_gateway.fares.engine import PricedTap
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.fares.tapfile import (
    MAX_REPORTED,
    MAX_TAPFILE_BYTES,
    MAX_TAPFILE_LINES,
    TapFileError,
    parse_taps,
    parse_ts,
    read_taps,
)

WIB = timezone(timedelta(hours=7))  # Asia/Jakarta: UTC+7, no DST
JAKARTA = ZoneInfo("Asia/Jakarta")
HEADER = "card,ts,kind,vehicle_id,route_id,lat,lon"
# 2025-11-24 08:00 in Jakarta is 01:00 UTC: 1763946000 s after the epoch, worked out as
# 20416 days to 2025-11-24 (55 years, 14 of them leap) * 86400 + 3600.
MON_0800_MS = (20416 * 86400 + 3600) * 1000


def problems(text: str) -> list[str]:
    with pytest.raises(TapFileError) as caught:
        parse_taps(text, builtin_policy(), "t.csv")
    return caught.value.problems


@pytest.mark.parametrize("text", [
    "2025-11-24T08:00:00+07:00", "2025-11-24T08:00+0700", "2025-11-24T01:00:00Z",
    "2025-11-24 08:00", "2025-11-24 08:00:00", "2025-11-24T08:00:00.000", str(MON_0800_MS)])
def test_each_form_of_ts_is_the_same_instant(text: str) -> None:
    assert MON_0800_MS == int(datetime(2025, 11, 24, 8, tzinfo=WIB).timestamp()) * 1000
    assert parse_ts(text, JAKARTA) == MON_0800_MS


def test_local_time_follows_the_policys_zone_and_refuses_what_the_clocks_skip() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_ts("2025-11-24 08:00", berlin) == MON_0800_MS + 6 * 3600_000  # UTC+1
    with pytest.raises(ValueError, match="does not exist in Europe/Berlin"):
        parse_ts("2025-03-30 02:30", berlin)
    with pytest.raises(ValueError, match="happens twice in Europe/Berlin"):
        parse_ts("2025-10-26 02:30", berlin)
    assert parse_ts("2025-10-26 02:30+02:00", berlin) + 3600_000 == parse_ts(
        "2025-10-26 02:30+01:00", berlin)


@pytest.mark.parametrize("text,words", [
    ("1763946000", "epoch seconds?"),
    ("24/11/2025 08:00", "is not ISO-8601"),
    ("2025-11-24", "is not ISO-8601"),
    ("2025-11-31 08:00", "is no real time"),
    ("2025-11-24 24:00", "is no real time"),
    ("1999-12-31T23:59:59Z", "before 2000"),
    ("2100-01-01 07:00", "after 2099"),
    ("9" * 40, "after 2099"),
])
def test_a_ts_that_is_none_of_the_forms_says_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("?", r"\?")):
        parse_ts(text, JAKARTA)


def test_optional_columns_default_and_positions_become_micro_degrees() -> None:
    got = parse_taps(f"""{HEADER},category
04A1B2C3D4E5F6,2025-11-24 08:00,entry,SBY-0042,R1,-7.2575,112.7521,
04B1B2C3D4E5F6,2025-11-24 08:05,entry,SBY-0042,R1,,,student

04A1B2C3D4E5F6,2025-11-24 08:30,exit,SBY-0042,R1, -7.3 , 112.8 ,
""", builtin_policy())
    # Line numbers count the blank line; seq defaults to the line, tap_id to device:seq.
    assert [(t.line, t.card) for t in got.taps] == [
        (2, "04A1B2C3D4E5F6"), (3, "04B1B2C3D4E5F6"), (5, "04A1B2C3D4E5F6")]
    assert got.taps[0].tap == PricedTap("CSV:2", "CSV", 2, MON_0800_MS, "SBY-0042", "R1",
                                        "entry", -7_257_500, 112_752_100)
    assert (got.taps[1].tap.lat_e6, got.taps[1].tap.lon_e6) == (0, 0)  # no position
    assert got.taps[2].tap.kind == "exit" and got.taps[2].tap.lat_e6 == -7_300_000
    assert got.categories == {"04A1B2C3D4E5F6": "regular", "04B1B2C3D4E5F6": "student"}


def test_given_device_seq_and_tap_id_are_kept_and_a_card_takes_the_category_it_names() -> None:
    got = parse_taps("""tap_id,seq,device_id,category,card,ts,kind,vehicle_id,route_id,lat,lon
,7,BUS-9-V,,C1,2025-11-24 08:00,entry,BUS-9,R1,,
t-2,8,BUS-9-V,student,C1,2025-11-24 09:00,entry,BUS-9,R1,,
""", builtin_policy())
    assert [(t.tap.tap_id, t.tap.device_id, t.tap.seq) for t in got.taps] == [
        ("BUS-9-V:7", "BUS-9-V", 7), ("t-2", "BUS-9-V", 8)]
    assert got.categories == {"C1": "student"}  # the line that leaves it out takes it too


def test_every_bad_line_is_named_with_all_that_is_wrong() -> None:
    found = problems(f"""{HEADER},category,seq
C1,2025-11-24 08:00,entry,SBY-0042,R1,,,,1
C1,2025-11-24 08:10,enter,SBY 0042,R1,-97,,vip,x
C1,2025-11-24 08:20,entry,SBY-0042,R1,,,student,1
C1,2025-11-24 08:30,entry,SBY-0042,R1,,,student,4
C1,2025-11-24 08:40,entry,SBY-0042,R1,,,senior,5
C1,2025-11-24 08:50,entry
C2,"2025-11-24
08:55",entry,SBY-0042,R1,,,,9
""")
    assert found[0].startswith("t.csv:3: ")
    for words in ("kind 'enter' is neither entry nor exit", "vehicle_id 'SBY 0042'",
                  "lat and lon must be given together", "category 'vip' is not one of the "
                  "policy's (regular, student, senior)", "seq 'x'"):
        assert words in found[0], (words, found[0])
    assert found[1:] == [
        "t.csv:4: tap_id CSV:1 is already on line 2",
        "t.csv:6: card C1 is senior here but student on line 5",
        "t.csv:7: 3 fields where the header has 9",
        # A quoted field over two lines is named by the line it starts on.
        "t.csv:8: ts '2025-11-24\\n08:55' is not ISO-8601 with an offset "
        '("2025-11-24T08:00:00+07:00"), local time "YYYY-MM-DD HH:MM[:SS]" or epoch '
        "milliseconds"]


def test_past_twenty_bad_lines_they_are_counted() -> None:
    text = HEADER + "\n" + "C1,soon,entry,B,R1,,\n" * 25
    with pytest.raises(TapFileError) as caught:
        parse_taps(text, builtin_policy(), "t.csv")
    assert len(caught.value.problems) == MAX_REPORTED == 20
    assert caught.value.problems[-1].startswith("t.csv:21: ts 'soon'")
    assert caught.value.bad_lines == 25
    assert str(caught.value) == "t.csv: 25 bad lines (the first 20 above); nothing priced"


@pytest.mark.parametrize("text,words", [
    ("", "empty: a header line"),
    (HEADER.replace(",lon", ""), "missing column lon"),
    (HEADER + ",catgory", "unknown column 'catgory'"),
    (HEADER + ",card", "column 'card' twice"),
    (HEADER + "\n", "no taps"),
    (HEADER + "\n" * MAX_TAPFILE_LINES, "no taps"),  # exactly the limit: read
    (HEADER + "\n" * MAX_TAPFILE_LINES + "C1", f"more than {MAX_TAPFILE_LINES:,} lines"),
])
def test_a_file_that_is_not_a_list_of_taps_is_one_error(text: str, words: str) -> None:
    with pytest.raises(TapFileError, match=words) as caught:
        parse_taps(text, builtin_policy(), "t.csv")
    assert caught.value.problems == []


def test_reading_is_bounded_and_errors_name_the_file(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(MAX_TAPFILE_BYTES + 1)  # sparse: no 50 MB written
    with pytest.raises(TapFileError, match=f"big.csv: larger than {MAX_TAPFILE_BYTES:,}"):
        read_taps(big, builtin_policy())
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + b"\nC\xe9,x\n")
    with pytest.raises(TapFileError, match="latin.csv: not UTF-8 text"):
        read_taps(latin, builtin_policy())
    with pytest.raises(TapFileError, match="missing.csv: cannot read"):
        read_taps(tmp_path / "missing.csv", builtin_policy())
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"\nC1,2025-11-24 08:00,entry,B,R1,,\n")
    assert [t.card for t in read_taps(bom, builtin_policy()).taps] == ["C1"]


def test_local_times_far_outside_the_century_are_refused_as_such() -> None:
    policy = builtin_policy()
    for text, words in (("0001-01-01 00:00", "before 2000"), ("9999-12-31 23:59", "after 2099")):
        with pytest.raises(ValueError, match=words):
            parse_ts(text, policy.tz)


def test_lone_carriage_returns_count_toward_the_line_limit(monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setattr(tapfile, "MAX_TAPFILE_LINES", 3)
    text = "card,ts,kind,vehicle_id,route_id,lat,lon\r" + "\r".join(
        f"04A1B2C3D4E5F6,2025-11-24 08:0{i},entry,BUS,R1,," for i in range(3))
    with pytest.raises(TapFileError, match="more than 3 lines"):
        parse_taps(text, builtin_policy())
