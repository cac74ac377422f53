"""What `transit reconcile` checks of adjustments (contract section 9): that the money
moved by hand moved under four eyes, as the application recorded it.

  - every row of `adjustments` matches its keyed fingerprint (`adjustments.FIELDS`): a
    row inserted with plain SQL ("asked by" a colleague) or edited (its amount, its
    card, who asked) is named;
  - every `adjustment` entry of the ledger has its posted adjustment (`entry_id`),
    whose fingerprint matches, of the same card and amount, decided by a holder other
    than the one who asked;
  - every posted adjustment has its entry;
  - the audit trail holds each adjustment's `adjustment.requested` record and each
    posted one's `adjustment.approved` record, agreeing on the card, the amount and who
    (the trail's own chain is checked by reconcile itself).

Adjustments are made by people, a few a day: the audit records of adjustments are held
in memory by adjustment id, the rows and entries are streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import Adjustment
from fare_gateway.finance.adjustments import FIELDS, TABLE, Holder, same_holder
from ledger.adapters.models import AuditRecord, Entry
from ledger.fingerprint import Fingerprints
from ledger.reconcile import CheckResult, Findings

STREAM = 2000
ACTIONS = ("adjustment.requested", "adjustment.approved")
SUBJECT = "adjustment:"
# An audited fact: what the record says of the card and the amount, and who acted.
Fact = tuple[str | None, int | None, str]


def _rows(session: Session) -> Iterator[dict[str, Any]]:
    a = Adjustment.__table__.c
    columns = ("mac", *FIELDS)
    for row in session.execute(select(*(a[name] for name in columns)).order_by(a.id)
                               .execution_options(yield_per=STREAM)):
        yield dict(zip(columns, row, strict=True))


def _named(row: dict[str, Any]) -> str:
    return (f"adjustment {row['id']} (card {row['card']}, amount {row['amount']}, "
            f"{row['status']}, reference {row['reference']})")


def _sealed(fingerprints: Fingerprints, row: dict[str, Any]) -> bool:
    return fingerprints.matches(row["mac"], TABLE, *(row[name] for name in FIELDS))


def audited_facts(session: Session) -> dict[tuple[int, str], list[Fact]]:
    """What the audit trail says of each adjustment, by (adjustment id, action)."""
    r = AuditRecord.__table__.c
    facts: dict[tuple[int, str], list[Fact]] = {}
    for action, subject, actor_id, detail in session.execute(
            select(r.action, r.subject, r.actor_id, r.detail)
            .where(r.action.in_(ACTIONS)).order_by(r.seq)
            .execution_options(yield_per=STREAM)):
        number = subject.removeprefix(SUBJECT)
        if not subject.startswith(SUBJECT) or not number.isdigit():
            continue
        try:
            said = json.loads(detail)
        except ValueError:
            said = {}
        if not isinstance(said, dict):
            said = {}
        card, amount = said.get("card"), said.get("amount")
        facts.setdefault((int(number), action), []).append(
            (card if isinstance(card, str) else None,
             amount if isinstance(amount, int) else None, actor_id[:32]))
    return facts


def _trail_problem(facts: list[Fact] | None, row: dict[str, Any], who: str | None
                   ) -> str | None:
    """What is wrong with an adjustment's records of one action, or None."""
    if not facts:
        return "no record"
    wanted = (row["card"], row["amount"], who)
    wrong = [fact for fact in facts if fact != wanted]
    if wrong:
        card, amount, actor = wrong[0]
        return f"a record saying card {card}, amount {amount}, by token {actor}"
    return None


def adjustment_checks(session: Session, fingerprints: Fingerprints) -> CheckResult:
    """Adjustments as written by the application, each posted one under four eyes, in
    step with its ledger entry and with the audit trail."""
    found = Findings()
    facts = audited_facts(session)
    count = posted = 0
    for row in _rows(session):
        count += 1
        name = _named(row)
        if row["mac"] is None:
            found.add("adjustments unfingerprinted", f"{name} is unfingerprinted: written "
                      "behind the application's back")
        elif not _sealed(fingerprints, row):
            found.add("adjustments changed", f"{name} was changed behind the "
                      "application's back (its fingerprint does not match)")
        requested = _trail_problem(facts.get((row["id"], ACTIONS[0])), row,
                                   row["requested_by"])
        if requested is not None:
            found.add("adjustments unaudited", f"{name}: the audit trail holds {requested} "
                      "of its request")
        if row["status"] == "posted":
            posted += 1
            approved = _trail_problem(facts.get((row["id"], ACTIONS[1])), row,
                                      row["decided_by"])
            if approved is not None:
                found.add("adjustments unaudited", f"{name}: the audit trail holds "
                          f"{approved} of its approval")
    entries = _entries_in_step(session, fingerprints, found)
    _posted_have_entries(session, found)
    problems = found.problems()
    if problems:
        return CheckResult([], problems)
    return CheckResult([f"{count} adjustment(s) match their fingerprints and the audit "
                        f"trail; the {entries} adjustment entr(y/ies) of the ledger are "
                        f"the {posted} posted under four eyes"], [])


def _entries_in_step(session: Session, fingerprints: Fingerprints, found: Findings) -> int:
    """Check each `adjustment` entry against its posted adjustment; how many there are."""
    e, a = Entry.__table__.c, Adjustment.__table__.c
    columns = ("mac", *FIELDS)
    count = 0
    for entry_id, card, amount, reference, *fields in session.execute(
            select(e.id, e.card, e.amount, e.reference, *(a[name] for name in columns))
            .outerjoin(Adjustment.__table__, a.entry_id == e.id)
            .where(e.kind == "adjustment").order_by(e.id, a.id)
            .execution_options(yield_per=STREAM)):
        count += 1
        entry = f"ledger entry {entry_id} (adjustment of card {card}, amount {amount}, " \
                f"reference {reference})"
        row = dict(zip(columns, fields, strict=True))
        if row["id"] is None:
            found.add("entries unapproved", f"{entry} has no adjustment approved under four "
                      "eyes")
            continue
        if row["status"] != "posted":
            found.add("entries unapproved", f"{entry} belongs to {_named(row)}, which is "
                      "not posted")
        elif not _sealed(fingerprints, row):
            found.add("entries unapproved", f"{entry} belongs to {_named(row)}, which "
                      "does not match its fingerprint")
        if (row["card"], row["amount"]) != (card, amount):
            found.add("entries differ", f"{entry} differs from {_named(row)}")
        if row["decided_by"] is None or same_holder(
                Holder(row["requested_by"], row["requested_name"] or ""),
                Holder(row["decided_by"], row["decided_name"] or "")):
            found.add("entries one-eyed", f"{entry}: {_named(row)} was asked for and "
                      "approved by one holder")
    return count


def _posted_have_entries(session: Session, found: Findings) -> None:
    e, a = Entry.__table__.c, Adjustment.__table__.c
    for adjustment_id, card, amount, reference, entry_id, kind in session.execute(
            select(a.id, a.card, a.amount, a.reference, a.entry_id, e.kind)
            .outerjoin(Entry.__table__, e.id == a.entry_id)
            .where(a.status == "posted").order_by(a.id)
            .execution_options(yield_per=STREAM)):
        if kind != "adjustment":
            found.add("posted without entry", f"adjustment {adjustment_id} (card {card}, "
                      f"amount {amount}, reference {reference}) is posted, but the ledger "
                      f"holds no adjustment entry {entry_id}")
