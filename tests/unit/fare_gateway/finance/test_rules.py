"""The finance back office's pure rules: the float's roll-forward, the detail's keys and
lines, what a card search looks for, and the four-eyes rules of adjustments."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fare_gateway.cli.money import float_table
from fare_gateway.finance.adjustments import (
    FIELDS,
    UNNAMED,
    AdjustmentRecord,
    Holder,
    adjustment_mac,
    check_decider,
    check_named,
    may_post,
    parse_ask,
    same_ask,
    same_holder,
)
from fare_gateway.finance.detail import (
    HEADER,
    Instants,
    detail_line,
    parse_filter,
    settlement_key,
)
from fare_gateway.finance.errors import (
    BadQuery,
    BadValue,
    Conflict,
    SameHolder,
    UnnamedHolder,
)
from fare_gateway.finance.rollforward import FIELD_OF_KIND, roll_forward
from fare_gateway.finance.search import CardQuery, parse_query
from fare_gateway.finance.text import has_control, holder_key
from fare_gateway.riders.times import iso_z
from ledger.fingerprint import Fingerprints
from ledger.settlement import LINE_TYPES, csv_line

DAY = date(2025, 11, 27)
BOUNDS = (1764187200000, 1764273600000)

# -- the float -----------------------------------------------------------------------


def test_the_float_rolls_forward_from_three_sums() -> None:
    """A worked day: cards held 120,000 at its start (all postings 131,000 less the
    day's 6,000 and the next day's 5,000); the day added 50,000 in top-ups, took 17,500
    in fares, gave 5,000 back by a correction and 2,000 by a refund, moved 9,000 between
    cards, debited 1,500 by an adjustment. The balances now (136,000) less the 5,000
    posted since the day ended give the cards' total at its end, 131,000."""
    since = {("topup", True): 50_000, ("fare", True): -17_500, ("correction", True): 5_000,
             ("refund", True): 2_000, ("transfer", True): 0, ("adjustment", True): -1_500,
             ("topup", False): 10_000, ("fare", False): -5_000}
    during = 50_000 - 17_500 + 5_000 + 2_000 - 1_500
    after = 5_000
    result = roll_forward(DAY, "IDR", 120_000 + during + after, since, 136_000, BOUNDS, True)
    assert result.as_json() == {
        "date": "2025-11-27", "currency": "IDR", "status": "closed", "opening": 120_000,
        "topups": 50_000, "fares": -17_500, "corrections": 5_000, "refunds": 2_000,
        "transfers": 0, "adjustments": -1_500, "closing": 158_000, "cards_total": 131_000,
        "business_day": {"from_ms": BOUNDS[0], "to_ms": BOUNDS[1]}}
    assert not result.ties_out  # the balances say 136,000 - 5,000: 27,000 short
    tied = roll_forward(DAY, "IDR", 120_000 + during + after, since, 163_000, BOUNDS, False)
    assert (tied.closing, tied.cards_total, tied.ties_out) == (158_000, 158_000, True)
    assert tied.as_json()["status"] == "open"


def test_a_day_with_nothing_posted_carries_the_opening_over() -> None:
    result = roll_forward(DAY, "IDR", 70_000, {}, 70_000, BOUNDS, True)
    assert (result.opening, result.closing, result.cards_total) == (70_000, 70_000, 70_000)
    assert all(result.as_json()[name] == 0 for name in FIELD_OF_KIND.values())


def test_every_settlement_line_type_has_a_figure_and_an_unknown_kind_is_refused() -> None:
    assert set(FIELD_OF_KIND) == set(LINE_TYPES)
    with pytest.raises(Conflict, match="bonus"):
        roll_forward(DAY, "IDR", 0, {("bonus", True): 5}, 5, BOUNDS, True)


def test_the_command_prints_every_figure_aligned() -> None:
    figures = roll_forward(DAY, "IDR", 25_000, {("topup", True): 25_000}, 25_000, BOUNDS,
                           True).as_json()
    table = float_table(figures).splitlines()
    assert table[0] == "float of business day 2025-11-27 (closed), IDR"
    assert table[2].startswith("+ top-ups") and table[2].endswith("25,000")
    assert table[-1].startswith("cards total") and table[-1].endswith("25,000")
    assert len({len(line) for line in table[1:] if not line.startswith("-")}) == 1


# -- the detail ----------------------------------------------------------------------


