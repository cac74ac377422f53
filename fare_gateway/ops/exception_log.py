"""The exceptions on the database: a page of the quarantine and of the inbox's taps not
charged, newest first, and the count of each reason, in one read-only snapshot.

Every statement is bounded by an index. The inbox's rows are read through its partial
index `ix_taps_exceptions` (migration 0013): the predicate is written into the statement
as the index states it (`EXCEPTION_STATUSES`), never bound, so that PostgreSQL's plans,
generic ones too, can prove it and never scan the charged taps; the quarantine through
`ix_quarantine_received_ms`. The counts are GROUP BYs over the same ranges. A quarantine
record of a rejected tap is left out in favour of its inbox row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal, or_, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement, TextClause

from fare_gateway.adapters.models import EXCEPTION_STATUSES, QuarantineRecord, TapRecord
from fare_gateway.ops.exceptions import (
    QUARANTINE,
    TAP,
    TAP_RULES,
    UNKNOWN_CARD,
    Cursor,
    ExceptionRecord,
    fold_counts,
    kept_facts,
    merge,
    tap_detail,
    tap_reason,
)
from ledger.adapters.db import Sessions, snapshot

_T = TapRecord.__table__.c
_Q = QuarantineRecord.__table__.c


@dataclass(frozen=True)
class ExceptionsPage:
    """A page of exceptions, the cursor after it, and every reason's count since `since`."""

    exceptions: list[ExceptionRecord]
    next: Cursor | None
    counts: dict[str, int]


def read_exceptions(sessions: Sessions, since: int, reason: str | None,
                    before: Cursor | None, limit: int) -> ExceptionsPage:
    """Exceptions received from `since` on (and before `before`), of `reason` if given,
    at most `limit`; the counts cover every reason from `since` on."""
    with sessions() as session:
        conn = snapshot(session)
        taps = [_tap(row) for row in conn.execute(
            _taps(since, reason, before).limit(limit + 1))]
        kept = [_kept(row) for row in conn.execute(
            _quarantined(since, reason, before).limit(limit + 1))]
        counts = _counts(conn, since)
    page, after = merge(taps, kept, limit)
    return ExceptionsPage(page, after, counts)


def _not_charged() -> TextClause:
    # The partial index's own predicate, as text: see the module's docstring.
    return text(EXCEPTION_STATUSES)


def _status(value: str) -> ColumnElement[bool]:
    return _T.status == literal(value, literal_execute=True)


def _taps(since: int, reason: str | None, before: Cursor | None) -> Select[Any]:
    query = select(_T.tap_id, _T.received_ms, _T.status, _T.reason, _T.device_id, _T.card,
                   _T.ts, _T.vehicle_id, _T.route_id, _T.accepted).where(
        _not_charged(), _T.received_ms >= since)
    if reason == UNKNOWN_CARD:
        query = query.where(_status(UNKNOWN_CARD))
    elif reason is not None:
        query = query.where(_status("rejected"), _T.reason == reason)
    if before is not None:
        # At the cursor's millisecond, the taps after a tap (a quarantined message is
        # listed after every tap of its millisecond).
        same_ms = (_T.received_ms == before.received_ms) & (_T.tap_id < before.key) \
            if before.source == TAP else literal(False)
        query = query.where(or_(_T.received_ms < before.received_ms, same_ms))
    return query.order_by(_T.received_ms.desc(), _T.tap_id.desc())


def _quarantined(since: int, reason: str | None, before: Cursor | None
                 ) -> Select[Any]:
    query = select(_Q.id, _Q.received_ms, _Q.reason, _Q.device_id, _Q.tap_id, _Q.topic,
                   _Q.detail, _Q.payload).where(_Q.received_ms >= since, _listed())
    if reason is not None:
        query = query.where(_Q.reason == reason)
    if before is not None:
        if before.source == TAP:  # every record of the cursor's millisecond is after it
            query = query.where(_Q.received_ms <= before.received_ms)
        else:
            query = query.where(or_(_Q.received_ms < before.received_ms, and_(
                _Q.received_ms == before.received_ms, _Q.id < int(before.key))))
    return query.order_by(_Q.received_ms.desc(), _Q.id.desc())


def _listed() -> ColumnElement[bool]:
    """A quarantine record that is not the copy of a rejected tap's inbox row: the tap
    path keeps a trusted tap that breaks a rule in both, in one transaction, and
    nothing else is quarantined with those reasons (a look-up of the inbox row instead
    made PostgreSQL hash every rejected tap ever kept, for every page)."""
    return _Q.reason.not_in(TAP_RULES)


def _counts(conn: Connection, since: int) -> dict[str, int]:
    n = func.count()
    kept = conn.execute(select(_Q.reason, n).where(_Q.received_ms >= since, _listed())
                        .group_by(_Q.reason))
    taps = conn.execute(select(_T.status, _T.reason, n).where(
        _not_charged(), _T.received_ms >= since).group_by(_T.status, _T.reason))
    return fold_counts(((r, int(c)) for r, c in kept),
                       ((s, r, int(c)) for s, r, c in taps))


def _tap(row: Sequence[Any]) -> ExceptionRecord:
    (tap_id, received_ms, status, reason, device_id, card, ts, vehicle_id, route_id,
     accepted) = row
    return ExceptionRecord(
        int(received_ms), TAP, tap_id, tap_reason(status, reason), device_id, tap_id, card,
        int(ts), vehicle_id, route_id, None,
        tap_detail(status, reason, bool(accepted), vehicle_id, int(ts)))


def _kept(row: Sequence[Any]) -> ExceptionRecord:
    record_id, received_ms, reason, device_id, tap_id, topic, detail, payload = row
    facts = kept_facts(bytes(payload))
    return ExceptionRecord(
        int(received_ms), QUARANTINE, str(record_id), reason, device_id, tap_id, facts.card,
        facts.ts, facts.vehicle_id, facts.route_id, topic, detail)
