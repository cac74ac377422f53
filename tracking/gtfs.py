"""`transit gtfs import FEED.zip`: agencies, routes, stops, shapes and trips.

Real feeds are untidy: quoted fields, a byte-order mark, optional files missing, stop
times without times. The importer accepts all of that; what it cannot use (a missing
required file or column, a coordinate that is not a number, an id that breaks the
contract's rule) is a `GtfsError` naming the file, line and field. A re-import replaces
the previous feed in one transaction, and every row is read and checked before the
first one is written, so a refused feed leaves the network as it was. The files are
read within `Limits` (`tracking.gtfs_files`), and what is kept of them is bounded too.
Each route is written with its keyed fingerprint (`tracking.integrity`): the operator a
route's fares credit cannot be changed behind the application's back unnoticed.
"""

from __future__ import annotations

import math
import re
import zipfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ledger.adapters.bulk import bulk_insert
from ledger.adapters.db import Base
from ledger.fingerprint import Fingerprints
from tracking.adapters.models import Agency, Route, ShapePoint, Stop, Trip, TripStop
from tracking.gtfs_files import GtfsError, Limits, has, open_zip, read_rows
from tracking.integrity import route_mac
from transit.topics import ID_PATTERN

REQUIRED = {
    "agency.txt": ("agency_name",),
    "routes.txt": ("route_id",),
    "stops.txt": ("stop_id", "stop_lat", "stop_lon"),
}
OPTIONAL = {
    "shapes.txt": ("shape_id", "shape_pt_lat", "shape_pt_lon", "shape_pt_sequence"),
    "trips.txt": ("route_id", "trip_id"),
    "stop_times.txt": ("trip_id", "stop_id", "stop_sequence"),
}
# The columns each file is read for: the rest of a row is never kept.
USED = {
    "agency.txt": ("agency_id", "agency_name", "agency_url", "agency_timezone"),
    "routes.txt": ("route_id", "agency_id", "route_short_name", "route_long_name",
                   "route_color", "route_text_color"),
    "stops.txt": ("stop_id", "stop_name", "stop_lat", "stop_lon", "location_type"),
    "shapes.txt": OPTIONAL["shapes.txt"],
    "trips.txt": ("route_id", "trip_id", "service_id", "trip_headsign", "direction_id",
                  "shape_id"),
    "stop_times.txt": OPTIONAL["stop_times.txt"],
}
CHUNK = 5000
MiB = 1 << 20
INT_MAX = 2**31 - 1  # the integer columns (sequences, direction) are 32-bit
# Real stop ids hold spaces ("Blok M": 583 of Transjakarta's 5,365), so of a stop id only
# a control character and a length past its column are refused.
STOP_ID_CHARS = 100
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

@dataclass(frozen=True)
class ImportReport:
    agencies: int
    routes: int
    stops: int
    shape_points: int
    shapes: int
    trips: int
    trip_stops: int
    warnings: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (f"{self.agencies} agencies, {self.routes} routes, {self.stops} stops, "
                f"{self.shapes} shapes ({self.shape_points} points), {self.trips} trips, "
                f"{self.trip_stops} trip stops")


def _rows(feed: zipfile.ZipFile, name: str, limits: Limits
          ) -> Iterator[tuple[int, dict[str, str]]]:
    return read_rows(feed, name, limits, REQUIRED.get(name) or OPTIONAL[name], USED[name])


# -- values --------------------------------------------------------------------------------

def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _id(value: str, name: str, line: int, field: str) -> str:
    """An id of the contract's rule (1-64 of A-Z a-z 0-9 . _ -)."""
    if not ID_PATTERN.fullmatch(value):
        problem = "is empty" if not value else (f"{_shown(value)} is not an id (1-64 of "
                                                "A-Z a-z 0-9 . _ -)")
        raise GtfsError(f"{name}:{line}: {field} {problem}")
    return value


