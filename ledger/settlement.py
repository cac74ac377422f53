"""Daily settlement (contract section 6): the lines finance signs off, and the chain.

A business day `D` holds every entry *posted* from `service_day_start` on `D` to the same
time on `D+1`, local time. Entries never change and each belongs to exactly one business
day, so a closed day settles to the same bytes every time. Entries are streamed in id
order (bounded memory, whatever the day's size) and folded into the lines and into a
root hash over every entry and posting of the day (`entries_sha256`), which
`transit reconcile` recomputes to detect changes made behind the application's back.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import audit
from ledger.adapters.db import Sessions
from ledger.adapters.models import Entry, Posting, SettlementRecord
from ledger.adapters.sql import insert_ignore
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.integrity import SETTLEMENT_FIELDS, settlement_fields, settlement_mac

HEADER = ("settlement_date,line_type,service_date,operator_id,route_id,category,count,"
          "amount,currency")
# The line each entry kind settles under (contract section 6). Top-ups, transfers and
# adjustments belong to no route (they are dated by the business day); a refund to the
# route of the fare it gives back.
LINE_TYPES = {"fare": "fare", "correction": "correction", "topup": "topup",
              "refund": "refund", "transfer": "transfer", "adjustment": "adjustment"}
UNROUTED = ("topup", "transfer", "adjustment")
STREAM_ROWS = 5000
EMPTY_SHA256 = hashlib.sha256((HEADER + "\n").encode()).hexdigest()
MIN_DAY = date(2000, 1, 1)
MAX_DAY = date(9998, 12, 31)
DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
# What a spreadsheet reads as the start of a formula in a text cell (contract section 6).
FORMULA_STARTS = ("=", "+", "-", "@")


class SettlementError(ValueError):
    """A settlement that cannot be made, or a settled day that no longer matches."""


def parse_day(value: str) -> date:
    """A business date written YYYY-MM-DD; raises SettlementError otherwise."""
    if not DAY_PATTERN.fullmatch(value):
        raise SettlementError(f"the date must be YYYY-MM-DD, got {value[:40]!r}")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise SettlementError(f"no such date: {value} (expected a real YYYY-MM-DD)") from None
    if not MIN_DAY <= day <= MAX_DAY:
        raise SettlementError(f"business day {value} is out of range ({MIN_DAY.isoformat()} "
                              f"to {MAX_DAY.isoformat()})")
    return day


@dataclass(frozen=True)
class BusinessCalendar:
    """Where business days begin and end, in the network's local time."""

    timezone: str = "Asia/Jakarta"
    day_start_min: int = 180

    def bounds(self, day: date) -> tuple[int, int]:
        """[start, end) of business day `day`, as epoch milliseconds."""
        if not MIN_DAY <= day <= MAX_DAY:
            raise SettlementError(f"business day {day.isoformat()} is out of range "
                                  f"({MIN_DAY.isoformat()} to {MAX_DAY.isoformat()})")
        tz = ZoneInfo(self.timezone)
        start = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(
            minutes=self.day_start_min)
        end = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(
            days=1, minutes=self.day_start_min)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def day_of(self, ms: int) -> date:
        """The business day a posting time falls in."""
        local = datetime.fromtimestamp(ms / 1000, ZoneInfo(self.timezone))
        return (local - timedelta(minutes=self.day_start_min)).date()


@dataclass(frozen=True)
class Settlement:
    """One business day's file and manifest, as bytes ready to write."""

    day: date
    csv: bytes
    manifest: dict[str, object]
    final: bool

    @property
    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode()

    @property
    def sha256(self) -> str:
        return str(self.manifest["sha256"])


Progress = Callable[[int], None]


