"""The exceptions, pure: what the operators see of a refused message or a tap the gateway
could not charge, the order they are listed in, and the cursor that pages through them.

Two sources feed the list. The quarantine keeps every message refused (malformed, an
unknown or revoked device, a bad signature, a conflict, ...); the inbox keeps the taps of
unknown cards and the trusted taps that broke a rule of contract section 10
(`wrong_vehicle`, `ts_out_of_range`), which the quarantine keeps too: those are listed
once, from the inbox, whose row holds the tap's facts as columns.

They are listed newest first by when the gateway received them; at the same millisecond
taps come before quarantined messages, and each source keeps the order its query gave
(`tap_id` or the record's id, descending), so that a cursor compared by the database
finds exactly the rows after it, whatever the database's collation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from transit.topics import ID_PATTERN
from transit.wire import CARD_PATTERN, MAX_INT

QUARANTINE = "quarantine"
TAP = "tap"
# The rank of each source among the exceptions received in the same millisecond: the
# higher, the earlier it is listed.
RANK = {QUARANTINE: 0, TAP: 1}
UNKNOWN_CARD = "unknown_card"
# The rules a trusted tap can break: kept in the inbox as `rejected` and in the quarantine.
TAP_RULES = ("wrong_vehicle", "ts_out_of_range")
REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")
# A quarantine record's id has at most 18 digits: every such number is a BIGINT.
CURSOR = re.compile(r"([0-9]{1,15}):(?:t:([A-Za-z0-9._-]{1,64}:[0-9]{1,19})|q:([0-9]{1,18}))")
CURSOR_PATTERN = f"^{CURSOR.pattern}$"
DAY_MS = 86_400_000
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: its last exception's receipt time, source and key (the tap's
    id, or the quarantine record's id as text)."""

    received_ms: int
    source: str
    key: str

    def text(self) -> str:
        """The cursor as the API gives it (`next`) and takes it back (`before`)."""
        return f"{self.received_ms}:{self.source[0]}:{self.key}"


def parse_cursor(text: str) -> Cursor | None:
    """A cursor as `Cursor.text` writes it, or None when `text` is not one."""
    found = CURSOR.fullmatch(text)
    if found is None:
        return None
    ms, tap_id, record = found.groups()
    if tap_id is not None:
        return Cursor(int(ms), TAP, tap_id)
    return Cursor(int(ms), QUARANTINE, str(int(record)))


@dataclass(frozen=True)
class ExceptionRecord:
    """One exception: a quarantined message or an inbox row of a tap not charged."""

    received_ms: int
    source: str  # QUARANTINE | TAP
    key: str  # the tap's id, or the quarantine record's id as text
    reason: str
    device_id: str | None
    tap_id: str | None
    card: str | None
    tap_ts: int | None
    vehicle_id: str | None
    route_id: str | None
    topic: str | None
    detail: str

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.received_ms, self.source, self.key)

    def as_json(self) -> dict[str, Any]:
        """The exception as the API shows it."""
        return {"ts": self.received_ms, "device_id": self.device_id, "reason": self.reason,
                "tap_id": self.tap_id, "card": self.card, "tap_ts": self.tap_ts,
                "source": self.source, "topic": self.topic, "detail": self.detail,
                "vehicle_id": self.vehicle_id, "route_id": self.route_id}


@dataclass(frozen=True)
class KeptFacts:
    """What a quarantined message's kept bytes say of the tap, where they say it."""

    card: str | None = None
    ts: int | None = None
    vehicle_id: str | None = None
    route_id: str | None = None


def kept_facts(payload: bytes) -> KeptFacts:
    """The card, time and vehicle a kept payload names, each only when it is one.

    The bytes are whatever reached the broker (4 KiB at most are kept): anything that is
    not a JSON object, or a field that is not of its wire form, gives nothing.
    """
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return KeptFacts()
    if not isinstance(obj, dict):
        return KeptFacts()
    ts = obj.get("ts")
    return KeptFacts(
        _matching(obj.get("card"), CARD_PATTERN),
        ts if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts <= MAX_INT
        else None,
        _matching(obj.get("vehicle_id"), ID_PATTERN),
        _matching(obj.get("route_id"), ID_PATTERN))


def _matching(value: object, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def tap_reason(status: str, reason: str | None) -> str:
    """The exception's reason for an inbox row: `unknown_card`, or the rule it broke."""
    return UNKNOWN_CARD if status == UNKNOWN_CARD else (reason or status)


def tap_detail(status: str, reason: str | None, accepted: bool, vehicle_id: str,
               ts: int) -> str:
    """A line for people on why an inbox row was not charged."""
    if status == UNKNOWN_CARD:
        told = "accepted at the reader" if accepted else f"denied at the reader ({reason})"
        return f"no such card is issued: nothing to charge; the tap was {told}"
    if reason == "wrong_vehicle":
        return (f"the tap names vehicle {vehicle_id}, not the one its device rode on at "
                f"ts {ts}")
    if reason == "ts_out_of_range":
        return (f"the tap's ts {ts} lies outside the window the gateway believes "
                "(contract section 10)")
    return f"the tap broke the rule {reason}"


def merge(taps: Iterable[ExceptionRecord], quarantined: Iterable[ExceptionRecord],
          limit: int) -> tuple[list[ExceptionRecord], Cursor | None]:
    """The first `limit` of both sources, newest first, and the cursor after them (None
    when nothing is left). Each source comes in its query's order and holds up to
    `limit` + 1 exceptions after the page's cursor."""
    # A stable sort on (time, source) alone: within a source, its query's order stands.
    merged = sorted([*taps, *quarantined], key=lambda e: (e.received_ms, RANK[e.source]),
                    reverse=True)
    # `reverse` keeps equal keys in their original order, as Python's sort promises.
    page = merged[:limit]
    return page, (page[-1].cursor if len(merged) > limit else None)


def fold_counts(quarantined: Iterable[tuple[str, int]],
                taps: Iterable[tuple[str, str | None, int]]) -> dict[str, int]:
    """Exceptions per reason, from the quarantine's (reason, n) and the inbox's (status,
    reason, n), most frequent first."""
    counts: dict[str, int] = {}
    for reason, n in quarantined:
        counts[reason] = counts.get(reason, 0) + n
    for status, rule, n in taps:
        key = tap_reason(status, rule)
        counts[key] = counts.get(key, 0) + n
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