def _stop_id(value: str, name: str, line: int, field: str = "stop_id") -> str:
    """A stop id: any text (real ones hold spaces) but no control character, and short."""
    if not value:
        raise GtfsError(f"{name}:{line}: {field} is empty")
    if len(value) > STOP_ID_CHARS or CONTROL.search(value):
        raise GtfsError(f"{name}:{line}: {field} {_shown(value)} is longer than "
                        f"{STOP_ID_CHARS} characters or holds a control character")
    return value


def _number(value: str, name: str, line: int, field: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise GtfsError(f"{name}:{line}: {field} is not a number: {_shown(value)}") from None
    if not math.isfinite(number):  # "inf", "nan", "1e400"
        raise GtfsError(f"{name}:{line}: {field} is not a finite number: {_shown(value)}")
    return number


def _coord(value: str, name: str, line: int, field: str, limit: float) -> int:
    number = _number(value, name, line, field)
    if not -limit <= number <= limit:
        raise GtfsError(f"{name}:{line}: {field} out of range: {_shown(value)}")
    return int(round(number * 1e6))


def _int(value: str, name: str, line: int, field: str) -> int:
    number = _number(value, name, line, field)
    if not 0 <= number <= INT_MAX:
        raise GtfsError(f"{name}:{line}: {field} out of range (0 to {INT_MAX}): "
                        f"{_shown(value)}")
    return int(number)


def _color(value: str) -> str:
    value = value.lstrip("#").upper()
    return value if len(value) == 6 and all(c in "0123456789ABCDEF" for c in value) else ""


def _short(value: str, name: str, line: int, field: str, chars: int) -> str:
    """A code that must fit its column whole (a truncated time zone would be another)."""
    if len(value) > chars:
        raise GtfsError(f"{name}:{line}: {field} longer than {chars} characters")
    return value


# -- the import ------------------------------------------------------------------------------

def import_feed(session: Session, path: str | Path, limits: Limits | None = None, *,
                fingerprints: Fingerprints | None = None) -> ImportReport:
    """Replace the network with the feed at `path`; the caller commits.

    `fingerprints` are the keyed ones (`Ledger.fingerprints`); without them the routes
    get the unkeyed ones, which a reconcile under TRANSIT_SECRET_KEY names.
    """
    limits = limits or Limits()
    with open_zip(path, limits) as feed:
        return _import(session, feed, limits, fingerprints or Fingerprints(None))


def _import(session: Session, feed: zipfile.ZipFile, limits: Limits,
            fingerprints: Fingerprints) -> ImportReport:
    agencies = _agencies(feed, limits)
    routes = _routes(feed, limits, str(agencies[0]["agency_id"]))
    stops = _stops(feed, limits)
    shapes, shape_blocks = _shapes(feed, limits)
    trips = _trips(feed, limits)
    trip_counts = Counter(str(trip["trip_id"]) for trip in trips)
    numbered = _number_reused_ids(trips, trip_counts, shapes, shape_blocks)
    mended = _add_missing_agencies(routes, agencies) + _drop_trips_of_unknown_routes(
        trips, routes)
    trip_stops, skipped = _trip_stops(feed, limits, trip_counts, trips, stops)
    if skipped:
        mended.append(f"stop_times.txt: {skipped} row(s) naming unknown trips or stops "
                      "skipped")
    report = ImportReport(len(agencies), len(routes), len(stops), len(shapes),
                          len(set(shapes.text["shape_id"])), len(trips), len(trip_stops),
                          tuple(numbered + mended))
    for route in routes:
        route["mac"] = route_mac(fingerprints, route)
    for model in (TripStop, Trip, ShapePoint, Stop, Route, Agency):
        session.execute(delete(model))
    for model, rows, key in ((Agency, agencies, "agency_id"), (Route, routes, "route_id"),
                             (Stop, stops, "stop_id"), (Trip, trips, "trip_id")):
        _insert(session, model, _last_wins(rows, key))
        # Freed once inserted, and with them the UTF-8 copy the driver leaves in each
        # string that is not ASCII (up to 4 bytes a character: 36 MB for 50,000 stops).
        rows.clear()
    _insert(session, ShapePoint, shapes.last_first("shape_id", "seq", "lat_e6", "lon_e6"))
    _insert(session, TripStop, trip_stops.last_first("trip_id", "seq", "stop_id"))
    return report


class Columns:
    """A table's rows kept column by column, text as shared strings, numbers in 32-bit
    arrays (every number the network stores is a 32-bit integer).

    Shape points and stop times come by the hundred thousand: a row costs about 20
    bytes this way against some 300 as a dict of its own, and it is that difference
    which keeps a feed at its row limits inside the memory limit.
    """

    def __init__(self, text: tuple[str, ...], numbers: tuple[str, ...]) -> None:
        self.text: dict[str, list[str]] = {name: [] for name in text}
        self.numbers: dict[str, array[int]] = {name: array("i") for name in numbers}

    def __len__(self) -> int:
        return len(next(iter(self.text.values())))

    def append(self, **row: Any) -> None:
        for name, strings in self.text.items():
            strings.append(row[name])
        for name, numbers in self.numbers.items():
            numbers.append(row[name])

    def last_first(self, *names: str) -> Iterator[dict[str, Any]]:
        """The rows as dicts of the named columns, the last row first."""
        columns = [self.text[name] if name in self.text else self.numbers[name]
                   for name in names]
        for i in range(len(self) - 1, -1, -1):
            yield {name: column[i] for name, column in zip(names, columns, strict=True)}


def _insert(session: Session, model: type[Base], rows: Iterable[dict[str, Any]]) -> None:
    """Insert in batches, skipping a key already inserted: where a feed repeats a key,
    the later row wins (as most consumers of GTFS treat it), so callers give it first."""
    batches = iter(rows)
    while batch := list(islice(batches, CHUNK)):
        bulk_insert(session, model.__table__, batch, ignore_conflicts=True)


def _last_wins(rows: list[dict[str, object]], key: str) -> list[dict[str, object]]:
    """One row per key, the last of the feed's, where the key was first seen."""
    out: dict[object, dict[str, object]] = {}
    for row in rows:
        out[row[key]] = row
    return list(out.values())


def _agencies(feed: zipfile.ZipFile, limits: Limits) -> list[dict[str, object]]:
    agencies: list[dict[str, object]] = []
    for line, row in _rows(feed, "agency.txt", limits):
        agencies.append({"agency_id": _id(row.get("agency_id") or "default", "agency.txt",
                                          line, "agency_id"),
                         "name": row["agency_name"][:200],
                         "url": row.get("agency_url", "")[:300],
                         "timezone": _short(row.get("agency_timezone", ""), "agency.txt",
                                            line, "agency_timezone", 64)})
    if not agencies:
        raise GtfsError("agency.txt: no agency")
    return agencies


def _routes(feed: zipfile.ZipFile, limits: Limits, default_agency: str
            ) -> list[dict[str, object]]:
    routes: list[dict[str, object]] = []
    for line, row in _rows(feed, "routes.txt", limits):
        routes.append({"route_id": _id(row["route_id"], "routes.txt", line, "route_id"),
                       "agency_id": _id(row.get("agency_id") or default_agency,
                                        "routes.txt", line, "agency_id"),
                       "short_name": row.get("route_short_name", "")[:100],
                       "long_name": row.get("route_long_name", "")[:300],
                       "color": _color(row.get("route_color", "")),
                       "text_color": _color(row.get("route_text_color", ""))})
    return routes


def _stops(feed: zipfile.ZipFile, limits: Limits) -> list[dict[str, object]]:
    stops: list[dict[str, object]] = []
    for line, row in _rows(feed, "stops.txt", limits):
        if not row["stop_lat"] and not row["stop_lon"] and row.get("location_type") in (
                "3", "4"):
            continue  # generic nodes and boarding areas have no position
        stops.append({"stop_id": _stop_id(row["stop_id"], "stops.txt", line),
                      "name": row.get("stop_name", "")[:200],
                      "lat_e6": _coord(row["stop_lat"], "stops.txt", line, "stop_lat", 90),
                      "lon_e6": _coord(row["stop_lon"], "stops.txt", line, "stop_lon", 180)})
    return stops


def _shapes(feed: zipfile.ZipFile, limits: Limits) -> tuple[Columns, dict[str, int]]:
    """The shape points, each with the block of its shape id it belongs to (a new block
    starts where the sequence does not go up), and the blocks of each shape id."""
    points = Columns(("shape_id",), ("block", "seq", "lat_e6", "lon_e6"))
    blocks: dict[str, int] = {}
    if not has(feed, "shapes.txt"):
        return points, blocks
    names: dict[str, str] = {}  # one string per shape id, however many points name it
    last: tuple[str, int] | None = None
    count = 0
    for line, row in _rows(feed, "shapes.txt", limits):
        shape_id = _id(row["shape_id"], "shapes.txt", line, "shape_id")
        shape_id = names.setdefault(shape_id, shape_id)
        seq = _int(row["shape_pt_sequence"], "shapes.txt", line, "shape_pt_sequence")
        if last is None or last[0] != shape_id or seq <= last[1]:
            count += 1
            if count > limits.shapes:
                raise GtfsError(f"shapes.txt:{line}: more than {limits.shapes:,} shapes "
                                "(the limit)")
            blocks[shape_id] = blocks.get(shape_id, 0) + 1
        last = (shape_id, seq)
        points.append(
            shape_id=shape_id, block=blocks[shape_id], seq=seq,
            lat_e6=_coord(row["shape_pt_lat"], "shapes.txt", line, "shape_pt_lat", 90),
            lon_e6=_coord(row["shape_pt_lon"], "shapes.txt", line, "shape_pt_lon", 180))
    return points, blocks


def _trips(feed: zipfile.ZipFile, limits: Limits) -> list[dict[str, object]]:
    trips: list[dict[str, object]] = []
    if not has(feed, "trips.txt"):
        return trips
    for line, row in _rows(feed, "trips.txt", limits):
        direction = row.get("direction_id", "")
        service = row.get("service_id", "")
        shape = row.get("shape_id", "")
        trips.append({"trip_id": _id(row["trip_id"], "trips.txt", line, "trip_id"),
                      "route_id": _id(row["route_id"], "trips.txt", line, "route_id"),
                      "service_id": service and _id(service, "trips.txt", line,
                                                    "service_id"),
                      "headsign": row.get("trip_headsign", "")[:200],
                      "direction_id": _int(direction, "trips.txt", line, "direction_id")
                      if direction else None,
                      "shape_id": _id(shape, "trips.txt", line, "shape_id")
                      if shape else None})
    return trips


def _number_reused_ids(trips: list[dict[str, object]], trip_counts: Counter[str],
                       points: Columns, shape_blocks: dict[str, int]) -> list[str]:
    """Give each trip and shape its own id where a feed reuses one.

    Some real feeds (the Transjakarta one among them) reuse a trip_id such as "a-b"
    across routes, each time with its own block of stop_times and its own block of
    shape points under a shared shape_id. Taken literally, every route but one would
    lose its line and stops. The n-th trip carrying a reused id is matched with the
    n-th block of rows carrying it, in file order, and renamed `ID@n` (`@` is not in
    an id, so no feed's own id can be one of these). The stop times follow as they are
    read (`_trip_stops`).
    """
    warnings = []
    nth: Counter[str] = Counter()
    by_shape: Counter[str] = Counter()
    for trip in trips:
        original = str(trip["trip_id"])
        if trip_counts[original] > 1:
            nth[original] += 1
            trip["trip_id"] = f"{original}@{nth[original]}"
        shape = trip["shape_id"]
        if shape is not None and shape_blocks.get(str(shape), 1) > 1:
            by_shape[str(shape)] += 1
            trip["shape_id"] = f"{shape}@{by_shape[str(shape)]}"
    ids = points.text["shape_id"]
    renamed: dict[tuple[str, int], str] = {}  # one string per block, not per point
    for i, (shape_id, block) in enumerate(zip(ids, points.numbers["block"], strict=True)):
        if shape_blocks[shape_id] > 1:
            ids[i] = renamed.setdefault((shape_id, block), f"{shape_id}@{block}")
    reused = sum(1 for n in trip_counts.values() if n > 1)
    if reused:
        warnings.append(f"trips.txt: {reused} trip id(s) used by several trips; "
                        "each numbered in file order (ID@n) with its own stops")
    split = [s for s, n in shape_blocks.items() if n > 1]
    if split:
        warnings.append(f"shapes.txt: {len(split)} shape id(s) holding several lines; each "
                        "line numbered in file order (ID@n)")
    return warnings


def _add_missing_agencies(routes: list[dict[str, object]], agencies: list[dict[str, object]]
                          ) -> list[str]:
    """Real feeds name agencies that agency.txt spells otherwise; keep the route and its
    operator id (settlement reports by it) with a placeholder agency, and say so."""
    warnings = []
    agency_ids = {a["agency_id"] for a in agencies}
    for route in routes:
        if route["agency_id"] not in agency_ids:
            agencies.append({"agency_id": route["agency_id"], "name": route["agency_id"],
                             "url": "", "timezone": ""})
            agency_ids.add(route["agency_id"])
            warnings.append(f"routes.txt: agency {route['agency_id']} is not in agency.txt; "
                            "added with its id as name")
    return warnings


def _drop_trips_of_unknown_routes(trips: list[dict[str, object]],
                                  routes: list[dict[str, object]]) -> list[str]:
    route_ids = {r["route_id"] for r in routes}
    kept = [t for t in trips if t["route_id"] in route_ids]
    dropped = len(trips) - len(kept)
    trips[:] = kept
    return [f"trips.txt: {dropped} trip(s) of unknown routes skipped"] if dropped else []


def _trip_stops(feed: zipfile.ZipFile, limits: Limits, trip_counts: Counter[str],
                trips: list[dict[str, object]], stops: list[dict[str, object]]
                ) -> tuple[Columns, int]:
    """The stop times of the kept trips at known stops, and how many rows were skipped.

    A trip id several trips share is numbered by the blocks of rows naming it, in file
    order, as its trips were (`_number_reused_ids`); rows of unknown trips or stops are
    skipped as they are read, so that only what is inserted is kept.
    """
    kept = Columns(("trip_id", "stop_id"), ("seq",))
    if not has(feed, "stop_times.txt"):
        return kept, 0
    trip_ids = {str(t["trip_id"]): str(t["trip_id"]) for t in trips}
    stop_ids = {str(s["stop_id"]): str(s["stop_id"]) for s in stops}
    blocks: Counter[str] = Counter()
    last: tuple[str, int] | None = None
    skipped = 0
    for line, row in _rows(feed, "stop_times.txt", limits):
        trip_id = _id(row["trip_id"], "stop_times.txt", line, "trip_id")
        seq = _int(row["stop_sequence"], "stop_times.txt", line, "stop_sequence")
        stop_id = _stop_id(row["stop_id"], "stop_times.txt", line)
        starts_block = last is None or last[0] != trip_id or seq <= last[1]
        last = (trip_id, seq)
        if trip_id not in trip_counts:
            skipped += 1
            continue
        if starts_block:
            blocks[trip_id] += 1
        own_trip = trip_ids.get(f"{trip_id}@{blocks[trip_id]}" if trip_counts[trip_id] > 1
                                else trip_id)
        own_stop = stop_ids.get(stop_id)
        if own_trip is None or own_stop is None:
            skipped += 1
            continue
        kept.append(trip_id=own_trip, stop_id=own_stop, seq=seq)
    return kept, skipped