def spreadsheet_text(value: str) -> str:
    """A text field as written to a file finance opens in a spreadsheet.

    Ids reach the ledger from GTFS feeds and older databases; one beginning like a
    formula (`=HYPERLINK(...)`, `+1`, `-2`, `@SUM(...)`) gets a leading `'`, which
    spreadsheets read as "this cell is text" and do not show.
    """
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_line(fields: Sequence[str | int]) -> str:
    """One CSV line, without its end: integers as numbers (a negative amount stays
    `-5000`), text through `spreadsheet_text`, RFC 4180 quoting only where a field needs
    it."""
    out = io.StringIO()
    # The writer quotes a field holding a character of its line terminator, and only
    # those: written with none, an id holding a line break would start a forged line.
    csv.writer(out, lineterminator="\r\n").writerow(
        [str(f) if isinstance(f, int) else spreadsheet_text(f) for f in fields])
    return out.getvalue().removesuffix("\r\n")


def count_entries(session: Session, calendar: BusinessCalendar, day: date) -> int:
    start, end = calendar.bounds(day)
    return int(session.scalar(select(func.count()).select_from(Entry).where(
        Entry.posted_ms >= start, Entry.posted_ms < end)) or 0)


def chain_hash(previous_chain: str | None, day: str, sha256: str, entries_sha256: str,
               entries: int) -> str:
    """Links a settled day to every day before it: changing any settled day, its file or
    its entries changes this hash for it and for every later day."""
    return hashlib.sha256(json.dumps([previous_chain or "", day, sha256, entries_sha256,
                                      entries]).encode()).hexdigest()


def compute(session: Session, calendar: BusinessCalendar, day: date, currency: str,
            previous_sha256: str | None, final: bool,
            progress: Progress | None = None, previous_chain: str | None = None
            ) -> Settlement:
    """Stream a business day's entries into its lines, totals and root hash."""
    start, end = calendar.bounds(day)
    stmt = (select(Entry.id, Entry.idem_key, Entry.kind, Entry.amount, Entry.posted_ms,
                   Entry.currency, Entry.card, Entry.tap_id, Entry.reference,
                   Entry.service_date, Entry.operator_id, Entry.route_id, Entry.category,
                   Entry.digest, Posting.id, Posting.account_id, Posting.amount)
            .join(Posting, Posting.entry_id == Entry.id)
            .where(Entry.posted_ms >= start, Entry.posted_ms < end)
            .order_by(Entry.id, Posting.id))
    groups: dict[tuple[str, str, str, str, str], list[int]] = {}
    root = hashlib.sha256()
    entries = 0
    last_id = None
    pending = 0
    day_iso = day.isoformat()
    # Core rows through a server-side cursor: bounded memory, and half the cost of ORM
    # row handling on a million-entry day.
    rows = session.connection().execute(
        stmt.execution_options(stream_results=True, max_row_buffer=STREAM_ROWS))
    for row in rows:
        (entry_id, idem_key, kind, amount, posted_ms, entry_currency, card, tap_id, ref,
         service_date, operator_id, route_id, category, digest, posting_id, account_id,
         posting_amount) = row
        if entry_id != last_id:
            last_id = entry_id
            entries += 1
            pending += 1
            if pending == 1000 and progress is not None:
                progress(pending)
                pending = 0
            if entry_currency != currency:
                raise SettlementError(f"entry {entry_id} is in {entry_currency}, not {currency}")
            line_type = LINE_TYPES.get(kind)
            if line_type is None:
                raise SettlementError(f"entry {entry_id} has an unknown kind {kind!r}")
            if line_type in UNROUTED:
                key = (line_type, service_date or day_iso, "", "", "")
            else:
                key = (line_type, service_date or "", operator_id or "", route_id or "",
                       category or "")
            group = groups.setdefault(key, [0, 0])
            group[0] += 1
            group[1] += amount
            # JSON, not a joined string: no field can borrow characters from the next.
            root.update(json.dumps(["E", entry_id, idem_key, kind, amount, posted_ms,
                                    entry_currency, card, tap_id, ref, service_date,
                                    operator_id, route_id, category, digest]).encode() + b"\n")
        root.update(json.dumps(["P", posting_id, account_id, posting_amount]).encode() + b"\n")
    if progress is not None and pending:
        progress(pending)
    lines = [HEADER]
    totals = dict.fromkeys(("fare", "correction", "topup", "refund", "transfer",
                            "adjustment"), 0)
    # Sorted as written, so that a reader sorting the file's own key columns agrees.
    for key in sorted(groups, key=lambda k: ([spreadsheet_text(f) for f in k], k)):
        count, amount = groups[key]
        totals[key[0]] += amount
        lines.append(csv_line([day_iso, *key, count, amount, currency]))
    csv_bytes = ("\n".join(lines) + "\n").encode()
    manifest: dict[str, object] = {
        "settlement_date": day_iso,
        "currency": currency,
        "lines": len(lines) - 1,
        "totals": totals,
        "entries": entries,
        "sha256": hashlib.sha256(csv_bytes).hexdigest(),
        "previous_sha256": previous_sha256,
        "entries_sha256": root.hexdigest(),
        "chain_sha256": chain_hash(previous_chain, day_iso, hashlib.sha256(csv_bytes).hexdigest(),
                                   root.hexdigest(), entries),
        "business_day": {"from_ms": start, "to_ms": end},
        "status": "final" if final else "provisional",
    }
    return Settlement(day, csv_bytes, manifest, final)


