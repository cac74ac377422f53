"""What the gateway's fingerprints cover: every column that decides money, so that a
column added later cannot be left out unnoticed; and that each covered field changes
the fingerprint, under a key the database does not hold."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Table

from fare_gateway.adapters.models import (
    ApiToken,
    DenyChange,
    DenyEntry,
    QuarantineRecord,
    TapRecord,
)
from fare_gateway.denylist import change_mac, entry_mac
from fare_gateway.integrity import Findings
from fare_gateway.taps.sql import QUARANTINE_COLUMNS, TAP_FIELDS, quarantine_payload, tap_mac
from fare_gateway.tokens import TOKEN_FIELDS, token_mac
from ledger.fingerprint import Fingerprints
from ledger.reconcile import LISTED
from tracking.adapters.models import Route
from tracking.integrity import FIELDS as ROUTE_FIELDS
from tracking.integrity import route_mac

KEYED = Fingerprints(b"\x11" * 32)
LINK = {"mac", "prev_mac", "chain_seq"}


def columns(model: Any) -> set[str]:
    table = model.__table__
    assert isinstance(table, Table)
    return {c.name for c in table.columns}


@pytest.mark.parametrize(("model", "covered", "left_out"), [
    # The receipt's fare is set after the insert and decides no money (the entries do).
    (TapRecord, TAP_FIELDS, {"mac", "fare"}),
    (ApiToken, TOKEN_FIELDS, {"mac"}),
    (Route, ROUTE_FIELDS, {"mac"}),
    # A quarantine record is known by its place in the chain, not by its row id.
    (QuarantineRecord, QUARANTINE_COLUMNS, LINK | {"id"}),
])
def test_every_column_but_the_fingerprint_is_covered(model: Any, covered: tuple[str, ...],
                                                     left_out: set[str]) -> None:
    assert len(set(covered)) == len(covered)
    assert set(covered) == columns(model) - left_out


def test_the_deny_list_s_fingerprints_cover_every_column() -> None:
    assert columns(DenyChange) - {"mac"} == {"version", "card", "op", "reason", "changed_ms"}
    assert columns(DenyEntry) - {"mac"} == {"card", "reason", "version"}
    change = (7, "04A1B2C3D4E5F6", "-", "cleared", 1_700_000_000_000)
    made = change_mac(KEYED, *change)
    for i in range(len(change)):
        other = list(change)
        other[i] = 8 if isinstance(other[i], int) else "+"
        assert change_mac(KEYED, *other) != made, i
    # One table's fingerprint never fits another's, and no key but the one used fits.
    assert entry_mac(KEYED, "04A1B2C3D4E5F6", "blocked", 7) != change_mac(
        KEYED, 7, "04A1B2C3D4E5F6", "+", "blocked", 7)
    assert change_mac(Fingerprints(None), *change) != made


def tap_row() -> dict[str, object]:
    return {"tap_id": "SBY-0042-A:1", "device_id": "SBY-0042-A", "seq": 1, "digest": "d" * 64,
            "card": "04A1B2C3D4E5F6", "kind": "entry", "accepted": True, "reason": None,
            "ts": 1_764_313_202_123, "vehicle_id": "SBY-0042", "route_id": "R1",
            "trip_id": None, "lat_e6": -7257500, "lon_e6": 112752100,
            "service_date": "2025-11-28", "status": "charged", "fare": 5000,
            "received_ms": 1_764_313_202_200, "sig": "s" * 64, "extra": None}


def test_each_field_of_a_tap_changes_its_fingerprint_but_the_fare() -> None:
    row = tap_row()
    made = tap_mac(KEYED, row)
    assert tap_mac(KEYED, {**row, "fare": 0}) == made
    for name in TAP_FIELDS:
        value = row[name]
        other = (not value if isinstance(value, bool) else value + 1 if isinstance(value, int)
                 else "x" if value is None else f"{value}x")
        assert tap_mac(KEYED, {**row, name: other}) != made, name


def test_tokens_routes_and_quarantine_records() -> None:
    token = ["0123456789abcdef", "finance", "h" * 64, "Siti Rahma", "", 1, None, None, None]
    assert token_mac(KEYED, token) != token_mac(KEYED, [token[0], "admin", *token[2:]])
    route = {"route_id": "R1", "agency_id": "SBY", "short_name": "R1", "long_name": "",
             "color": "", "text_color": ""}
    assert route_mac(KEYED, route) != route_mac(KEYED, {**route, "agency_id": "TSS"})
    # The stored bytes are covered through their digest: a byte changed is a new payload.
    assert quarantine_payload(1, "t", "malformed", "", None, None, 3, b"abc") != \
        quarantine_payload(1, "t", "malformed", "", None, None, 3, b"abd")


def test_findings_past_the_listed_are_counted() -> None:
    found = Findings()
    for i in range(LISTED + 3):
        found.add("taps changed", f"tap {i}")
    found.add("routes changed", "route R1")
    problems = found.problems()
    assert problems[:LISTED] == [f"tap {i}" for i in range(LISTED)]
    assert problems[LISTED:] == ["... and 3 more like the above (taps changed)", "route R1"]
