"""Keyed fingerprints of the routes, whose operator decides whose revenue a fare credits.

`routes.mac` (`ledger.fingerprint`) covers every column of a route, its operator
(`agency_id`) first among them; the GTFS import, the one writer of routes, sets it. A
route re-pointed to another operator with plain SQL, so that its fares credit that
operator, no longer matches its fingerprint, and `check_routes` (run by `transit
reconcile`) names it. Without the key the change cannot be given a matching one.

A route deleted leaves no row to mismatch, and its fares then credit `unassigned`: so
every import's `gtfs.imported` audit record (`record_network`) carries a keyed digest of
the network's operators, over every (route, operator) pair and their number, and
`check_routes` recomputes it from the table and compares it with the newest such
record. A route deleted, added or re-pointed behind the application's back no longer
gives the recorded digest; the audit trail's chain keeps the record itself from being
changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger import audit
from ledger.adapters.models import AuditRecord
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.reconcile import CheckResult
from tracking.adapters.models import Route

TABLE = "routes"
FIELDS = ("route_id", "agency_id", "short_name", "long_name", "color", "text_color")
STREAM = 2000  # rows read at a time: reconcile stays bounded in memory on any network
OPERATORS = "route operators"  # the digest's own table name: it fits no row's fingerprint
IMPORTED = "gtfs.imported"  # the audit action that records the network's operators
_MOD = 1 << 256


class OperatorsDigest:
    """A keyed digest of (route, operator) pairs fed in any order, and their number.

    Each pair's fingerprint is added modulo 2**256, so the order the rows come in (and
    the database's collation) does not matter and a stream needs no memory; a pair
    cannot be removed or changed without the key, which every term needs.
    """

    def __init__(self, fingerprints: Fingerprints) -> None:
        self.fingerprints = fingerprints
        self.count = 0
        self._sum = 0

    def add(self, route_id: str, agency_id: str) -> None:
        """Count one route and its operator in."""
        self.count += 1
        self._sum = (self._sum + int(self.fingerprints.of(OPERATORS, route_id, agency_id),
                                     16)) % _MOD

    def digest(self) -> str:
        """The digest of every pair added so far, their number included."""
        return self.fingerprints.of(OPERATORS, self.count, f"{self._sum:064x}")


def operators_digest(fingerprints: Fingerprints, pairs: Iterable[tuple[str, str]]
                     ) -> tuple[int, str]:
    """How many (route, operator) pairs, and their keyed digest (`OperatorsDigest`)."""
    digest = OperatorsDigest(fingerprints)
    for route_id, agency_id in pairs:
        digest.add(route_id, agency_id)
    return digest.count, digest.digest()


def _table_pairs(session: Session) -> Iterable[tuple[str, str]]:
    r = Route.__table__.c
    for row in session.execute(
            select(r.route_id, r.agency_id).execution_options(yield_per=STREAM)):
        yield row[0], row[1]


def record_network(session: Session, fingerprints: Fingerprints, actor: Actor,
                   subject: str, detail: Mapping[str, object] | None = None
                   ) -> AuditRecord:
    """Record the routes as they stand in this transaction as the network's operators:
    the `gtfs.imported` audit record `check_routes` compares the table with.

    The GTFS import calls it; so must any other writer of routes (a fixture, a network
    built in code with `new_route`), after its last route.
    """
    session.flush()
    count, digest = operators_digest(fingerprints, _table_pairs(session))
    return audit.record(session, fingerprints, actor, IMPORTED, subject,
                        {**dict(detail or {}), "operators": {"routes": count,
                                                             "digest": digest}})


def unrecorded_network(session: Session) -> bool:
    """Whether routes exist that no `gtfs.imported` record's digest covers (imported
    before imports recorded it)."""
    if session.scalar(select(Route.route_id).limit(1)) is None:
        return False
    recorded = _recorded_operators(session)
    return recorded is None or "digest" not in recorded[1]


def _recorded_operators(session: Session) -> tuple[int, dict[str, object]] | None:
    """The newest `gtfs.imported` record's number and its recorded operators (empty
    when it recorded none); None when there is no such record."""
    row = session.execute(select(AuditRecord.seq, AuditRecord.detail)
                          .where(AuditRecord.action == IMPORTED)
                          .order_by(AuditRecord.seq.desc()).limit(1)).first()
    if row is None:
        return None
    try:
        detail = json.loads(row.detail)
    except ValueError:  # the audit chain's own check names a record changed
        detail = {}
    operators = detail.get("operators") if isinstance(detail, dict) else None
    return row.seq, operators if isinstance(operators, dict) else {}


def route_mac(fingerprints: Fingerprints, row: Mapping[str, object]) -> str:
    """The fingerprint of a route (a mapping holding at least `FIELDS`)."""
    return fingerprints.of(TABLE, *(row[name] for name in FIELDS))


def new_route(fingerprints: Fingerprints, route_id: str, agency_id: str, *,
              short_name: str = "", long_name: str = "", color: str = "",
              text_color: str = "") -> Route:
    """A route row with its fingerprint, for a writer other than the GTFS import (a
    fixture, a network built in code)."""
    row = {"route_id": route_id, "agency_id": agency_id, "short_name": short_name,
           "long_name": long_name, "color": color, "text_color": text_color}
    return Route(**row, mac=route_mac(fingerprints, row))


def check_routes(session: Session, fingerprints: Fingerprints) -> CheckResult:
    """Every route as the import wrote it (its operator and the rest of its columns),
    and the set of routes and operators the newest import recorded."""
    r = Route.__table__.c
    problems: list[str] = []
    pairs = OperatorsDigest(fingerprints)
    rows = session.execute(select(r.mac, *(r[name] for name in FIELDS))
                           .order_by(r.route_id).execution_options(yield_per=STREAM))
    for mac, *fields in rows:
        route = dict(zip(FIELDS, fields, strict=True))
        pairs.add(route["route_id"], route["agency_id"])
        if mac is None:
            problems.append(f"route {route['route_id']} (operator {route['agency_id']}) is "
                            "unfingerprinted: written before fingerprints, or behind the "
                            "application's back (`transit db upgrade` seals the former)")
        elif not fingerprints.matches(mac, TABLE, *fields):
            problems.append(f"route {route['route_id']} (operator {route['agency_id']}) was "
                            "changed behind the application's back (its operator or another "
                            "column no longer matches its fingerprint)")
    problems += _set_problems(session, pairs)
    checked = [] if problems else [f"{pairs.count} route(s) and their operators match "
                                   "their fingerprints and the set the last GTFS import "
                                   "recorded"]
    return CheckResult(checked, problems)


def _set_problems(session: Session, pairs: OperatorsDigest) -> list[str]:
    recorded = _recorded_operators(session)
    if recorded is None:
        return [] if pairs.count == 0 else [
            f"{pairs.count} route(s), but no GTFS import recorded the network's operators "
            "(`transit gtfs import`): routes written behind the application's back"]
    seq, operators = recorded
    if "digest" not in operators:
        return [f"the last GTFS import (audit record {seq}) recorded no digest of the "
                "network's operators: import the feed again to record them"]
    if operators["digest"] == pairs.digest():
        return []
    return [f"the routes and their operators are not those the last GTFS import recorded "
            f"(audit record {seq}: {operators.get('routes')} route(s); the table holds "
            f"{pairs.count}): a route deleted, added or re-pointed behind the "
            "application's back"]


def seal_routes(session: Session, fingerprints: Fingerprints) -> int:
    """Fingerprint the routes that have none (written before fingerprints); how many."""
    r = Route.__table__.c
    sealed = 0
    while True:
        rows = session.execute(select(*(r[name] for name in FIELDS))
                               .where(r.mac.is_(None)).order_by(r.route_id)
                               .limit(STREAM)).all()
        if not rows:
            return sealed
        for fields in rows:
            route = dict(zip(FIELDS, fields, strict=True))
            session.execute(update(Route).where(r.route_id == route["route_id"])
                            .values(mac=route_mac(fingerprints, route)))
        sealed += len(rows)