def test_entries_are_keyed_as_the_settlement_keys_them() -> None:
    day = DAY.isoformat()
    assert settlement_key("topup", None, None, None, None, day) == ("topup", day, "", "", "")
    # A transfer is unrouted whatever its entry holds.
    assert settlement_key("transfer", "2025-11-20", "SBY", "R1", "regular", day) == (
        "transfer", "2025-11-20", "", "", "")
    assert settlement_key("fare", "2025-11-26", "SBY", "R1", "student", day) == (
        "fare", "2025-11-26", "SBY", "R1", "student")
    assert settlement_key("refund", "2025-11-26", "unassigned", None, None, day) == (
        "refund", "2025-11-26", "unassigned", "", "")
    # Adjustments, like top-ups, belong to no route and are dated by the business day.
    assert settlement_key("adjustment", None, None, None, None, day) == (
        "adjustment", day, "", "", "")


def test_the_header_names_the_contract_columns() -> None:
    assert HEADER.split(",") == ["entry_id", "posted_at", "service_date", "line_type",
                                 "tap_id", "card", "operator_id", "route_id", "category",
                                 "amount"]


TEXT = st.one_of(st.text(max_size=12), st.sampled_from(["", "R1", "-R1", "=X", "a,b", 'q"',
                                                       "l\nm", "c\r", "@x", "+62"]))


@given(st.lists(st.one_of(TEXT, st.integers()), min_size=10, max_size=10))
def test_a_detail_line_is_what_the_settlement_writer_writes(fields: list[str | int]) -> None:
    assert detail_line(fields) == csv_line(fields)


@given(st.integers(min_value=0, max_value=253_402_300_798_999))
def test_posted_at_is_iso_utc_with_milliseconds(ms: int) -> None:
    instants = Instants()
    assert instants(ms) == iso_z(ms)
    assert instants(ms - ms % 1000) == iso_z(ms - ms % 1000)  # the same second, cached
    assert instants(ms + 1000) == iso_z(ms + 1000)


def test_filters_are_route_and_operator_ids() -> None:
    assert parse_filter("R1", None).route_id == "R1"
    assert parse_filter(None, "unassigned").operator_id == "unassigned"
    for bad in ("", "R 1", "x" * 65, "R1;"):
        with pytest.raises(BadQuery):
            parse_filter(bad, None)
        with pytest.raises(BadQuery):
            parse_filter(None, bad)


# -- card search ---------------------------------------------------------------------


def test_a_query_is_a_token_prefix_or_an_email() -> None:
    assert parse_query("04ab") == CardQuery("prefix", "04AB")
    assert parse_query("04A1B2C3D4E5F6") == CardQuery("prefix", "04A1B2C3D4E5F6")
    assert parse_query("Siti@Contoh.ID") == CardQuery("email", "siti@contoh.id")
    assert parse_query(" siti@contoh.id ") == CardQuery("email", "siti@contoh.id")
    # "Cards whose token starts with Q", however short: the 50 cap bounds the answer.
    assert parse_query("0") == CardQuery("prefix", "0")
    assert parse_query("04a") == CardQuery("prefix", "04A")
    assert parse_query("F" * 32) == CardQuery("prefix", "F" * 32)
    for bad in (None, "", "04AG", "04 AB", "x" * 33, "0" * 33, "a@" + "b" * 253,
                "x@y\x00", "\x00@", "04\x00A", "a@b\x7f", "a@b\x85c"):
        with pytest.raises(BadQuery) as exc:
            parse_query(bad)
        assert exc.value.code == "bad_query", bad


# -- adjustments ---------------------------------------------------------------------


