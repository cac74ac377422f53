"""What `transit reconcile` checks of the gateway's tables that decide money, and the
sealing of rows written before they carried fingerprints.

Each check reads its table as a stream (bounded memory on any size) and names every row
that does not match its keyed fingerprint (`ledger.fingerprint`), or has none:
  - taps (`taps.mac`, set in the inbox insert): a tap's service date, card, route or
    status edited behind the application's back;
  - the quarantine (chained, `ledger.chain`): evidence of a refused message deleted,
    changed, or cut off the chain's end;
  - the deny list (`denylist.mac`, `denylist_changes.mac`): a change added or edited,
    and a list that does not agree with the replay of its changes (the last change of
    each card), nor with the cards that are blocked;
  - routes (`routes.mac`, `tracking.integrity`): a route re-pointed to another operator;
  - API tokens (`api_tokens.mac`): a token row inserted, or its role, holder or expiry
    changed; such a row also opens nothing (`fare_gateway.tokens.authenticate`);
  - the cards' week and month totals (`fare_periods`), recomputed from the ledger's
    entries (`fare_gateway.taps.period_checks`).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Subquery, Table, bindparam, func, select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import (
    ApiToken,
    DenyChange,
    DenyEntry,
    QuarantineRecord,
    TapRecord,
)
from fare_gateway.denylist import change_mac, deny_reason, entry_mac
from fare_gateway.fares.loaded import loaded_sha256
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.finance.integrity import adjustment_checks
from fare_gateway.taps.period_checks import check_fare_periods
from fare_gateway.taps.sql import (
    QUARANTINE_CHAIN,
    QUARANTINE_COLUMNS,
    TAP_FIELDS,
    quarantine_payload,
    tap_mac,
)
from fare_gateway.tokens import TOKEN_FIELDS, token_mac
from ledger import chain
from ledger.adapters.models import Card
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.reconcile import Check, CheckResult, Findings
from tracking.integrity import check_routes, record_network, seal_routes, unrecorded_network

STREAM = 2000  # rows read (and sealed) at a time
UNSEALED = ("written before fingerprints, or behind the application's back "
            "(`transit db upgrade` seals the former)")
WHAT_QUARANTINED = "quarantine record"


def gateway_checks(policy: FarePolicy, policy_sha256: str | None = None) -> list[Check]:
    """The gateway's checks, in the order reconcile reports them; `policy` is the run's
    fare policy (`TRANSIT_FARES`, whose file has `policy_sha256`), whose lowest fares
    decide who belongs on the deny list."""

    def check_denylist(session: Session, fingerprints: Fingerprints) -> CheckResult:
        """The deny list's changes and rows as written, and the list what the cards say."""
        return denylist_check(session, fingerprints, policy, policy_sha256)

    return [check_taps, check_quarantine, check_denylist, check_routes, check_tokens,
            adjustment_checks, check_fare_periods]


def _stream(session: Session, table: Table, columns: Sequence[str], order: str
            ) -> Iterator[dict[str, Any]]:
    c = table.c
    rows = session.execute(select(*(c[name] for name in columns)).order_by(c[order])
                           .execution_options(yield_per=STREAM))
    for row in rows:
        yield dict(zip(columns, row, strict=True))


def _macs(session: Session, table: Table, fields: Sequence[str], order: str,
          mac_of: Callable[[dict[str, Any]], str], name: Callable[[dict[str, Any]], str],
          ) -> tuple[int, list[str]]:
    """How many rows `table` holds, and a problem for each whose fingerprint is missing
    or does not match (past `LISTED` of a kind, the rest counted, as reconcile does)."""
    count = 0
    found = Findings()
    for row in _stream(session, table, ("mac", *fields), order):
        count += 1
        if row["mac"] is None:
            found.add(f"{table.name} unfingerprinted",
                      f"{name(row)} is unfingerprinted ({UNSEALED})")
        elif not hmac.compare_digest(row["mac"], mac_of(row)):
            found.add(f"{table.name} changed", f"{name(row)} was changed behind the "
                      "application's back (its fingerprint does not match)")
    return count, found.problems()


