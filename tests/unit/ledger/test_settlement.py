"""How a settlement line is written: text that cannot run as a spreadsheet formula nor
break into a line of its own, integers as numbers (contract section 6)."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from ledger.settlement import csv_line, spreadsheet_text


def test_text_beginning_like_a_formula_gets_a_leading_quote() -> None:
    assert spreadsheet_text("=SUM(A1:A9)") == "'=SUM(A1:A9)"
    assert spreadsheet_text("+62") == "'+62"
    assert spreadsheet_text("-R1") == "'-R1"
    assert spreadsheet_text("@ops") == "'@ops"
    for harmless in ("", "SBY", "R1-", "a=b", "'=x", " =x"):
        assert spreadsheet_text(harmless) == harmless


def test_a_line_break_in_a_field_is_quoted() -> None:
    assert csv_line(["SBY\n2026-11-29,fare", 1]) == '"SBY\n2026-11-29,fare",1'
    assert csv_line(["a\rb", 2]) == '"a\rb",2'


def test_integers_are_numbers_and_text_is_guarded() -> None:
    line = csv_line(["2026-11-29", "correction", "-OP", '=HYPERLINK("x","y")', 1, -5000, "IDR"])
    assert line == "2026-11-29,correction,'-OP,\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\",1,-5000,IDR"


@given(st.lists(st.one_of(st.text(), st.integers()), min_size=1, max_size=6))
def test_a_line_reads_back_as_its_fields_with_no_formula(fields: list[str | int]) -> None:
    """Read back by a CSV reader, each text field is what was given (a guarded one with
    its `'` in front), each integer its decimal form; no text field starts a formula."""
    line = csv_line(fields)
    rows = list(csv.reader(io.StringIO(line + "\n", newline="")))
    assert len(rows) == 1, "a field's line break started a line of its own"
    assert rows[0] == [str(f) if isinstance(f, int) else spreadsheet_text(f) for f in fields]
    for given_field, read in zip(fields, rows[0], strict=True):
        if isinstance(given_field, str):
            assert not read.startswith(("=", "+", "-", "@"))
