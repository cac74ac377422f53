"""The detail behind a settlement (contract section 9): one CSV line per ledger entry
posted in a business day, keyed exactly as `ledger.settlement.compute` keys it.

    entry_id,posted_at,service_date,line_type,tap_id,card,operator_id,route_id,category,amount

`line_type`, `service_date`, `operator_id`, `route_id` and `category` are the key of the
settlement line the entry is counted in (a top-up's or a transfer's service date is the
business day, its operator, route and category empty, whatever the entry holds), and
`amount` is the entry's amount as that line adds it up: summing `amount` over the
detail lines of one key gives the line's `amount`, and counting them its `count`. The
filters (`route_id`, `operator_id`) compare those keyed values. Text goes through
`ledger.settlement.spreadsheet_text` and is quoted as `csv_line` does it, so a line
reads like the settlement's own.

The entries are streamed in id order through a server-side cursor inside one read-only
snapshot, in chunks of lines: memory stays bounded whatever the day's size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.engine import Connection

from fare_gateway.finance.errors import BadQuery
from fare_gateway.riders.times import iso_z
from ledger.adapters.models import Entry
from ledger.settlement import (
    FORMULA_STARTS,
    LINE_TYPES,
    UNROUTED,
    BusinessCalendar,
    csv_line,
)

HEADER = ("entry_id,posted_at,service_date,line_type,tap_id,card,operator_id,route_id,"
          "category,amount")
STREAM_ROWS = 5000  # rows the server-side cursor fetches at a time
CHUNK_LINES = 2000  # lines written to the client at a time (about 200 KB)
FILTER = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a route or operator id (contract section 1)
# What makes `csv_line` write a line otherwise than joined with commas (besides a comma
# inside a field): a quote or a line break, which it quotes, and a field beginning like
# a formula, which it guards. Looked for as substrings: a tenth of a regular
# expression's cost per line.
SUSPECTS = ('"', "\r", "\n", ",=", ",+", ",-", ",@")

Key = tuple[str, str, str, str, str]  # line_type, service_date, operator, route, category


@dataclass(frozen=True)
class DetailFilter:
    """Which keyed values a line must have (None: any)."""

    route_id: str | None = None
    operator_id: str | None = None


EVERY_LINE = DetailFilter()


def parse_filter(route_id: str | None, operator_id: str | None) -> DetailFilter:
    """The filters of a request; a malformed id is BadQuery (a 400)."""
    for name, value in (("route_id", route_id), ("operator_id", operator_id)):
        if value is not None and not FILTER.fullmatch(value):
            raise BadQuery(f"bad_{name}", f"{name} must be 1-64 characters of "
                                          "A-Z a-z 0-9 . _ -")
    return DetailFilter(route_id, operator_id)


def settlement_key(kind: str, service_date: str | None, operator_id: str | None,
                   route_id: str | None, category: str | None, day_iso: str) -> Key:
    """The key of the settlement line an entry is counted in (`ledger.settlement.compute`).

    A kind the settlement does not know keeps its own name: settling such a day is
    refused, and its line here shows what would have to be looked at.
    """
    line_type = LINE_TYPES.get(kind, kind)
    if line_type in UNROUTED:
        return (line_type, service_date or day_iso, "", "", "")
    return (line_type, service_date or "", operator_id or "", route_id or "", category or "")


def plain(line: str, fields: int) -> bool:
    """Whether a line joined with commas is what `csv_line` writes for its `fields`
    fields: no field held a comma (the count says), a quote or a line break, and none
    starts like a formula (a negative number does too: such a line is left to
    `csv_line`, which writes numbers as they are)."""
    return (line.count(",") == fields - 1 and not line.startswith(FORMULA_STARTS)
            and not any(s in line for s in SUSPECTS))


def detail_line(fields: Sequence[str | int]) -> str:
    """One line without its end, byte for byte what `csv_line` writes.

    Nearly every line needs neither a quote nor a formula guard: those are joined as
    they are (a tenth of `csv_line`'s cost, which makes a writer per line); any other
    goes through `csv_line` itself.
    """
    line = ",".join([f if isinstance(f, str) else str(f) for f in fields])
    return line if plain(line, len(fields)) else csv_line(fields)


class Instants:
    """`posted_at` text for many nearby instants: the entries of a day come in id order,
    nearly in time order, so most share the minute before them (formatting a datetime
    costs ten times what the seconds and milliseconds do)."""

    def __init__(self) -> None:
        self._minute = -1
        self._prefix = ""

    def __call__(self, ms: int) -> str:
        minute, rest = divmod(ms, 60_000)
        if minute != self._minute:
            self._minute = minute
            self._prefix = iso_z(minute * 60_000)[:-7]  # YYYY-MM-DDTHH:MM:
        seconds, millis = divmod(rest, 1000)
        return f"{self._prefix}{seconds:02d}.{millis:03d}Z"


def detail_query(calendar: BusinessCalendar, day: date, wanted: DetailFilter) -> Select[Any]:
    """The day's entries in id order, narrowed by the filters where the database can:
    a routed entry's keyed route and operator are its own columns, an unrouted one has
    neither."""
    start, end = calendar.bounds(day)
    e = Entry.__table__.c
    stmt = (select(e.id, e.posted_ms, e.kind, e.service_date, e.tap_id, e.card,
                   e.operator_id, e.route_id, e.category, e.amount)
            .where(e.posted_ms >= start, e.posted_ms < end).order_by(e.id))
    if wanted.route_id is not None or wanted.operator_id is not None:
        stmt = stmt.where(e.kind.not_in(UNROUTED))
    if wanted.route_id is not None:
        stmt = stmt.where(e.route_id == wanted.route_id)
    if wanted.operator_id is not None:
        stmt = stmt.where(e.operator_id == wanted.operator_id)
    return stmt


def detail_lines(conn: Connection, calendar: BusinessCalendar, day: date,
                 wanted: DetailFilter = EVERY_LINE,
                 chunk_lines: int = CHUNK_LINES) -> Iterator[str]:
    """The header line, then the day's lines in chunks of `chunk_lines`, each line ended
    by a newline."""
    day_iso = day.isoformat()
    posted_at: Callable[[int], str] = Instants()
    yield HEADER + "\n"
    rows = conn.execute(detail_query(calendar, day, wanted).execution_options(
        stream_results=True, max_row_buffer=STREAM_ROWS))
    for part in rows.partitions(chunk_lines):
        lines = []
        for entry_id, posted_ms, kind, service_date, tap_id, card, operator_id, route_id, \
                category, amount in part:
            line_type, keyed_date, operator, route, keyed_category = settlement_key(
                kind, service_date, operator_id, route_id, category, day_iso)
            # `detail_line`, unrolled: this loop runs once per entry of the day. The
            # first field is a number, which `csv_line` never guards, and the last, the
            # amount, is left out of the check (a negative one is written as it is).
            head = (f"{entry_id},{posted_at(posted_ms)},{keyed_date},{line_type},"
                    f"{tap_id or ''},{card or ''},{operator},{route},{keyed_category}")
            if (head.count(",") == 8 and '"' not in head and "\n" not in head
                    and "\r" not in head and ",=" not in head and ",+" not in head
                    and ",-" not in head and ",@" not in head):
                line = f"{head},{amount}"
            else:
                line = csv_line((entry_id, posted_at(posted_ms), keyed_date, line_type,
                                 tap_id or "", card or "", operator, route, keyed_category,
                                 amount))
            lines.append(line)
        lines.append("")
        yield "\n".join(lines)
