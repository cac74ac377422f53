"""Keyed fingerprints of the routes, whose operator decides whose revenue a fare credits.

`routes.mac` (`ledger.fingerprint`) covers every column of a route, its operator
(`agency_id`) first among them; the GTFS import, the one writer of routes, sets it. A
route re-pointed to another operator with plain SQL, so that its fares credit that
operator, no longer matches its fingerprint, and `check_routes` (run by `transit
reconcile`) names it. Without the key the change cannot be given a matching one.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ledger.fingerprint import Fingerprints
from ledger.reconcile import CheckResult
from tracking.adapters.models import Route

TABLE = "routes"
FIELDS = ("route_id", "agency_id", "short_name", "long_name", "color", "text_color")
STREAM = 2000  # rows read at a time: reconcile stays bounded in memory on any network


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
    """Every route as the import wrote it: its operator and the rest of its columns."""
    r = Route.__table__.c
    problems: list[str] = []
    count = 0
    rows = session.execute(select(r.mac, *(r[name] for name in FIELDS))
                           .order_by(r.route_id).execution_options(yield_per=STREAM))
    for mac, *fields in rows:
        count += 1
        route = dict(zip(FIELDS, fields, strict=True))
        if mac is None:
            problems.append(f"route {route['route_id']} (operator {route['agency_id']}) is "
                            "unfingerprinted: written before fingerprints, or behind the "
                            "application's back (`transit db upgrade` seals the former)")
        elif not fingerprints.matches(mac, TABLE, *fields):
            problems.append(f"route {route['route_id']} (operator {route['agency_id']}) was "
                            "changed behind the application's back (its operator or another "
                            "column no longer matches its fingerprint)")
    checked = [] if problems else [f"{count} route(s) and their operators match their "
                                   "fingerprints"]
    return CheckResult(checked, problems)


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
