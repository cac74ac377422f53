"""The exceptions' pure rules: what a quarantined message's kept bytes tell (and that no
payload can break them), the cursor, the merged order of the two sources and paging
through it, and the counts per reason."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from fare_gateway.ops.exceptions import (
    QUARANTINE,
    RANK,
    TAP,
    Cursor,
    ExceptionRecord,
    KeptFacts,
    fold_counts,
    kept_facts,
    merge,
    parse_cursor,
    tap_detail,
    tap_reason,
)
from tests.support.clients import make_tap

SECRET = bytes(32)


def record(source: str, ms: int, key: str, reason: str = "malformed") -> ExceptionRecord:
    return ExceptionRecord(ms, source, key, reason, "SBY-0042-A", None, None, None, None,
                           None, None, "")


# -- what a kept payload tells -------------------------------------------------------------

def test_a_kept_tap_tells_its_card_time_vehicle_and_route() -> None:
    tap = make_tap(SECRET, "SBY-0042-A", 7, "04A1B2C3D4E5F6", ts=1_764_313_202_123)
    assert kept_facts(tap.encode()) == KeptFacts("04A1B2C3D4E5F6", 1_764_313_202_123,
                                                 "SBY-0042", "R1")


def test_hostile_or_broken_payloads_tell_nothing_and_never_raise() -> None:
    for payload in (b"", b"\xff\xfe", b"not json", b"[1, 2]", b'"04A1B2C3"', b"[" * 4000,
                    b'{"card": ' * 1500 + b"1", b"{" + b" " * 4000,
                    b'{"ts": 1e999999}', b'{"card": "04A1B2C3D4E5F6"'):
        assert kept_facts(payload) == KeptFacts(), payload


def test_each_field_is_told_only_in_its_wire_form() -> None:
    wrong = {"card": "04a1b2c3d4e5f6", "ts": True, "vehicle_id": "SBY 0042",
             "route_id": "R" * 65}
    assert kept_facts(json.dumps(wrong).encode()) == KeptFacts()
    for card in ("04A1B2C", "0" * 33, 4711, None, ["04A1B2C3D4"], "04A1B2C3\n"):
        assert kept_facts(json.dumps({"card": card}).encode()).card is None, card
    for ts in (-1, 2**63, "1764313202123", 1.5, None):
        assert kept_facts(json.dumps({"ts": ts}).encode()).ts is None, ts
    right = {"card": "04A1B2C3", "ts": 0, "vehicle_id": "a.b_c-1", "route_id": "R" * 64}
    assert kept_facts(json.dumps(right).encode()) == KeptFacts("04A1B2C3", 0, "a.b_c-1",
                                                               "R" * 64)


@given(st.binary(max_size=300))
def test_no_bytes_make_the_payload_reading_fail(payload: bytes) -> None:
    facts = kept_facts(payload)
    assert facts.card is None or 8 <= len(facts.card) <= 32


# -- the cursor ------------------------------------------------------------------------------

def test_a_cursor_reads_back_as_written() -> None:
    for cursor in (Cursor(1_764_313_202_123, TAP, "SBY-0042-A:1234"),
                   Cursor(0, QUARANTINE, "17"), Cursor(5, TAP, "a.b:0")):
        assert parse_cursor(cursor.text()) == cursor
    assert Cursor(1_764_313_202_123, TAP, "SBY-0042-A:1234").text() == \
        "1764313202123:t:SBY-0042-A:1234"


def test_anything_else_is_no_cursor() -> None:
    for text in ("", "17", "1764313202123", "1764313202123:t:", "1764313202123:q:x",
                 "1764313202123:x:17", "-1:q:17", "1764313202123:t:SBY-0042-A",
                 "1764313202123:q:17:1", "1764313202123:q:" + "1" * 19,
                 "1" * 16 + ":q:1", "1764313202123:t:SBY 42:1", "1764313202123:q:17\n"):
        assert parse_cursor(text) is None, text


# -- the order and the pages ---------------------------------------------------------------

def test_newest_first_taps_before_messages_of_their_millisecond_each_in_its_order() -> None:
    taps = [record(TAP, 200, "D:9"), record(TAP, 200, "D:10"), record(TAP, 100, "D:1")]
    kept = [record(QUARANTINE, 300, "5"), record(QUARANTINE, 200, "4"),
            record(QUARANTINE, 100, "3")]
    page, after = merge(taps, kept, 10)
    assert [(e.received_ms, e.key) for e in page] == [
        (300, "5"), (200, "D:9"), (200, "D:10"), (200, "4"), (100, "D:1"), (100, "3")]
    assert after is None
    page, after = merge(taps, kept, 3)
    assert [e.key for e in page] == ["5", "D:9", "D:10"]
    assert after == Cursor(200, TAP, "D:10")


def after_cursor(source: list[ExceptionRecord], cursor: Cursor | None
                 ) -> list[ExceptionRecord]:
    """What the database's query for one source gives after a cursor (by the rules of
    fare_gateway/ops/exception_log.py), in its order."""
    def key(e: ExceptionRecord) -> tuple[int, int, str | int]:
        return (e.received_ms, RANK[e.source], e.key if e.source == TAP else int(e.key))

    ordered = sorted(source, key=key, reverse=True)
    if cursor is None:
        return ordered
    mark = (cursor.received_ms, RANK[cursor.source],
            cursor.key if cursor.source == TAP else int(cursor.key))
    return [e for e in ordered if (key(e)[:2] < mark[:2]) or (
        key(e)[:2] == mark[:2] and key(e)[2] < mark[2])]  # type: ignore[operator]


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=40,
                unique_by=lambda t: t[1]),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30)), max_size=40,
                unique_by=lambda t: t[1]),
       st.integers(1, 7))
def test_paging_lists_every_exception_once_in_order(
        taps: list[tuple[int, int]], kept: list[tuple[int, int]], limit: int) -> None:
    tap_rows = [record(TAP, ms, f"D:{n:02d}") for ms, n in taps]
    kept_rows = [record(QUARANTINE, ms, str(n)) for ms, n in kept]
    seen: list[ExceptionRecord] = []
    cursor: Cursor | None = None
    for _ in range(100):
        page, cursor = merge(after_cursor(tap_rows, cursor)[:limit + 1],
                             after_cursor(kept_rows, cursor)[:limit + 1], limit)
        assert len(page) <= limit
        seen.extend(page)
        if cursor is None:
            break
    assert seen == after_cursor(tap_rows + kept_rows, None)


# -- reasons and counts ----------------------------------------------------------------------

def test_a_tap_row_is_an_unknown_card_or_the_rule_it_broke() -> None:
    assert tap_reason("unknown_card", "not_authentic") == "unknown_card"
    assert tap_reason("rejected", "wrong_vehicle") == "wrong_vehicle"
    assert "denied at the reader (repeat)" in tap_detail("unknown_card", "repeat", False,
                                                         "SBY-0042", 1)
    assert "accepted at the reader" in tap_detail("unknown_card", None, True, "SBY-0042", 1)
    assert "SBY-0099" in tap_detail("rejected", "wrong_vehicle", True, "SBY-0099", 1)
    assert "1764313202123" in tap_detail("rejected", "ts_out_of_range", True, "V",
                                         1_764_313_202_123)


def test_counts_add_both_sources_most_frequent_first() -> None:
    counts = fold_counts([("bad_signature", 2), ("malformed", 5), ("conflict", 2)],
                         [("unknown_card", None, 1), ("unknown_card", "repeat", 2),
                          ("rejected", "wrong_vehicle", 4)])
    assert counts == {"malformed": 5, "wrong_vehicle": 4, "unknown_card": 3,
                      "bad_signature": 2, "conflict": 2}
    assert list(counts) == ["malformed", "wrong_vehicle", "unknown_card", "bad_signature",
                            "conflict"]
    assert fold_counts([], []) == {}
