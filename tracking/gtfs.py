"""`transit gtfs import FEED.zip`: agencies, routes, stops, shapes, trips and their stop
times, the service calendar and frequencies.

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
import time
import uuid
import zipfile
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ledger.adapters.bulk import bulk_insert
from ledger.adapters.db import Base
from ledger.fingerprint import Fingerprints
from tracking.adapters.models import (
    Agency,
    CalendarEntry,
    GtfsFeed,
    Route,
    ServiceDate,
    ShapePoint,
    Stop,
    Trip,
    TripFrequency,
    TripStop,
)
from tracking.gtfs_files import GtfsError, Limits, has, open_zip, read_rows
from tracking.integrity import route_mac
from tracking.schedule import FIT_M, Shape, StopRow, fit_m
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
    "calendar.txt": ("service_id", "monday", "tuesday", "wednesday", "thursday", "friday",
                     "saturday", "sunday", "start_date", "end_date"),
    "calendar_dates.txt": ("service_id", "date", "exception_type"),
    "frequencies.txt": ("trip_id", "start_time", "end_time", "headway_secs"),
}
WEEKDAYS = OPTIONAL["calendar.txt"][1:8]
# The columns each file is read for: the rest of a row is never kept.
USED = {
    "agency.txt": ("agency_id", "agency_name", "agency_url", "agency_timezone"),
    "routes.txt": ("route_id", "agency_id", "route_short_name", "route_long_name",
                   "route_color", "route_text_color"),
    "stops.txt": ("stop_id", "stop_name", "stop_lat", "stop_lon", "location_type"),
    "shapes.txt": OPTIONAL["shapes.txt"],
    "trips.txt": ("route_id", "trip_id", "service_id", "trip_headsign", "direction_id",
                  "shape_id"),
    "stop_times.txt": (*OPTIONAL["stop_times.txt"], "arrival_time", "departure_time"),
    "calendar.txt": OPTIONAL["calendar.txt"],
    "calendar_dates.txt": OPTIONAL["calendar_dates.txt"],
    "frequencies.txt": (*OPTIONAL["frequencies.txt"], "exact_times"),
}
NO_TIME = -1  # a stop time without a time, in the 32-bit column that keeps them
TIME = re.compile(r"(\d{1,3}):([0-5]\d):([0-5]\d)")  # GTFS: hours past 24 allowed

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
    services: int = 0       # calendar.txt rows
    service_dates: int = 0  # calendar_dates.txt rows
    frequencies: int = 0    # frequencies.txt rows of kept trips
    timed_stops: int = 0    # trip stops with an arrival or departure time

    def __str__(self) -> str:
        text = (f"{self.agencies} agencies, {self.routes} routes, {self.stops} stops, "
                f"{self.shapes} shapes ({self.shape_points} points), {self.trips} trips, "
                f"{self.trip_stops} trip stops")
        extra = [f"{n} {what}" for n, what in (
            (self.timed_stops, "timed stops"), (self.services, "services"),
            (self.service_dates, "service dates"), (self.frequencies, "frequencies")) if n]
        return ", ".join([text, *extra])


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


def _time(value: str, name: str, line: int, field: str, optional: bool = True
          ) -> int | None:
    """A GTFS time, HH:MM:SS with hours past 24 for a trip past midnight, as seconds
    of its service day; None for an empty one where that is allowed."""
    if not value and optional:
        return None
    match = TIME.fullmatch(value)
    if match is None:
        raise GtfsError(f"{name}:{line}: {field} is not a time (HH:MM:SS): "
                        f"{_shown(value)}")
    h, m, sec = (int(g) for g in match.groups())
    return h * 3600 + m * 60 + sec


def _date(value: str, name: str, line: int, field: str) -> str:
    """A GTFS date, YYYYMMDD, that is a day of the calendar."""
    try:
        if len(value) != 8 or not value.isdigit():
            raise ValueError
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise GtfsError(f"{name}:{line}: {field} is not a date (YYYYMMDD): "
                        f"{_shown(value)}") from None
    return value


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
    repaired = _pair_shape_lines(trips, trip_stops, stops, shapes, shape_blocks)
    if repaired:
        mended.append(f"shapes.txt: {repaired} trip(s) given the line of their shape id "
                      "their stops lie along (not the one its file order gave)")
    calendar = _calendar(feed, limits)
    service_dates = _service_dates(feed, limits)
    frequencies, unknown = _frequencies(feed, limits, trips)
    if unknown:
        mended.append(f"frequencies.txt: {unknown} row(s) naming unknown trips skipped")
    timed = sum(1 for a, d in zip(trip_stops.numbers["arrival_s"],
                                  trip_stops.numbers["departure_s"], strict=True)
                if a != NO_TIME or d != NO_TIME)
    report = ImportReport(len(agencies), len(routes), len(stops), len(shapes),
                          len(set(shapes.text["shape_id"])), len(trips), len(trip_stops),
                          tuple(numbered + mended), len(calendar), len(service_dates),
                          len(frequencies), timed)
    for route in routes:
        route["mac"] = route_mac(fingerprints, route)
    for model in (TripFrequency, ServiceDate, CalendarEntry, TripStop, Trip, ShapePoint,
                  Stop, Route, Agency):
        session.execute(delete(model))
    for model, rows, key in ((Agency, agencies, "agency_id"), (Route, routes, "route_id"),
                             (Stop, stops, "stop_id"), (Trip, trips, "trip_id")):
        _insert(session, model, _last_wins(rows, key))
        # Freed once inserted, and with them the UTF-8 copy the driver leaves in each
        # string that is not ASCII (up to 4 bytes a character: 36 MB for 50,000 stops).
        rows.clear()
    _insert(session, ShapePoint, shapes.last_first("shape_id", "seq", "lat_e6", "lon_e6"))
    _insert(session, TripStop, _timed(trip_stops.last_first(
        "trip_id", "seq", "stop_id", "arrival_s", "departure_s")))
    _insert(session, CalendarEntry, _last_wins(calendar, "service_id"))
    _insert(session, ServiceDate, reversed(service_dates))
    _insert(session, TripFrequency, reversed(frequencies))
    # A new stamp in the same transaction: a gateway that sees it sees the whole feed
    # (tracking.schedule_load asks for it every few seconds, and reads the schedule again
    # only when it changed). Deleting the row first also queues a second import running
    # at once behind this one's commit, as the other tables' deletes do.
    session.execute(delete(GtfsFeed))
    session.add(GtfsFeed(import_id=uuid.uuid4().hex, imported_ms=int(time.time() * 1000)))
    session.flush()
    return report


def _timed(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Stop time rows with their times as the table keeps them (None for none)."""
    for row in rows:
        for name in ("arrival_s", "departure_s"):
            if row[name] == NO_TIME:
                row[name] = None
        yield row


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