def test_an_adjustment_must_name_a_card_a_whole_non_zero_amount_a_reason_and_a_reference(
        ) -> None:
    ask = parse_ask("04AABBCCDD", -1500, "charged twice on 27 Nov", "ADJ-2025-0001")
    assert (ask.card, ask.amount, ask.reference) == ("04AABBCCDD", -1500, "ADJ-2025-0001")
    refused = {
        "bad_card": ("04aabbccdd", 100, "why", "r"),
        "bad_amount": ("04AABBCCDD", 0, "why", "r"),
    }
    for amount in (True, 1.0, "100", None, 10_000_001, -10_000_001):
        refused[f"bad_amount {amount!r}"] = ("04AABBCCDD", amount, "why", "r")
    for reason in ("", "   ", None, 5, "x" * 501, "x\x00y", "two\nlines", "tab\there",
                   "x\x9by", "lone \ud800 surrogate"):
        refused[f"bad_reason {reason!r:.20}"] = ("04AABBCCDD", 100, reason, "r")
    for reference in ("", "a b", "x" * 65, None, 7, "r\x00", "r\n"):
        refused[f"bad_reference {reference!r:.20}"] = ("04AABBCCDD", 100, "why", reference)
    for what, args in refused.items():
        with pytest.raises(BadValue) as exc:
            parse_ask(*args)
        assert exc.value.code == what.split()[0], what
    assert parse_ask("04AABBCCDD", 10_000_000, "x" * 500, "r" * 64).amount == 10_000_000
    assert parse_ask("04AABBCCDD", 5, "Tarif salah — dikembalikan ✓", "r").reason == (
        "Tarif salah — dikembalikan ✓")  # any printable text is a reason


def test_four_eyes_the_asker_may_not_decide() -> None:
    siti, budi = Holder("aa01", "Siti"), Holder("bb02", "Budi")
    assert same_holder(siti, siti)
    assert same_holder(siti, Holder("cc03", " siti "))  # another token, the same holder
    assert not same_holder(siti, budi)
    # Unnamed tokens are told apart by their id alone.
    assert not same_holder(Holder("aa01"), Holder("cc03"))
    assert same_holder(Holder("aa01"), Holder("aa01", "Siti"))
    record = AdjustmentRecord(7, "04AABBCCDD", 500, "why", "ref-1", "pending", 0, siti)
    with pytest.raises(SameHolder) as exc:
        check_decider(record, Holder("cc03", "SITI"))
    assert exc.value.code == "same_holder"
    check_decider(record, budi)
    assert same_ask(record, parse_ask("04AABBCCDD", 500, "why", "ref-1"))
    assert not same_ask(record, parse_ask("04AABBCCDD", 501, "why", "ref-1"))
    assert not same_ask(record, parse_ask("04AABBCCDD", 500, "why not", "ref-1"))


def test_names_are_compared_as_a_person_reads_them() -> None:
    sari = Holder("aa01", "Sari Wulandari")
    for typed in ("Sari  Wulandari", " sari wulandari ", "SARI\tWULANDARI",
                  "\uff33\uff41\uff52\uff49 Wulandari",  # full-width letters
                  "Sa\u200bri Wulandari", "Sari\u00a0Wulandari", "Sari\u3000Wulandari"):
        assert same_holder(sari, Holder("cc03", typed)), typed
    for other in ("Sari Wulandar", "Sari W.", "Budi Santoso"):
        assert not same_holder(sari, Holder("cc03", other)), other
    assert holder_key("  \uff33ARI  wulandari ") == "sari wulandari"
    assert holder_key("Stra\u00dfe") == holder_key("STRASSE")  # case folded in full
    assert holder_key(" \u200b\u00a0 ") == ""


def test_four_eyes_needs_a_named_token() -> None:
    for unnamed in ("", "   ", "\u200b", "\u00a0\t"):
        with pytest.raises(UnnamedHolder) as exc:
            check_named(Holder("aa01", unnamed))
        assert (exc.value.code, str(exc.value)) == ("unnamed_holder", UNNAMED)
    assert "transit tokens create --role finance --name NAME" in UNNAMED
    check_named(Holder("aa01", "Siti"))


def test_control_characters_are_told_apart_from_text() -> None:
    for bad in ("\x00", "a\nb", "\x1b[31m", "\x7f", "\x85", "\ud800", "ok\u2028x", "\u2029"):
        assert has_control(bad), repr(bad)
    for good in ("", "plain", "Rp 5.000 — ✓", "\u00a0", "\u200b", "日本"):
        assert not has_control(good), repr(good)


def test_an_adjustments_fingerprint_covers_every_field_and_needs_the_key() -> None:
    row: dict[str, object] = {
        "id": 7, "card": "04AABBCCDD", "amount": 500, "reason": "why", "reference": "ref-1",
        "requested_by": "aa01", "requested_name": "Siti", "requested_ms": 1, "status": "posted",
        "decided_by": "bb02", "decided_name": "Budi", "decided_ms": 2, "entry_id": 42}
    assert set(row) == set(FIELDS)
    keyed = Fingerprints(b"k" * 32)
    mac = adjustment_mac(keyed, row)
    assert mac == adjustment_mac(Fingerprints(b"k" * 32), dict(row))
    assert mac != adjustment_mac(Fingerprints(b"j" * 32), row)
    for name in FIELDS:
        changed = {**row, name: "x" if isinstance(row[name], int) else 1}
        assert adjustment_mac(keyed, changed) != mac, name


