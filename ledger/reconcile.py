"""`transit reconcile`: prove the ledger and its settlements still agree.

Checks, each naming what it found wrong:
  1. every entry balances and has postings; every card balance equals its postings;
  2. operator revenue equals fare charges plus corrections, per operator;
  3. top-up clearing equals the top-ups;
  4. every settled business day still settles to the same file and the same root hash
     over its entries and postings (catches UPDATE or DELETE behind the application);
  5. the chain of settled days is unbroken;
  6. settlement files in a folder, if given, are the ones the chain recorded; the
     report says how many it compared (none is a failure) and names each file it left
     out: a provisional one, and the header-only file of a day before anything was
     posted (such a day has no entries and is never recorded, so there is nothing to
     compare it with). Only files compared with a record are counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.adapters.models import Account, Entry, Posting, SettlementRecord
from ledger.domain import CARD, CLEARING, REVENUE, TOPUP_CLEARING
from ledger.services import check_invariants
from ledger.settlement import (
    EMPTY_SHA256,
    SettlementError,
    Settler,
    chain_hash,
    compute,
    parse_day,
)

# The entry kinds that move an operator's revenue: fares and their corrections, and the
# refunds of disputes (which give part of a fare back).
REVENUE_KINDS = ("fare", "correction", "refund")


@dataclass
class Report:
    """What reconciliation looked at and what it found."""

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        out = [f"ok       {c}" for c in self.checked]
        out += [f"skipped  {s}" for s in self.skipped]
        out += [f"MISMATCH {p}" for p in self.problems]
        out.append("reconciled: no mismatch" if self.ok
                   else f"reconciliation FAILED: {len(self.problems)} mismatch(es)")
        return "\n".join(out)


def reconcile(session: Session, settler: Settler, day: date | None = None,
              files: Path | None = None) -> Report:
    """Run every check; `day` limits the per-day checks to one business day."""
    report = Report()
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

    # A balance moved from a lost card to its replacement stays among riders' cards.
    astray = session.execute(
        select(Entry.id).join(Posting, Posting.entry_id == Entry.id)
        .join(Account, Account.id == Posting.account_id)
        .where(Entry.kind == "transfer", Account.kind != CARD).distinct()).scalars().all()
    if astray:
        report.problems += [f"transfer entry {eid} moves money off the cards" for eid in astray]
    else:
        report.checked.append("card-to-card transfers stay among the cards")

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
    return report


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
