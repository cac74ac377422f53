"""`transit reconcile`: prove the ledger and its settlements still agree, and that
nothing that decides money was changed behind the application's back.

Checks, each naming what it found wrong:
  1. every entry balances and has postings; every card balance equals its postings;
  2. operator revenue equals fares, corrections and refunds, per operator;
  3. top-up clearing equals the top-ups, adjustment clearing the adjustments;
  4. every entry matches its keyed fingerprint; every card matches its own (category,
     status, account, chain head); walking each card's chain back from its head reaches
     every entry of the card exactly once (`ledger.integrity`), in the open day too;
  5. every settled business day still settles to the same file and the same root hash
     over its entries and postings, and its record matches its keyed fingerprint;
  6. the chain of settled days is unbroken, and every day the audit trail says was
     recorded still has its record, with the hashes recorded;
  7. the audit trail's chain is unbroken (`ledger.audit`);
  8. the checks the composition root adds (`Check`: the gateway's own tables);
  9. settlement files in a folder, if given, are the ones the chain recorded; the
     report says how many it compared (none is a failure) and names each file it left
     out: a provisional one, and the header-only file of a day before anything was
     posted (such a day has no entries and is never recorded, so there is nothing to
     compare it with). Only files compared with a record are counted.

Every check reads one snapshot of the database (`ledger.adapters.db.snapshot`), so that
an honest ledger ties out while gateways write to it, and reconcile takes no lock a
writer waits for. A row without a fingerprint is a mismatch: rows written before
fingerprints existed are sealed by `transit db upgrade`. Entries are streamed in (card,
id) order and only one card's chain is held at a time, so memory stays bounded however
large the ledger.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import audit
from ledger.adapters.db import snapshot
from ledger.adapters.models import (
    Account,
    AuditRecord,
    Card,
    Entry,
    Posting,
    SettlementRecord,
)
from ledger.domain import ADJUSTMENT_CLEARING, CARD, CLEARING, REVENUE, TOPUP_CLEARING
from ledger.fingerprint import UNKEYED_WARNING, Fingerprints
from ledger.integrity import (
    ENTRY_FIELDS,
    Chained,
    chain_problems,
    settlement_fields,
)
from ledger.services import check_invariants
from ledger.settlement import (
    EMPTY_SHA256,
    RECORDED,
    SettlementError,
    Settler,
    chain_hash,
    compute,
    parse_day,
)

# The entry kinds that move an operator's revenue: fares and their corrections, and the
# refunds of disputes (which give part of a fare back).
REVENUE_KINDS = ("fare", "correction", "refund")
STREAM_ROWS = 5000
# Past this many findings of one kind (entries without a fingerprint, say), the rest are
# counted, not listed: a mass change is one finding, and the report stays readable.
LISTED = 50


@dataclass
class CheckResult:
    """What one check looked at (`checked`, each a line) and what it found wrong."""

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth saying, not a mismatch


Check = Callable[[Session, Fingerprints], CheckResult]
"""A check of tables the ledger does not own, given by the composition root."""


@dataclass
class Report:
    """What reconciliation looked at and what it found."""

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        out = [f"warning  {w}" for w in self.warnings]
        out += [f"ok       {c}" for c in self.checked]
        out += [f"skipped  {s}" for s in self.skipped]
        out += [f"MISMATCH {p}" for p in self.problems]
        out.append("reconciled: no mismatch" if self.ok
                   else f"reconciliation FAILED: {len(self.problems)} mismatch(es)")
        return "\n".join(out)


def reconcile(session: Session, settler: Settler, day: date | None = None,
              files: Path | None = None, *, fingerprints: Fingerprints | None = None,
              checks: Sequence[Check] = ()) -> Report:
    """Run every check; `day` limits the per-day checks to one business day.

    `fingerprints` (the settler's when None) are those the rows were written under;
    `checks` are run after the ledger's own.
    """
    # One snapshot for every check: with taps and top-ups committing meanwhile, each
    # statement of a READ COMMITTED transaction would see another ledger, and an honest
    # one would not tie out (a top-up's entry counted, its clearing posting not yet; an
    # audit record counted, the head past it not). On SQLite the read takes no write
    # lock, so gateways go on committing while it runs. A session already in a
    # transaction (a caller's own) is read as it is.
    if not session.in_transaction():
        snapshot(session)
    fp = fingerprints or settler.fingerprints
    report = Report()
    if not fp.keyed:
        report.warnings.append(UNKEYED_WARNING)
    invariants = check_invariants(session)
    report.problems += invariants
    if not invariants:
        report.checked.append("every entry balances; every card balance equals its postings")

    revenue = dict(session.execute(
        select(Account.ref, func.coalesce(func.sum(Posting.amount), 0))
        .join(Posting, Posting.account_id == Account.id)
        .where(Account.kind == REVENUE).group_by(Account.ref)).all())
    charged = dict(session.execute(
        select(Entry.operator_id, func.sum(Entry.amount))
        .where(Entry.kind.in_(REVENUE_KINDS)).group_by(Entry.operator_id)).all())
    bad = False
    for operator in sorted(set(revenue) | set(charged)):
        have, want = int(revenue.get(operator, 0)), int(charged.get(operator, 0))
        if have != want:
            bad = True
            report.problems.append(f"operator {operator}: revenue postings {have}, "
                                   f"fares, corrections and refunds {want}")
    if not bad:
        report.checked.append(f"revenue of {len(revenue)} operator(s) equals fares, "
                              "corrections and refunds")

    clearing = int(session.scalar(
        select(func.coalesce(func.sum(Posting.amount), 0))
        .join(Account, Account.id == Posting.account_id)
        .where(Account.kind == CLEARING, Account.ref == TOPUP_CLEARING)) or 0)
    topups = int(session.scalar(select(func.coalesce(func.sum(Entry.amount), 0))
                                .where(Entry.kind == "topup")) or 0)
    if clearing != -topups:
        report.problems.append(f"top-up clearing holds {clearing}, top-ups total {topups}")
    else:
        report.checked.append("top-up clearing equals the top-ups")
    # Adjustments credit (or debit) cards against their own clearing account, never
    # revenue: the same rule as top-ups.
    clearing = int(session.scalar(
        select(func.coalesce(func.sum(Posting.amount), 0))
        .join(Account, Account.id == Posting.account_id)
        .where(Account.kind == CLEARING, Account.ref == ADJUSTMENT_CLEARING)) or 0)
    adjusted = int(session.scalar(select(func.coalesce(func.sum(Entry.amount), 0))
                                  .where(Entry.kind == "adjustment")) or 0)
    if clearing != -adjusted:
        report.problems.append(f"adjustment clearing holds {clearing}, adjustments total "
                               f"{adjusted}")
    else:
        report.checked.append("adjustment clearing equals the adjustments")

    # A balance moved from a lost card to its replacement stays among riders' cards.
    astray = session.execute(
        select(Entry.id).join(Posting, Posting.entry_id == Entry.id)
        .join(Account, Account.id == Posting.account_id)
        .where(Entry.kind == "transfer", Account.kind != CARD).distinct()).scalars().all()
    if astray:
        report.problems += [f"transfer entry {eid} moves money off the cards" for eid in astray]
    else:
        report.checked.append("card-to-card transfers stay among the cards")

    _add(report, check_fingerprints(session, fp))

    records = session.scalars(select(SettlementRecord)
                              .order_by(SettlementRecord.business_date)).all()
    previous: SettlementRecord | None = None
    chain_ok = True
    for record in records:
        record_day = date.fromisoformat(record.business_date)
        previous_chain = previous.chain_sha256 if previous is not None else None
        if previous is not None:
            expected_day = date.fromisoformat(previous.business_date) + timedelta(days=1)
            if record_day != expected_day or record.previous_sha256 != previous.sha256:
                chain_ok = False
                report.problems.append(f"settlement chain broken at {record.business_date}")
        if record.chain_sha256 != chain_hash(previous_chain, record.business_date,
                                             record.sha256, record.entries_sha256,
                                             record.entries):
            chain_ok = False
            report.problems.append(f"settlement chain hash wrong at {record.business_date}: "
                                   "a settled day's record was rewritten")
        if record.mac is None:
            report.problems.append(f"settlement record of {record.business_date} has no "
                                   "fingerprint (written behind the application's back?)")
        elif not fp.matches(record.mac, "settlements", *settlement_fields(record)):
            report.problems.append(f"settlement record of {record.business_date} was "
                                   "changed behind the application's back (its fingerprint "
                                   "does not match)")
        previous = record
        if day is not None and record_day != day:
            continue
        try:
            redone = compute(session, settler.calendar, record_day, settler.currency,
                             record.previous_sha256, True, previous_chain=previous_chain)
        except SettlementError as exc:
            report.problems.append(f"business day {record.business_date}: {exc}")
            continue
        if redone.manifest["entries_sha256"] != record.entries_sha256:
            report.problems.append(
                f"business day {record.business_date}: its ledger entries or postings "
                f"changed after settlement ({redone.manifest['entries']} entries now, "
                f"{record.entries} when settled)")
        elif redone.sha256 != record.sha256:
            report.problems.append(f"business day {record.business_date}: lines differ "
                                   "from the settled file")
        else:
            report.checked.append(f"business day {record.business_date}: "
                                  f"{record.entries} entries match their settlement")
        if files is not None:
            problems, compared = _check_files(files, record)
            report.problems += problems
            report.files_checked += compared
    if files is not None:
        recorded = {r.business_date for r in records}
        for path in sorted(files.glob("settlement-*.csv")):
            iso = path.stem.removeprefix("settlement-")
            if iso in recorded or (day is not None and iso != day.isoformat()):
                continue
            skipped, problem = _unrecorded_file(session, settler, path, iso)
            if skipped is not None:
                report.skipped.append(skipped)
            if problem is not None:
                report.problems.append(problem)
        _count_files(report, files)
    if chain_ok and records:
        report.checked.append(f"settlement chain of {len(records)} day(s) unbroken")
    if day is not None and not any(r.business_date == day.isoformat() for r in records):
        report.checked.append(f"business day {day.isoformat()} is not settled yet")
    _add(report, check_recorded_days(session, {r.business_date: r for r in records}))
    _add(report, check_audit_trail(session, fp))
    for check in checks:
        _add(report, check(session, fp))
    return report


def _add(report: Report, result: CheckResult) -> None:
    report.checked += result.checked
    report.problems += result.problems
    report.warnings += result.warnings


class Findings:
    """Problems by kind, the first LISTED of each kept and the rest counted, so that a
    mass change is one finding and memory stays bounded (the gateway's checks use it
    too)."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}
        self.more: dict[str, int] = {}

    def add(self, kind: str, problem: str) -> None:
        listed = self.kinds.setdefault(kind, [])
        if len(listed) < LISTED:
            listed.append(problem)
        else:
            self.more[kind] = self.more.get(kind, 0) + 1

    def problems(self) -> list[str]:
        out: list[str] = []
        for kind, listed in self.kinds.items():
            out += listed
            if kind in self.more:
                out.append(f"... and {self.more[kind]} more like the above ({kind})")
        return out


def check_fingerprints(session: Session, fp: Fingerprints) -> CheckResult:
    """Every entry and card against its fingerprint, and every card's chain complete.

    One pass over the entries with their postings and cards, in (card, id) order, then
    the cards that have no entry; only one card's entries are held at a time.
    """
    found = Findings()
    e, p, c = Entry.__table__.c, Posting.__table__.c, Card.__table__.c
    stmt = (select(e.id, *(e[name] for name in ENTRY_FIELDS), e.prev_mac, e.mac,
                   p.account_id.label("p_account"), p.amount.label("p_amount"),
                   c.card.label("issued"), c.category.label("c_cat"),
                   c.status.label("c_status"), c.account_id.label("c_account"),
                   c.head.label("c_head"), c.mac.label("c_mac"))
            .select_from(Entry.__table__.outerjoin(Posting.__table__, p.entry_id == e.id)
                         .outerjoin(Card.__table__, c.card == e.card))
            .order_by(e.card, e.id, p.id))
    counts = {"entries": 0, "cards": 0}
    card_rows: list[Any] = []  # the current card's entries, as their first rows
    chain: list[Chained] = []
    current: Any = None
    postings: list[list[int]] = []

    def end_entry() -> None:
        entry = current
        counts["entries"] += 1
        fields = [entry._mapping[name] for name in ENTRY_FIELDS]
        whose = "no card" if entry.card is None else f"card {entry.card}"
        if entry.mac is None:
            found.add("entries without a fingerprint",
                      f"entry {entry.id} ({whose}) has no fingerprint (written behind the "
                      "application's back, or never sealed)")
        elif not fp.matches(entry.mac, "entries", *fields, entry.prev_mac, postings):
            found.add("entries changed",
                      f"entry {entry.id} ({whose}) was changed after it was posted (its "
                      "fingerprint does not match)")
        if entry.card is not None:
            chain.append(Chained(entry.id, entry.mac, entry.prev_mac))
            if not card_rows:
                card_rows.append(entry)

    def end_card() -> None:
        if not card_rows:
            return
        first = card_rows[0]
        if first.issued is None:
            found.add("entries of no card",
                      f"card {first.card}: {len(chain)} entr{'y' if len(chain) == 1 else 'ies'}"
                      " name it, but no such card was issued")
        else:
            _check_card(found, fp, first.card, first.c_cat, first.c_status, first.c_account,
                        first.c_head, first.c_mac, chain)
            counts["cards"] += 1
        card_rows.clear()
        chain.clear()

    rows = session.connection().execute(
        stmt.execution_options(stream_results=True, max_row_buffer=STREAM_ROWS))
    for row in rows:
        if current is None or row.id != current.id:
            if current is not None:
                end_entry()
                if row.card != current.card:
                    end_card()
            current, postings = row, []
        if row.p_account is not None:
            postings.append([row.p_account, row.p_amount])
    if current is not None:
        end_entry()
        end_card()
    lonely = session.connection().execute(
        select(c.card, c.category, c.status, c.account_id, c.head, c.mac)
        .where(~select(e.id).where(e.card == c.card).exists())
        .execution_options(stream_results=True, max_row_buffer=STREAM_ROWS))
    for card in lonely:
        _check_card(found, fp, card.card, card.category, card.status, card.account_id,
                    card.head, card.mac, [])
        counts["cards"] += 1
    result = CheckResult(problems=found.problems())
    if not {"entries without a fingerprint", "entries changed"} & found.kinds.keys():
        result.checked.append(f"every one of {counts['entries']} entries matches its "
                              "fingerprint")
    if not {"cards without a fingerprint", "cards changed"} & found.kinds.keys():
        result.checked.append(f"every one of {counts['cards']} cards matches its "
                              "fingerprint (category, status, chain head)")
    if not {"chains", "entries of no card"} & found.kinds.keys():
        result.checked.append(f"every card's chain of entries is complete ({counts['cards']} "
                              "cards)")
    return result


def _check_card(found: Findings, fp: Fingerprints, card: str, category: str, status: str,
                account_id: int, head: str | None, mac: str | None,
                chain: list[Chained]) -> None:
    if mac is None:
        found.add("cards without a fingerprint",
                  f"card {card} has no fingerprint (written behind the application's back, "
                  "or never sealed)")
    elif not fp.matches(mac, "cards", card, category, status, account_id, head):
        found.add("cards changed",
                  f"card {card}: its category, status or chain head was changed behind the "
                  f"application's back (its fingerprint does not match; category {category}, "
                  f"status {status})")
    for problem in chain_problems(card, head, chain):
        found.add("chains", problem)


def check_recorded_days(session: Session, records: dict[str, SettlementRecord]
                        ) -> CheckResult:
    """Every day the audit trail says was recorded still has its settlement record, with
    the hashes recorded (a record deleted, or rewritten with its hashes recomputed)."""
    result = CheckResult()
    rows = session.execute(select(AuditRecord.seq, AuditRecord.subject, AuditRecord.detail)
                           .where(AuditRecord.action == RECORDED)
                           .order_by(AuditRecord.seq)).all()
    for seq, iso, text in rows:
        record = records.get(iso)
        try:
            detail = json.loads(text)
        except ValueError:
            detail = {}
        if record is None:
            result.problems.append(f"business day {iso} was recorded (audit record {seq}) "
                                   "but its settlement record is missing: it was deleted")
        elif [detail.get(k) for k in ("sha256", "entries_sha256", "chain_sha256",
                                      "entries")] != [
                record.sha256, record.entries_sha256, record.chain_sha256, record.entries]:
            result.problems.append(f"business day {iso}: its settlement record's hashes "
                                   f"differ from those recorded in audit record {seq}: the "
                                   "record was rewritten")
    if not result.problems:
        result.checked.append(f"every one of {len(rows)} recorded day(s) in the audit trail "
                              "still has its settlement record")
    return result


def check_audit_trail(session: Session, fp: Fingerprints) -> CheckResult:
    """The audit trail's chain, record by record, up to its head."""
    problems = audit.verify(session, fp)
    if problems:
        return CheckResult(problems=problems)
    count = int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0)
    return CheckResult(checked=[f"audit trail of {count} record(s) unbroken"])