# -- the checks ------------------------------------------------------------------------

def check_taps(session: Session, fingerprints: Fingerprints) -> CheckResult:
    """Every inbox row as it was admitted (all but the receipt's fare)."""
    count, problems = _macs(
        session, TapRecord.__table__, TAP_FIELDS, "tap_id",
        lambda row: tap_mac(fingerprints, row),
        lambda row: f"tap {row['tap_id']} (card {row['card']}, service date "
                    f"{row['service_date']}, route {row['route_id']}, {row['status']})")
    return CheckResult([] if problems else [f"{count} tap(s) match their fingerprints"],
                       problems)


def _quarantine_links(session: Session) -> Iterator[tuple[int, str, str, list[object]]]:
    q = QuarantineRecord.__table__.c
    rows = session.execute(select(q.chain_seq, q.prev_mac, q.mac,
                                  *(q[name] for name in QUARANTINE_COLUMNS))
                           .where(q.chain_seq.is_not(None)).order_by(q.chain_seq)
                           .execution_options(yield_per=STREAM))
    for seq, prev_mac, mac, *fields in rows:
        yield seq, prev_mac or "", mac or "", quarantine_payload(*fields)


def check_quarantine(session: Session, fingerprints: Fingerprints) -> CheckResult:
    """The quarantine's chain: no record removed, changed or added behind its back."""
    problems = chain.verify(session, fingerprints, QUARANTINE_CHAIN,
                            _quarantine_links(session), WHAT_QUARANTINED)
    q = QuarantineRecord.__table__.c
    unchained = Findings()
    for rid, reason in session.execute(select(q.id, q.reason).where(q.chain_seq.is_(None))
                                       .order_by(q.id).execution_options(yield_per=STREAM)):
        unchained.add("quarantine unchained", f"quarantine record id {rid} ({reason}) is "
                      f"off the chain: unfingerprinted, {UNSEALED}")
    problems += unchained.problems()
    if problems:
        return CheckResult([], problems)
    count = session.scalar(select(func.count()).select_from(QuarantineRecord)) or 0
    return CheckResult([f"the quarantine's chain of {count} record(s) is whole"], [])


def denylist_check(session: Session, fingerprints: Fingerprints, policy: FarePolicy,
                   policy_sha256: str | None = None) -> CheckResult:
    """The deny list's changes and rows as written, the list the replay of its changes,
    and the replay what each card's status and balance make it under `policy`.

    Balances are judged by lowest fares only when `policy` is the one the gateways run
    (the newest `fares.loaded` record names its SHA-256, or none was ever recorded): the
    list follows the policy in force, and a reconcile run with another `TRANSIT_FARES`
    would take every card between the two policies' lowest fares for tampering. It then
    says so in a warning, and judges the blocked cards alone."""
    changes, problems = _macs(
        session, DenyChange.__table__, ("version", "card", "op", "reason", "changed_ms"),
        "version", lambda row: change_mac(fingerprints, row["version"], row["card"],
                                          row["op"], row["reason"], row["changed_ms"]),
        lambda row: f"deny-list change {row['version']} ({row['op']} card {row['card']})")
    entries, more = _macs(
        session, DenyEntry.__table__, ("card", "reason", "version"), "card",
        lambda row: entry_mac(fingerprints, row["card"], row["reason"], row["version"]),
        lambda row: f"deny-list entry of card {row['card']} ({row['reason']})")
    problems += more
    problems += _replay_disagreements(session)
    in_force = loaded_sha256(session)
    by_balance = policy_sha256 is None or in_force is None or in_force == policy_sha256
    problems += _cards_disagreements(session, policy, by_balance)
    warnings = [] if by_balance else [
        f"the gateways run the fare policy {in_force[:12]}..., this run's TRANSIT_FARES is "
        f"{policy_sha256[:12]}...: the deny list was checked for blocked cards only, not for "
        "balances below the lowest fare (run reconcile with the gateways' TRANSIT_FARES)"]
    checked = []
    if not problems:
        checked.append(f"{changes} deny-list change(s) and {entries} entr(y/ies) match "
                       "their fingerprints; the list is the replay of its changes, and "
                       "holds every card that is blocked or below its lowest fare, and "
                       "no other" if by_balance else "holds every blocked card")
    return CheckResult(checked, problems, warnings)