def test_a_debit_may_not_take_a_card_below_zero() -> None:
    assert may_post(500, 0) and may_post(-500, 500) and may_post(-500, 501)
    assert not may_post(-500, 499)


def test_an_adjustment_as_the_api_shows_it() -> None:
    record = AdjustmentRecord(7, "04AABBCCDD", -500, "why", "ref-1", "posted",
                              1764313202123, Holder("aa01", "Siti"), 1764313262123,
                              Holder("bb02", "Budi"), 42)
    assert record.as_json("IDR") == {
        "adjustment_id": 7, "status": "posted", "card": "04AABBCCDD", "amount": -500,
        "currency": "IDR", "reason": "why", "reference": "ref-1",
        "requested_by": {"token_id": "aa01", "name": "Siti"},
        "requested_at": "2025-11-28T07:00:02.123Z",
        "decided_by": {"token_id": "bb02", "name": "Budi"},
        "decided_at": "2025-11-28T07:01:02.123Z", "entry_id": 42}
    pending = AdjustmentRecord(8, "04AABBCCDD", 500, "why", "ref-2", "pending", 0,
                               Holder("aa01"))
    shown = pending.as_json("IDR")
    assert (shown["decided_by"], shown["decided_at"], shown["entry_id"]) == (None, None, None)


def test_the_export_writes_each_entry_as_detail_line_does_in_chunks() -> None:
    """The export's own loop (in SQLite, in process) against `detail_line`: odd ids
    (a formula-like route, a comma and a quote in a tap id, a line break), negative
    amounts, an unrouted top-up, a kind the settlement does not know; in chunks of 2."""
    from sqlalchemy import insert

    from fare_gateway.finance.detail import DetailFilter, detail_lines
    from fare_gateway.schema import load_all_models
    from ledger.adapters.db import Base, make_engine
    from ledger.adapters.models import Entry
    from ledger.settlement import BusinessCalendar

    load_all_models()
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    start = BusinessCalendar().bounds(DAY)[0]
    rows = [  # kind, service_date, tap_id, card, operator, route, category, amount
        ("fare", "2025-11-27", "SBY-1:1", "04AA0001", "SBY", "R1", "regular", 5000),
        ("correction", "2025-11-26", 'SBY-1:"2",x', "04AA0001", "SBY", "-R1", "regular",
         -5000),
        ("topup", None, None, "04AA0002", None, "R9", None, 20000),
        ("refund", "2025-11-27", None, "04AA0002", "=X", "R\n2", "student", -2000),
        ("bonus", None, None, "04AA0003", None, None, None, 7),
    ]
    with engine.begin() as conn:
        conn.execute(insert(Entry.__table__), [
            {"idem_key": f"k{i}", "kind": kind, "digest": "d", "amount": amount,
             "posted_ms": start + i * 61_001, "currency": "IDR", "card": card,
             "tap_id": tap_id, "reference": None, "service_date": service_date,
             "operator_id": operator, "route_id": route, "category": category}
            for i, (kind, service_date, tap_id, card, operator, route, category, amount)
            in enumerate(rows)])
    with engine.connect() as conn:
        chunks = list(detail_lines(conn, BusinessCalendar(), DAY, chunk_lines=2))
        by_route = "".join(detail_lines(conn, BusinessCalendar(), DAY, DetailFilter("R1")))
    assert chunks[0] == HEADER + "\n" and len(chunks) == 1 + 3
    written = "".join(chunks[1:])
    expected = []
    for i, (kind, service_date, tap_id, card, operator, route, category, amount) in \
            enumerate(rows):
        key = settlement_key(kind, service_date, operator, route, category, "2025-11-27")
        expected.append(detail_line([i + 1, iso_z(start + i * 61_001), key[1], key[0],
                                     tap_id or "", card, key[2], key[3], key[4], amount]))
    assert written == "\n".join(expected) + "\n"
    assert "'-R1" in expected[1] and '"SBY-1:""2"",x"' in expected[1]
    assert expected[2].endswith(",topup,,04AA0002,,,,20000")
    assert by_route == HEADER + "\n" + expected[0] + "\n"  # "-R1" is another route
