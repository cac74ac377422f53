"""Reading the audit trail for staff (`GET /api/v1/audit`): a page of records in order,
and the verdict on the chain that holds them.

Verifying the whole chain costs time in proportion to its length (measured on
PostgreSQL: 2.0 s for 100,000 records through `ledger.audit.verify`, 1.4 s reading the
columns alone), which is too much for every page a reader turns. So a page verifies its
own span by default (0.04 s for a page of 1,000 of those 100,000 records): every record
from the first it returns to the last (also those the time window leaves out, so that
no gap hides), the record just before the span, whose fingerprint the first one's link
must match, and the chain's head with the newest record it names, so that records cut
off the end are seen too. A tampered record outside the span is caught by the page that
holds it, by `scope=all` (the whole chain, for an auditor's full check) and by
`transit reconcile`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from ledger import audit, chain
from ledger.adapters.db import READS_ONLY, Sessions
from ledger.adapters.models import AuditRecord, ChainHead
from ledger.fingerprint import GENESIS, Fingerprints

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MAX_PROBLEMS = 100  # listed in an answer; a chain rewritten wholesale has one per record
SCOPES = ("page", "all")
WHAT = audit.WHAT
_COLUMNS = list(AuditRecord.__table__.c)
PG_SNAPSHOT: dict[str, Any] = {"isolation_level": "REPEATABLE READ",
                               "postgresql_readonly": True}


@dataclass(frozen=True)
class Verdict:
    """What verifying (part of) the chain found."""

    verified: bool
    problems: list[str]
    scope: str  # page | all
    checked: int  # how many records were verified

    def as_json(self) -> dict[str, object]:
        """As `GET /api/v1/audit` shows it."""
        shown = self.problems[:MAX_PROBLEMS]
        if len(self.problems) > MAX_PROBLEMS:
            shown.append(f"... and {len(self.problems) - MAX_PROBLEMS} more problems")
        return {"verified": self.verified, "problems": shown, "scope": self.scope,
                "records_checked": self.checked}


@dataclass(frozen=True)
class Page:
    """Records of the trail in order, where the next page starts, and the verdict."""

    records: list[dict[str, object]]
    next_after: int | None
    verdict: Verdict


def read_page(sessions: Sessions, fingerprints: Fingerprints, from_ms: int | None,
              to_ms: int | None, after: int = 0, limit: int = DEFAULT_LIMIT,
              scope: str = "page") -> Page:
    """The records within [from_ms, to_ms) after seq `after`, at most `limit`, in one
    snapshot with the verdict on their span (`scope="page"`) or on the whole chain."""
    with sessions() as session:
        # One snapshot for the page and its verification, taking no lock a writer waits
        # for: a record committed meanwhile would otherwise look like one past the head.
        session.connection(execution_options=PG_SNAPSHOT if session.get_bind()
                           .dialect.name == "postgresql" else READS_ONLY)
        rows = audit.records(session, from_ms, to_ms, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        if scope == "all":
            verdict = verify_all(session, fingerprints)
        else:
            verdict = verify_span(session, fingerprints, rows[0].seq if rows else None,
                                  rows[-1].seq if rows else None)
        return Page([shown(r) for r in rows], rows[-1].seq if more else None, verdict)


def shown(row: AuditRecord) -> dict[str, object]:
    """A record as the API shows it (`ledger.audit.as_json`), also when its detail was
    changed behind the application's back into something that is not a JSON object:
    the page must still show it, and the verdict name it."""
    try:
        record = audit.as_json(row)
    except ValueError:  # not JSON at all
        fields = {c.key: getattr(row, c.key) for c in _COLUMNS}
        record = audit.as_json(cast(AuditRecord, SimpleNamespace(**{**fields,
                                                                    "detail": "{}"})))
        record["detail"] = {"unreadable": row.detail}
    if not isinstance(record["detail"], dict):  # JSON, but not an object
        record["detail"] = {"unreadable": row.detail}
    return record


def _stored(session: Session, first: int, last: int | None = None) -> Iterator[Row[Any]]:
    """Records by seq from `first` (to `last`), as plain rows: reading columns rather
    than objects makes a whole-chain check three times faster."""
    stmt = select(*_COLUMNS).where(AuditRecord.seq >= first)
    if last is not None:
        stmt = stmt.where(AuditRecord.seq <= last)
    yield from session.execute(stmt.order_by(AuditRecord.seq)
                               .execution_options(yield_per=2000))


def _payload(row: Row[Any]) -> list[object]:
    # A row has the record's columns by name, which is all `payload_of` reads.
    return audit.payload_of(cast(AuditRecord, row))


def _intact(fingerprints: Fingerprints, row: Row[Any]) -> bool:
    return fingerprints.matches(row.mac, f"chain:{audit.CHAIN}", row.seq, row.prev_mac,
                                _payload(row))


def verify_all(session: Session, fingerprints: Fingerprints) -> Verdict:
    """The whole chain, record by record, up to its head (`ledger.chain.verify`)."""
    count = 0

    def links() -> Iterator[tuple[int, str, str, list[object]]]:
        nonlocal count
        for row in _stored(session, 1):
            count += 1
            yield row.seq, row.prev_mac, row.mac, _payload(row)

    problems = chain.verify(session, fingerprints, audit.CHAIN, links(), WHAT)
    return Verdict(not problems, problems, "all", count)


def verify_span(session: Session, fingerprints: Fingerprints, first: int | None,
                last: int | None) -> Verdict:
    """Records `first` to `last`, each as written and linked to the one before it
    (`first` to record `first - 1`, itself as written), and the chain's head with the
    newest record; with no span, the head and the newest record alone."""
    problems: list[str] = []
    checked = 0
    prev: str | None = None  # the fingerprint of the record read before, in seq order
    if first is not None and last is not None:
        start = expected = max(first - 1, 1)
        for row in _stored(session, start, last):
            checked += 1
            if row.seq != expected:
                problems.append(_missing(expected, row.seq - 1))
            elif row.prev_mac != (GENESIS if row.seq == 1 else prev) and (
                    row.seq == 1 or row.seq > start):
                problems.append(f"{WHAT} {row.seq} does not follow the record before it "
                                "(a record was removed or replaced)")
            if not _intact(fingerprints, row):
                problems.append(_changed(row.seq))
            expected, prev = row.seq + 1, row.mac
        if expected <= last:
            problems.append(_missing(expected, last))
    head = session.execute(select(ChainHead.seq, ChainHead.last_mac, ChainHead.mac)
                           .where(ChainHead.name == audit.CHAIN)).first()
    newest = session.scalar(select(AuditRecord.seq).order_by(AuditRecord.seq.desc())
                            .limit(1))
    if head is None:
        if newest is not None:
            problems.append(f"the {WHAT}s' chain has no head: it was removed")
    elif not fingerprints.matches(head.mac, "chain_heads", audit.CHAIN, head.seq,
                                  head.last_mac):
        problems.append(f"the head of the {WHAT}s' chain was changed")
    elif head.seq != (newest or 0):
        problems.append(f"the {WHAT}s' chain ends at {newest or 0}, its head at {head.seq}: "
                        f"{WHAT}s were removed from its end" if head.seq > (newest or 0)
                        else f"the {WHAT}s' chain goes past its head ({newest} against "
                             f"{head.seq})")
    elif newest is not None:
        if newest != last or prev is None:  # the newest record, unless read above
            row = next(_stored(session, newest, newest))
            checked += 1
            if not _intact(fingerprints, row):
                problems.append(_changed(row.seq))
            prev = row.mac
        if prev != head.last_mac:
            problems.append(f"{WHAT} {newest} is not the one the chain's head names (the "
                            "newest records were replaced)")
    return Verdict(not problems, problems, "page", checked)


def _missing(first: int, last: int) -> str:
    return f"{WHAT} {first} is missing" if first == last else \
        f"{WHAT}s {first} to {last} are missing"


def _changed(seq: int) -> str:
    return f"{WHAT} {seq} was changed after it was written (its fingerprint does not match)"
