"""A page of the audit trail verifies its own span (fare_gateway.trail), on SQLite in
process: a record changed, removed or added behind the application's back is named by
every page that holds it or begins right after it, by the whole-chain check, and the
newest records cut off are named by every page, through the chain's head."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.trail import read_page, verify_all, verify_span
from ledger import audit
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import AuditRecord, ChainHead
from ledger.fingerprint import Fingerprints

KEY = Fingerprints(b"\x5a" * 32)
ACTOR = audit.Actor("token", "0123456789abcdef", "Siti Rahayu", "admin", "10.0.0.7")
RECORDS = 12


@pytest.fixture
def sessions() -> Iterator[sessionmaker[Session]]:
    engine = make_engine("sqlite://")
    AuditRecord.__table__.create(engine)
    ChainHead.__table__.create(engine)
    made = session_factory(engine)
    for n in range(1, RECORDS + 1):
        with made.begin() as session:
            audit.record(session, KEY, ACTOR, "card.topped_up", f"04A1B2C3{n:08X}",
                         {"amount": 1000 * n, "reference": f"ref-{n}"},
                         at_ms=1_764_000_000_000 + n * 1000)
    yield made
    engine.dispose()


def span(sessions: sessionmaker[Session], first: int | None, last: int | None
         ) -> list[str]:
    with sessions() as session:
        return verify_span(session, KEY, first, last).problems


def change(sessions: sessionmaker[Session], statement: object) -> None:
    with sessions.begin() as session:
        session.execute(statement)  # type: ignore[call-overload]


def test_a_page_names_what_was_changed_in_its_span_and_at_the_chains_end(
        sessions: sessionmaker[Session]) -> None:
    page = read_page(sessions, KEY, None, None, after=0, limit=5)
    assert [r["seq"] for r in page.records] == [1, 2, 3, 4, 5] and page.next_after == 5
    # The page, the record before it (none here) and the head with the newest record.
    assert page.verdict.verified and page.verdict.checked == 6, page.verdict
    later = read_page(sessions, KEY, None, None, after=5, limit=5)
    assert [r["seq"] for r in later.records] == [6, 7, 8, 9, 10] and later.next_after == 10
    assert later.verdict.verified and later.verdict.checked == 7, later.verdict
    last = read_page(sessions, KEY, None, None, after=10, limit=5)
    assert [r["seq"] for r in last.records] == [11, 12] and last.next_after is None
    # A time window: [from, to) on the time of each record.
    window = read_page(sessions, KEY, 1_764_000_003_000, 1_764_000_006_000)
    assert [r["seq"] for r in window.records] == [3, 4, 5] and window.verdict.verified
    nothing = read_page(sessions, KEY, 1_764_000_003_000, 1_764_000_003_000)
    assert nothing.records == [] and nothing.verdict.verified, nothing.verdict

    # Record 7 changed with plain SQL: its page and the page after it (whose link it
    # is) name it; a page elsewhere does not (the whole-chain check does).
    change(sessions, update(AuditRecord).where(AuditRecord.seq == 7)
           .values(detail='{"amount":9000000,"reference":"ref-7"}'))
    changed = ["audit record 7 was changed after it was written (its fingerprint does "
               "not match)"]
    assert span(sessions, 6, 10) == changed
    assert span(sessions, 8, 9) == changed
    assert span(sessions, 1, 5) == []
    with sessions() as session:
        whole = verify_all(session, KEY)
    assert not whole.verified and whole.problems == changed and whole.checked == RECORDS
    assert read_page(sessions, KEY, None, None, after=5, limit=5, scope="all"
                     ).verdict.problems == changed

    # Record 4 removed: the gap is named; the record after it no longer follows it.
    change(sessions, delete(AuditRecord).where(AuditRecord.seq == 4))
    assert span(sessions, 2, 6) == ["audit record 4 is missing"]
    assert span(sessions, 4, 4) == ["audit record 4 is missing"]
    assert span(sessions, 5, 5)[0] == "audit record 4 is missing"

    # The newest record cut off: every page sees it through the head, even an empty one.
    change(sessions, delete(AuditRecord).where(AuditRecord.seq == RECORDS))
    cut = (f"the audit records' chain ends at {RECORDS - 1}, its head at {RECORDS}: "
           "audit records were removed from its end")
    assert span(sessions, 1, 2) == [cut]
    assert span(sessions, None, None) == [cut]
    # ... and its head moved back to match: the head's own fingerprint gives it away.
    change(sessions, update(ChainHead).where(ChainHead.name == audit.CHAIN)
           .values(seq=RECORDS - 1))
    assert span(sessions, 1, 2) == ["the head of the audit records' chain was changed"]


def test_a_record_that_no_longer_reads_is_still_shown_and_named(
        sessions: sessionmaker[Session]) -> None:
    change(sessions, update(AuditRecord).where(AuditRecord.seq == 3)
           .values(detail="not json"))
    page = read_page(sessions, KEY, None, None, after=2, limit=1)
    record = page.records[0]
    assert record["seq"] == 3 and record["detail"] == {"unreadable": "not json"}, record
    change(sessions, update(AuditRecord).where(AuditRecord.seq == 4).values(detail="[4]"))
    assert read_page(sessions, KEY, None, None, after=3, limit=1).records[0]["detail"] == {
        "unreadable": "[4]"}
    assert page.verdict.problems == ["audit record 3 was changed after it was written "
                                     "(its fingerprint does not match)"]
    # A chain's first record stands at the start: one whose link was rewritten is named.
    change(sessions, update(AuditRecord).where(AuditRecord.seq == 1).values(prev_mac="0" * 64))
    assert span(sessions, 1, 1) == [
        "audit record 1 does not follow the record before it (a record was removed or "
        "replaced)",
        "audit record 1 was changed after it was written (its fingerprint does not match)"]