def _unrecorded_file(session: Session, settler: Settler, path: Path, iso: str
                     ) -> tuple[str | None, str | None]:
    """Why a file of a day the chain has no record of is left out (first), or what is
    wrong with it (second). Neither counts as compared: there is no record to compare
    it with."""
    if _provisional(path.with_suffix(".json")):
        return (f"{path.name}: provisional (its day was still open when settled), so not "
                "in the chain"), None
    try:
        file_day = parse_day(iso)
    except SettlementError as exc:
        return None, f"{path.name}: not a settlement file name ({exc})"
    first = settler.first_day(session)
    if first is None or file_day < first:
        # The chain starts on the first day anything was posted: a day before it has no
        # entries and is never recorded (`transit settle` writes its file all the same).
        # From that day on every settled day is recorded, empty or not.
        if hashlib.sha256(path.read_bytes()).hexdigest() == EMPTY_SHA256:
            return (f"{path.name}: business day {iso} has no entries, so it is not in the "
                    "chain (its file holds only the header)"), None
        return None, (f"{path.name}: has settlement lines, but the ledger has no entry in "
                      f"business day {iso}")
    return None, (f"{path.name}: no settled day {iso} in the chain (its settlement record "
                  "is missing)")


def _provisional(manifest: Path) -> bool:
    """A provisional settlement (of a day still open) is not in the chain by design."""
    try:
        return bool(json.loads(manifest.read_text()).get("status") == "provisional")
    except (OSError, ValueError):
        return False