def _last_changes() -> Subquery:
    """Each card's last deny-list change (card, version, op): what validators replay."""
    c = DenyChange.__table__.c
    latest = (select(c.card, func.max(c.version).label("version"))
              .group_by(c.card).subquery())
    return (select(c.card, c.version, c.op).join(
        latest, (latest.c.card == c.card) & (latest.c.version == c.version))).subquery()


def _replay_disagreements(session: Session) -> list[str]:
    """Where the list differs from the last change of each card (what validators are
    sent: `fare_gateway.denylist.snapshot_at`)."""
    d = DenyEntry.__table__.c
    last = _last_changes()
    found = Findings()
    for card, listed_version, version, op in session.execute(
            select(d.card, d.version, last.c.version, last.c.op)
            .outerjoin(last, last.c.card == d.card).order_by(d.card)
            .execution_options(yield_per=STREAM)):
        if version is None:
            found.add("listed unchanged",
                      f"card {card} is on the deny list, but no change put it there")
        elif op != "+":
            found.add("listed cleared", f"card {card} is on the deny list, but its last "
                      f"change ({version}) takes it off: validators are sent a list "
                      "without it")
        elif listed_version != version:
            found.add("listed version", f"card {card} is on the deny list at change "
                      f"{listed_version}, but its last change is {version}")
    for card, version in session.execute(
            select(last.c.card, last.c.version)
            .outerjoin(DenyEntry.__table__, d.card == last.c.card)
            .where(last.c.op == "+", d.card.is_(None)).order_by(last.c.card)
            .execution_options(yield_per=STREAM)):
        found.add("unlisted", f"card {card}: its last deny-list change ({version}) puts "
                  "it on the list, but the list does not hold it")
    return found.problems()


def _cards_disagreements(session: Session, policy: FarePolicy, by_balance: bool = True
                         ) -> list[str]:
    """Every card whose place in the replayed list is not the one its category, status
    and balance give it now (`fare_gateway.denylist.deny_reason`), in one pass over the
    cards: a card's changes deleted with its row drop it from what validators are sent
    with nothing left to disagree with but the card itself."""
    k = Card.__table__.c
    last = _last_changes()
    found = Findings()
    lowest: dict[str, int] = {}
    for card, category, status, balance, version, op in session.execute(
            select(k.card, k.category, k.status, k.balance, last.c.version, last.c.op)
            .outerjoin(last, last.c.card == k.card).order_by(k.card)
            .execution_options(yield_per=STREAM)):
        reason = deny_reason(policy, category, status, balance)
        if (reason is not None) == (op == "+"):
            continue
        if not by_balance and status != "blocked" and reason != "blocked":
            continue  # a balance judged by another policy than the one in force
        if category not in lowest:
            lowest[category] = policy.lowest_fare(category)
        why = ("is blocked" if status == "blocked" else
               f"holds {balance}, below its lowest fare ({lowest[category]})"
               if reason is not None else
               f"is {status} and holds {balance}, not below its lowest fare "
               f"({lowest[category]})")
        if reason is None:
            found.add("listed needlessly", f"card {card} {why}, but its last deny-list "
                      f"change ({version}) puts it on the list: validators refuse it")
        else:
            found.add(f"{reason} unlisted", f"card {card} {why}, but " + (
                "no deny-list change puts it on the list" if version is None else
                f"its last deny-list change ({version}) takes it off") +
                ": validators are sent a list without it")
    return found.problems()