CLOSE_MARGIN_MS = 60_000
"""How long after its end a business day stays provisional. A posting transaction stamps
its entries and commits within milliseconds (its cards are locked before it stamps), so a
minute is far more than any of them takes."""


RECORDED = "settlement.recorded"
"""The audit action of a day recorded in the chain; its detail holds the record's hashes,
which `transit reconcile` holds the record to (a record deleted or rewritten shows)."""


class Settler:
    """Settles business days in order, recording each closed day in the chain.

    Each record is fingerprinted under `fingerprints` (`ledger.integrity`), and each day
    recorded is written to the audit trail in the same transaction. Without them the
    fingerprints are unkeyed (`ledger.fingerprint`).
    """

    def __init__(self, calendar: BusinessCalendar, currency: str,
                 clock: Callable[[], int] = lambda: int(time.time() * 1000),
                 fingerprints: Fingerprints | None = None) -> None:
        self.calendar = calendar
        self.currency = currency
        self.clock = clock
        self.fingerprints = fingerprints or Fingerprints(None)

    def is_closed(self, day: date) -> bool:
        """Whether `day` can be settled for good: its end is `CLOSE_MARGIN_MS` past.

        An entry takes its posting time before its transaction commits, so an entry
        stamped just before the end may commit just after it; the margin lets those
        commits land before the day is recorded in the chain.
        """
        return self.clock() >= self.calendar.bounds(day)[1] + CLOSE_MARGIN_MS

    def first_day(self, session: Session) -> date | None:
        first = session.scalar(select(func.min(Entry.posted_ms)))
        return None if first is None else self.calendar.day_of(int(first))

    def settle(self, session: Session, day: date,
               progress: Progress | None = None, actor: Actor | None = None) -> Settlement:
        """The settlement of `day`; closed days before it are settled and chained first.

        The caller commits. A day still open gives a provisional settlement that is not
        recorded: entries may still be posted in it. Each day recorded is written to the
        audit trail as done by `actor` (the settler itself when None).
        """
        if self.clock() < self.calendar.bounds(day)[0]:
            raise SettlementError(f"business day {day.isoformat()} has not begun")
        recorded: list[SettlementRecord] = []
        previous, previous_chain = self._previous(session, day, recorded)
        final = self.is_closed(day)
        result = compute(session, self.calendar, day, self.currency, previous, final, progress,
                         previous_chain)
        first = self.first_day(session)
        # The chain starts on the first day anything was posted; an earlier day is empty
        # for ever (postings are never back-dated) and is not part of it.
        if final and first is not None and day >= first:
            self._record(session, result, recorded)
        # Last in the transaction: the audit trail's head stays locked until the commit,
        # not while the days are computed.
        who = actor or Actor.system("settlement")
        for record in recorded:
            audit.record(session, self.fingerprints, who, RECORDED, record.business_date,
                         recorded_detail(record))
        return result

    def _previous(self, session: Session, day: date, recorded: list[SettlementRecord]
                  ) -> tuple[str | None, str | None]:
        """The previous day's file hash and chain hash, settling closed days on the way."""
        first = self.first_day(session)
        if first is None or day <= first:
            # Every day before the first posting is empty: its file is the header alone.
            return EMPTY_SHA256, None
        settled = {r.business_date: r for r in session.scalars(
            select(SettlementRecord).where(
                SettlementRecord.business_date >= first.isoformat(),
                SettlementRecord.business_date < day.isoformat()))}
        sha: str | None = EMPTY_SHA256
        chain: str | None = None
        current = first
        while current < day:
            record = settled.get(current.isoformat())
            if record is not None:
                sha, chain = record.sha256, record.chain_sha256
            else:
                result = compute(session, self.calendar, current, self.currency, sha, True,
                                 previous_chain=chain)
                self._record(session, result, recorded)
                sha, chain = result.sha256, str(result.manifest["chain_sha256"])
            current += timedelta(days=1)
        return sha, chain

    def _record(self, session: Session, result: Settlement,
                recorded: list[SettlementRecord]) -> None:
        """Record a closed day once, then hold the settlement to the record that stands;
        a record this call made is added to `recorded`.

        Many may settle the same day at once (finance clerks, `transit settle`, several
        gateways). The insert gives way to a record already there, and on PostgreSQL
        waits for one another transaction has made but not yet committed, so no settler
        fails on the day's key: each then compares its own result with the one record.
        A closed day settles to the same bytes every time, so they agree unless the
        day's entries were changed.
        """
        iso = result.day.isoformat()
        m = result.manifest
        record = SettlementRecord(
            business_date=iso, sha256=result.sha256,
            previous_sha256=None if m["previous_sha256"] is None else str(m["previous_sha256"]),
            entries_sha256=str(m["entries_sha256"]), chain_sha256=str(m["chain_sha256"]),
            entries=int(str(m["entries"])), manifest=result.manifest_bytes.decode(),
            created_ms=self.clock())
        record.mac = settlement_mac(self.fingerprints, settlement_fields(record))
        table = SettlementRecord.__table__
        # RETURNING says whether this call made the record (a rowcount may be unknown).
        inserted = session.execute(insert_ignore(session, table).values(
            {name: getattr(record, name) for name in (*SETTLEMENT_FIELDS, "created_ms",
                                                      "mac")}).returning(table.c.business_date))
        if inserted.first() is not None:
            recorded.append(record)
        stored = session.execute(
            select(SettlementRecord.sha256, SettlementRecord.entries_sha256)
            .where(SettlementRecord.business_date == iso)).one()
        if tuple(stored) != (result.sha256, m["entries_sha256"]):
            raise SettlementError(
                f"business day {iso} no longer matches its settlement: the ledger "
                "entries of a settled day have changed (run transit reconcile)")


def recorded_detail(record: SettlementRecord) -> dict[str, object]:
    """What the audit trail keeps of a recorded day: the hashes its record must hold."""
    return {"sha256": record.sha256, "entries_sha256": record.entries_sha256,
            "chain_sha256": record.chain_sha256, "entries": record.entries}


def settle_day(sessions: Sessions, settler: Settler, day: date,
               progress: Progress | None = None, actor: Actor | None = None) -> Settlement:
    """Settle `day` in a transaction of its own and commit what it recorded.

    Callers settling the same closed day at once all get its one settlement: recording
    a day gives way to the record another caller made (`Settler._record`). Running the
    transaction again on a key race is not enough: each caller records every unsettled
    day up to its own, so one may commit the first days of the chain while others record
    the rest, and the run again meets a second winner (16 requests spread over seven
    unsettled days lost up to 11 that way on PostgreSQL).
    """
    with sessions.begin() as session:
        return settler.settle(session, day, progress, actor)
