"""`transit gtfs import FEED.zip`: agencies, routes, stops, shapes and trips.

Real feeds are untidy: quoted fields, a byte-order mark, optional files missing, stop
times without times. The importer accepts all of that; what it cannot use (a missing
required file or column, a coordinate that is not a number) is a `GtfsError` naming the
file, line and field. A re-import replaces the previous feed in one transaction.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import Session

from ledger.adapters.bulk import bulk_insert
from tracking.adapters.models import Agency, Route, ShapePoint, Stop, Trip, TripStop

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
CHUNK = 5000


class GtfsError(ValueError):
    """A feed that cannot be imported; the message says where and why."""


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


def _rows(feed: zipfile.ZipFile, name: str, required: tuple[str, ...]
          ) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        raw = feed.read(_member(feed, name))
    except KeyError:
        raise GtfsError(f"{name}: missing from the feed") from None
    text = raw.decode("utf-8-sig", errors="strict") if raw else ""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in required if c not in header]
    if missing:
        raise GtfsError(f"{name}: missing column(s) {', '.join(missing)}")
    for line, row in enumerate(reader, start=2):
        yield line, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _member(feed: zipfile.ZipFile, name: str) -> str:
    """Files may sit in a folder inside the zip."""
    for member in feed.namelist():
        if member == name or member.endswith("/" + name):
            return member
    raise KeyError(name)


def _has(feed: zipfile.ZipFile, name: str) -> bool:
    try:
        _member(feed, name)
        return True
    except KeyError:
        return False


def _coord(value: str, name: str, line: int, field: str, limit: float) -> int:
    try:
        number = float(value)
    except ValueError:
        raise GtfsError(f"{name}:{line}: {field} is not a number: {value!r}") from None
    if not -limit <= number <= limit:
        raise GtfsError(f"{name}:{line}: {field} out of range: {value}")
    return int(round(number * 1e6))


def _int(value: str, name: str, line: int, field: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise GtfsError(f"{name}:{line}: {field} is not a number: {value!r}") from None


def _color(value: str) -> str:
    value = value.lstrip("#").upper()
    return value if len(value) == 6 and all(c in "0123456789ABCDEF" for c in value) else ""


def import_feed(session: Session, path: str | Path) -> ImportReport:
    """Replace the network with the feed at `path`; the caller commits."""
    try:
        feed = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise GtfsError(f"{path}: not a readable zip file ({exc})") from None
    with feed:
        try:
            return _import(session, feed)
        except UnicodeDecodeError as exc:
            raise GtfsError(f"feed is not UTF-8 text: {exc}") from None
        except csv.Error as exc:
            raise GtfsError(f"malformed CSV: {exc}") from None


def _import(session: Session, feed: zipfile.ZipFile) -> ImportReport:
    agencies = []
    for _line, row in _rows(feed, "agency.txt", REQUIRED["agency.txt"]):
        agency_id = row.get("agency_id") or "default"
        agencies.append({"agency_id": agency_id, "name": row["agency_name"],
                         "url": row.get("agency_url", ""),
                         "timezone": row.get("agency_timezone", "")})
    if not agencies:
        raise GtfsError("agency.txt: no agency")
    default_agency = agencies[0]["agency_id"]
    routes = []
    for line, row in _rows(feed, "routes.txt", REQUIRED["routes.txt"]):
        if not row["route_id"]:
            raise GtfsError(f"routes.txt:{line}: empty route_id")
        routes.append({"route_id": row["route_id"], "agency_id": row.get("agency_id") or
                       default_agency, "short_name": row.get("route_short_name", "")[:100],
                       "long_name": row.get("route_long_name", "")[:300],
                       "color": _color(row.get("route_color", "")),
                       "text_color": _color(row.get("route_text_color", ""))})
    stops = []
    for line, row in _rows(feed, "stops.txt", REQUIRED["stops.txt"]):
        if not row["stop_lat"] and not row["stop_lon"] and row.get("location_type") in (
                "3", "4"):
            continue  # generic nodes and boarding areas have no position
        stops.append({"stop_id": row["stop_id"], "name": row.get("stop_name", "")[:200],
                      "lat_e6": _coord(row["stop_lat"], "stops.txt", line, "stop_lat", 90),
                      "lon_e6": _coord(row["stop_lon"], "stops.txt", line, "stop_lon", 180)})
    warnings: list[str] = []
    shapes = []
    shape_block: dict[str, int] = {}  # shape_id -> blocks of points seen so far
    if _has(feed, "shapes.txt"):
        last: tuple[str, int] | None = None
        for line, row in _rows(feed, "shapes.txt", OPTIONAL["shapes.txt"]):
            shape_id = row["shape_id"]
            seq = _int(row["shape_pt_sequence"], "shapes.txt", line, "shape_pt_sequence")
            if last is None or last[0] != shape_id or seq <= last[1]:
                shape_block[shape_id] = shape_block.get(shape_id, 0) + 1
            last = (shape_id, seq)
            shapes.append({
                "shape_id": shape_id, "block": shape_block[shape_id], "seq": seq,
                "lat_e6": _coord(row["shape_pt_lat"], "shapes.txt", line, "shape_pt_lat", 90),
                "lon_e6": _coord(row["shape_pt_lon"], "shapes.txt", line, "shape_pt_lon", 180)})
    trips = []
    if _has(feed, "trips.txt"):
        for line, row in _rows(feed, "trips.txt", OPTIONAL["trips.txt"]):
            direction = row.get("direction_id", "")
            trips.append({"trip_id": row["trip_id"], "route_id": row["route_id"],
                          "service_id": row.get("service_id", ""),
                          "headsign": row.get("trip_headsign", "")[:200],
                          "direction_id": _int(direction, "trips.txt", line, "direction_id")
                          if direction else None,
                          "shape_id": row.get("shape_id") or None})
    trip_stops = []
    if _has(feed, "stop_times.txt"):
        trip_block: dict[str, int] = {}
        last = None
        for line, row in _rows(feed, "stop_times.txt", OPTIONAL["stop_times.txt"]):
            trip_id = row["trip_id"]
            seq = _int(row["stop_sequence"], "stop_times.txt", line, "stop_sequence")
            if last is None or last[0] != trip_id or seq <= last[1]:
                trip_block[trip_id] = trip_block.get(trip_id, 0) + 1
            last = (trip_id, seq)
            trip_stops.append({"trip_id": trip_id, "block": trip_block[trip_id],
                               "stop_id": row["stop_id"], "seq": seq})
    warnings += _split_reused_ids(trips, shapes, shape_block, trip_stops)
    warnings += _check_references(routes, agencies, trips, trip_stops, stops)
    for model in (TripStop, Trip, ShapePoint, Stop, Route, Agency):
        session.execute(delete(model))
    for model, rows in ((Agency, agencies), (Route, routes), (Stop, _unique(stops, "stop_id")),
                        (ShapePoint, _unique(shapes, "shape_id", "seq")),
                        (Trip, _unique(trips, "trip_id")),
                        (TripStop, _unique(trip_stops, "trip_id", "seq"))):
        for i in range(0, len(rows), CHUNK):
            bulk_insert(session, model.__table__, rows[i:i + CHUNK])
    return ImportReport(len(agencies), len(routes), len(stops), len(shapes),
                        len({s["shape_id"] for s in shapes}), len(trips), len(trip_stops),
                        tuple(warnings))


def _split_reused_ids(trips: list[dict[str, object]], shapes: list[dict[str, object]],
                      shape_blocks: dict[str, int], trip_stops: list[dict[str, object]]
                      ) -> list[str]:
    """Give each trip and shape its own id where a feed reuses one.

    Some real feeds (the Transjakarta one among them) reuse a trip_id such as "a-b"
    across routes, each time with its own block of stop_times and its own block of
    shape points under a shared shape_id. Taken literally, every route but one would
    lose its line and stops. The n-th trip carrying a reused id is matched with the
    n-th block of rows carrying it, in file order, and renamed `ID@n`.
    """
    warnings = []
    seen: dict[str, int] = {}
    for trip in trips:
        seen[str(trip["trip_id"])] = seen.get(str(trip["trip_id"]), 0) + 1
    reused_trips = {t for t, n in seen.items() if n > 1}
    nth: dict[str, int] = {}
    by_shape: dict[str, int] = {}
    for trip in trips:
        original = str(trip["trip_id"])
        if original in reused_trips:
            nth[original] = nth.get(original, 0) + 1
            trip["trip_id"] = f"{original}@{nth[original]}"
        shape = trip["shape_id"]
        if shape is not None and shape_blocks.get(str(shape), 1) > 1:
            by_shape[str(shape)] = by_shape.get(str(shape), 0) + 1
            trip["shape_id"] = f"{shape}@{by_shape[str(shape)]}"
    for point in shapes:
        block = point.pop("block")
        if shape_blocks.get(str(point["shape_id"]), 1) > 1:
            point["shape_id"] = f"{point['shape_id']}@{block}"
    for row in trip_stops:
        block = row.pop("block")
        if row["trip_id"] in reused_trips:
            row["trip_id"] = f"{row['trip_id']}@{block}"
    if reused_trips:
        warnings.append(f"trips.txt: {len(reused_trips)} trip id(s) used by several trips; "
                        "each numbered in file order (ID@n) with its own stops")
    split = [s for s, n in shape_blocks.items() if n > 1]
    if split:
        warnings.append(f"shapes.txt: {len(split)} shape id(s) holding several lines; each "
                        "line numbered in file order (ID@n)")
    return warnings


def _unique(rows: list[dict[str, object]], *key: str) -> list[dict[str, object]]:
    """Later duplicates of a key win, as most consumers of GTFS treat them."""
    out: dict[tuple[object, ...], dict[str, object]] = {}
    for row in rows:
        out[tuple(row[k] for k in key)] = row
    return list(out.values())


def _check_references(routes: list[dict[str, object]], agencies: list[dict[str, object]],
                      trips: list[dict[str, object]], trip_stops: list[dict[str, object]],
                      stops: list[dict[str, object]]) -> list[str]:
    """Mend dangling references the way riders would expect; say what was mended."""
    warnings = []
    agency_ids = {a["agency_id"] for a in agencies}
    for route in routes:
        if route["agency_id"] not in agency_ids:
            # Real feeds name agencies that agency.txt spells otherwise; keep the route and
            # its operator id (settlement reports by it) with a placeholder agency.
            agencies.append({"agency_id": route["agency_id"], "name": route["agency_id"],
                             "url": "", "timezone": ""})
            agency_ids.add(route["agency_id"])
            warnings.append(f"routes.txt: agency {route['agency_id']} is not in agency.txt; "
                            "added with its id as name")
    route_ids = {r["route_id"] for r in routes}
    kept = [t for t in trips if t["route_id"] in route_ids]
    if len(kept) != len(trips):
        warnings.append(f"trips.txt: {len(trips) - len(kept)} trip(s) of unknown routes skipped")
    trips[:] = kept
    stop_ids = {s["stop_id"] for s in stops}
    trip_ids = {t["trip_id"] for t in trips}
    kept_stops = [ts for ts in trip_stops if ts["stop_id"] in stop_ids
                  and ts["trip_id"] in trip_ids]
    if len(kept_stops) != len(trip_stops):
        warnings.append(f"stop_times.txt: {len(trip_stops) - len(kept_stops)} row(s) naming "
                        "unknown trips or stops skipped")
    trip_stops[:] = kept_stops
    return warnings