def _pair_shape_lines(trips: list[dict[str, object]], trip_stops: Columns,
                      stops: list[dict[str, object]], points: Columns,
                      shape_blocks: dict[str, int]) -> int:
    """Give each trip of a shape id holding several lines the line its stops lie along;
    how many trips changed line.

    Numbering in file order (`_number_reused_ids`) pairs the n-th trip of a shape id
    with its n-th line, which is not how the Transjakarta feed lays them out: 244 of its
    536 trips got a line kilometres from their stops that way. A trip whose own line
    fits (half its stops within `FIT_M`) keeps it; else it takes the best fitting of its
    shape id's lines, if one fits.
    """
    if not any(n > 1 for n in shape_blocks.values()):
        return 0
    lines: dict[str, list[tuple[int, int]]] = {}
    ids, lats, lons = (points.text["shape_id"], points.numbers["lat_e6"],
                       points.numbers["lon_e6"])
    for shape_id, lat, lon in zip(ids, lats, lons, strict=True):
        if "@" in shape_id:
            lines.setdefault(shape_id, []).append((lat, lon))
    siblings: dict[str, list[str]] = {}
    for name in lines:
        siblings.setdefault(name.split("@", 1)[0], []).append(name)
    where = {str(s["stop_id"]): (int(s["lat_e6"]), int(s["lon_e6"]))  # type: ignore[call-overload]
             for s in stops}
    stops_of: dict[str, list[StopRow]] = {}
    for trip_id, stop_id in zip(trip_stops.text["trip_id"], trip_stops.text["stop_id"],
                                strict=True):
        lat, lon = where[stop_id]
        stops_of.setdefault(trip_id, []).append(StopRow(stop_id, "", lat, lon))
    shapes: dict[str, Shape] = {}
    cells: dict[str, set[tuple[int, int]]] = {}

    def fit(name: str, of: list[StopRow]) -> float:
        if name not in shapes:
            shapes[name] = Shape.of(lines[name])
            cells[name] = _cells(lines[name])
        sample = of[::max(1, len(of) // 7)]
        # Most lines of a shared id are across the city from the trip: their grid
        # cells tell so without measuring (5 s of the import measured, 0.1 s this way).
        near = sum(1 for s in sample if any(
            (s.lat_e6 // CELL_E6 + i, s.lon_e6 // CELL_E6 + j) in cells[name]
            for i in (-1, 0, 1) for j in (-1, 0, 1)))
        if near * 2 < len(sample) or len(shapes[name].cum_m) < 2:
            return math.inf
        return fit_m(shapes[name], of)

    changed = 0
    for trip in trips:
        own = str(trip["shape_id"] or "")
        mine = stops_of.get(str(trip["trip_id"]), [])
        if own not in lines or len(mine) < 2 or fit(own, mine) <= FIT_M:
            continue
        best_m, best = min((fit(name, mine), name) for name in
                           siblings[own.split("@", 1)[0]])
        if best_m <= FIT_M and best != own:
            trip["shape_id"] = best
            changed += 1
    return changed


CELL_E6 = 3000  # ~330 m: a stop within FIT_M of a line is in or beside one of its cells


def _cells(points: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """The grid cells a line passes through (its long segments walked in steps)."""
    out: set[tuple[int, int]] = set()
    for (lat1, lon1), (lat2, lon2) in zip(points, points[1:] or points, strict=False):
        steps = max(1, int(max(abs(lat2 - lat1), abs(lon2 - lon1)) // (CELL_E6 // 2)))
        for k in range(steps + 1):
            out.add(((lat1 + (lat2 - lat1) * k // steps) // CELL_E6,
                     (lon1 + (lon2 - lon1) * k // steps) // CELL_E6))
    return out


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
    kept = Columns(("trip_id", "stop_id"), ("seq", "arrival_s", "departure_s"))
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
        arrival = _time(row.get("arrival_time", ""), "stop_times.txt", line, "arrival_time")
        departure = _time(row.get("departure_time", ""), "stop_times.txt", line,
                          "departure_time")
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
        kept.append(trip_id=own_trip, stop_id=own_stop, seq=seq,
                    arrival_s=NO_TIME if arrival is None else arrival,
                    departure_s=NO_TIME if departure is None else departure)
    return kept, skipped


def _calendar(feed: zipfile.ZipFile, limits: Limits) -> list[dict[str, object]]:
    """calendar.txt: each service's weekdays (Monday first) between two dates."""
    rows: list[dict[str, object]] = []
    if not has(feed, "calendar.txt"):
        return rows
    name = "calendar.txt"
    for line, row in _rows(feed, name, limits):
        mask = ""
        for day in WEEKDAYS:
            if row[day] not in ("0", "1"):
                raise GtfsError(f"{name}:{line}: {day} is not 0 or 1: {_shown(row[day])}")
            mask += row[day]
        start = _date(row["start_date"], name, line, "start_date")
        end = _date(row["end_date"], name, line, "end_date")
        if end < start:
            raise GtfsError(f"{name}:{line}: end_date {end} is before start_date {start}")
        rows.append({"service_id": _id(row["service_id"], name, line, "service_id"),
                     "weekdays": mask, "start_date": start, "end_date": end})
    return rows


def _service_dates(feed: zipfile.ZipFile, limits: Limits) -> list[dict[str, object]]:
    """calendar_dates.txt: a service added (1) or removed (2) on a date."""
    rows: list[dict[str, object]] = []
    if not has(feed, "calendar_dates.txt"):
        return rows
    name = "calendar_dates.txt"
    for line, row in _rows(feed, name, limits):
        kind = row["exception_type"]
        if kind not in ("1", "2"):
            raise GtfsError(f"{name}:{line}: exception_type is not 1 or 2: "
                            f"{_shown(kind)}")
        rows.append({"service_id": _id(row["service_id"], name, line, "service_id"),
                     "date": _date(row["date"], name, line, "date"),
                     "exception_type": int(kind)})
    return rows


def _frequencies(feed: zipfile.ZipFile, limits: Limits, trips: list[dict[str, object]]
                 ) -> tuple[list[dict[str, object]], int]:
    """frequencies.txt rows of the kept trips (a reused trip id's to each of its trips),
    and how many named no kept trip."""
    rows: list[dict[str, object]] = []
    if not has(feed, "frequencies.txt"):
        return rows, 0
    name = "frequencies.txt"
    stored: dict[str, list[str]] = {}
    for trip in trips:
        trip_id = str(trip["trip_id"])
        stored.setdefault(trip_id.split("@", 1)[0], []).append(trip_id)
    unknown = 0
    for line, row in _rows(feed, name, limits):
        trip_id = _id(row["trip_id"], name, line, "trip_id")
        start = _time(row["start_time"], name, line, "start_time", optional=False)
        end = _time(row["end_time"], name, line, "end_time", optional=False)
        headway = _int(row["headway_secs"], name, line, "headway_secs")
        exact = row.get("exact_times") or "0"
        if exact not in ("0", "1"):
            raise GtfsError(f"{name}:{line}: exact_times is not 0 or 1: {_shown(exact)}")
        assert start is not None and end is not None
        if end <= start:
            raise GtfsError(f"{name}:{line}: end_time is not after start_time")
        if headway <= 0:
            raise GtfsError(f"{name}:{line}: headway_secs is not positive")
        if trip_id not in stored:
            unknown += 1
            continue
        for own in stored[trip_id]:
            rows.append({"trip_id": own, "start_s": start, "end_s": end,
                         "headway_s": headway, "exact_times": int(exact)})
    return rows, unknown