def _count_files(report: Report, folder: Path) -> None:
    """Say how many files of `folder` were compared; none at all is a failure, since the
    folder was given to be vouched for (docs/finance.md)."""
    if report.files_checked:
        report.checked.append(f"{report.files_checked} settlement file(s) in {folder} "
                              "compared with the chain")
    elif report.skipped:
        report.problems.append(f"no settlement file in {folder} was checked: it holds none "
                               f"of a settled day, only the {len(report.skipped)} skipped "
                               "above")
    else:
        report.problems.append(f"no settlement file in {folder} was checked: it holds no "
                               "settlement-DATE.csv or .json of a settled day (is it the "
                               "right folder?)")


def _check_files(folder: Path, record: SettlementRecord) -> tuple[list[str], int]:
    """Problems with the files of one settled day in `folder`, and how many were there."""
    problems = []
    compared = 0
    csv_path = folder / f"settlement-{record.business_date}.csv"
    json_path = folder / f"settlement-{record.business_date}.json"
    if csv_path.exists():
        compared += 1
        data = csv_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != record.sha256:
            problems.append(f"{csv_path.name}: sha256 differs from the settled file "
                            "(the file was edited)")
    if json_path.exists():
        compared += 1
        try:
            manifest = json.loads(json_path.read_text())
        except ValueError:
            return [*problems, f"{json_path.name}: not valid JSON"], compared
        if (manifest.get("sha256"), manifest.get("previous_sha256"),
                manifest.get("entries_sha256"), manifest.get("chain_sha256")) != (
                record.sha256, record.previous_sha256, record.entries_sha256,
                record.chain_sha256):
            problems.append(f"{json_path.name}: does not match the settlement chain")
    return problems, compared