def check_tokens(session: Session, fingerprints: Fingerprints) -> CheckResult:
    """Every API token row as the application wrote it."""
    count, problems = _macs(
        session, ApiToken.__table__, TOKEN_FIELDS, "id",
        lambda row: token_mac(fingerprints, [row[name] for name in TOKEN_FIELDS]),
        lambda row: f"API token {row['id']} ({row['role']}"
                    + (f", {row['name']}" if row["name"] else "") + ")")
    return CheckResult([] if problems else [f"{count} API token(s) match their "
                                            "fingerprints"], problems)


# -- sealing rows written before fingerprints -------------------------------------------

def seal_legacy(session: Session, fingerprints: Fingerprints) -> dict[str, int]:
    """Fingerprint the rows of the gateway's tables that have none (written before
    fingerprints were kept); how many of each table. Running it again seals nothing.

    Routes imported before any import recorded the network's operators get that record
    now (`tracking.integrity.record_network`), as the command that seals (`transit db
    upgrade`), so that reconcile has a set to compare them with.
    """
    sealed = {
        "taps": _seal(session, TapRecord.__table__, "tap_id", TAP_FIELDS,
                      lambda row: tap_mac(fingerprints, row)),
        "quarantine": _seal_quarantine(session, fingerprints),
        "denylist_changes": _seal(
            session, DenyChange.__table__, "version",
            ("version", "card", "op", "reason", "changed_ms"),
            lambda row: change_mac(fingerprints, row["version"], row["card"], row["op"],
                                   row["reason"], row["changed_ms"])),
        "denylist": _seal(
            session, DenyEntry.__table__, "card", ("card", "reason", "version"),
            lambda row: entry_mac(fingerprints, row["card"], row["reason"],
                                  row["version"])),
        "routes": seal_routes(session, fingerprints),
        "api_tokens": _seal(
            session, ApiToken.__table__, "id", TOKEN_FIELDS,
            lambda row: token_mac(fingerprints, [row[name] for name in TOKEN_FIELDS])),
    }
    if unrecorded_network(session):
        record_network(session, fingerprints, Actor.command(), "routes sealed",
                       {"sealed": True})
    return sealed


def _seal(session: Session, table: Table, key: str, fields: Sequence[str],
          mac_of: Callable[[dict[str, Any]], str]) -> int:
    c = table.c
    update = table.update().where(c[key] == bindparam("b_key")).values(
        mac=bindparam("b_mac"))
    sealed = 0
    while True:
        rows = [dict(zip(fields, row, strict=True)) for row in session.execute(
            select(*(c[name] for name in fields)).where(c.mac.is_(None))
            .order_by(c[key]).limit(STREAM))]
        if not rows:
            return sealed
        session.execute(update, [{"b_key": row[key], "b_mac": mac_of(row)} for row in rows])
        sealed += len(rows)


def _seal_quarantine(session: Session, fingerprints: Fingerprints) -> int:
    """Chain the records kept before the quarantine was chained, oldest first."""
    table = QuarantineRecord.__table__
    q = table.c
    update = table.update().where(q.id == bindparam("b_id")).values(
        chain_seq=bindparam("b_seq"), prev_mac=bindparam("b_prev"), mac=bindparam("b_mac"))
    sealed = 0
    while True:
        rows = session.execute(select(q.id, *(q[name] for name in QUARANTINE_COLUMNS))
                               .where(q.chain_seq.is_(None)).order_by(q.id)
                               .limit(STREAM)).all()
        if not rows:
            return sealed
        links = chain.append(session, fingerprints, QUARANTINE_CHAIN,
                             [quarantine_payload(*fields) for _rid, *fields in rows])
        session.execute(update, [{"b_id": row[0], "b_seq": link.seq, "b_prev": link.prev_mac,
                                  "b_mac": link.mac} for row, link in zip(rows, links,
                                                                          strict=True)])
        sealed += len(rows)
