"""A small Surabaya network for the demo: three corridors of Suroboyo Bus and Trans
Semanggi Suroboyo, with stops and shapes along the real streets (placed by hand from
the city map, to within a street or so), written out as a GTFS feed."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from pathlib import Path

AGENCIES = [("SBY", "Suroboyo Bus", "https://dishub.surabaya.go.id"),
            ("TSS", "Trans Semanggi Suroboyo", "https://dishub.surabaya.go.id")]

# route_id, agency, short name, long name, colour, [(stop name or None, lat, lon)].
# Points without a name shape the line between stops (bends of the street).
CORRIDORS = [
    ("R1", "SBY", "R1", "Terminal Purabaya - Rajawali", "E4002B", [
        ("Terminal Purabaya", -7.35090, 112.72430),
        (None, -7.34560, 112.72700),
        ("Bundaran Waru", -7.34340, 112.72860),
        ("Ahmad Yani - City of Tomorrow", -7.32820, 112.73070),
        (None, -7.31900, 112.73280),
        ("Ahmad Yani - Royal Plaza", -7.30860, 112.73480),
        ("Wonokromo - Darmo Trade Center", -7.30000, 112.73700),
        ("Raya Darmo - Taman Bungkul", -7.29120, 112.73930),
        ("Raya Darmo - RS Darmo", -7.28600, 112.73850),
        ("Urip Sumoharjo", -7.27600, 112.74050),
        ("Basuki Rahmat - Tunjungan Plaza", -7.26250, 112.74050),
        ("Tunjungan - Hotel Majapahit", -7.25800, 112.73900),
        ("Tugu Pahlawan", -7.24600, 112.73750),
        ("Rajawali", -7.23750, 112.73350),
    ]),
    ("R2", "SBY", "R2", "Terminal Intermoda Joyoboyo - ITS", "0057B8", [
        ("Terminal Intermoda Joyoboyo", -7.29850, 112.73470),
        (None, -7.29700, 112.73900),
        ("Raya Ngagel", -7.29300, 112.74500),
        ("Ngagel Jaya Selatan", -7.29150, 112.75600),
        (None, -7.28500, 112.75800),
        ("Kertajaya", -7.28000, 112.76000),
        ("MERR - Kertajaya Indah", -7.27950, 112.78000),
        ("Arief Rahman Hakim", -7.28800, 112.78800),
        ("Kampus ITS", -7.28200, 112.79500),
    ]),
    ("TS1", "TSS", "K1", "Unesa Lidah Wetan - Terminal Intermoda Joyoboyo", "00A651", [
        ("Unesa Lidah Wetan", -7.30000, 112.67450),
        ("Raya Menganti", -7.29750, 112.68800),
        (None, -7.29300, 112.69800),
        ("HR Muhammad", -7.28900, 112.70600),
        ("Mayjen Sungkono - Ciputra World", -7.29250, 112.71900),
        ("Adityawarman", -7.29500, 112.73000),
        ("Terminal Intermoda Joyoboyo", -7.29850, 112.73470),
    ]),
]


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat = math.radians((a[0] + b[0]) / 2)
    dy = (b[0] - a[0]) * 111_320
    dx = (b[1] - a[1]) * 111_320 * math.cos(lat)
    return math.hypot(dx, dy)


def shape_points(points: list[tuple[float, float]], step_m: float = 50.0
                 ) -> list[tuple[float, float]]:
    """The corridor's polyline with a point every `step_m` metres or so."""
    out = [points[0]]
    for a, b in zip(points, points[1:], strict=False):
        n = max(1, int(_metres(a, b) // step_m))
        for i in range(1, n + 1):
            out.append((a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n))
    return out


def _stop_id(name: str) -> str:
    return "SBY-" + "".join(ch for ch in name.upper() if ch.isalnum())[:24]


def shapes() -> dict[str, list[tuple[float, float]]]:
    """shape_id -> points, one shape per corridor and direction."""
    out = {}
    for route_id, _agency, _short, _long, _colour, points in CORRIDORS:
        line = shape_points([(lat, lon) for _name, lat, lon in points])
        out[f"{route_id}-0"] = line
        out[f"{route_id}-1"] = list(reversed(line))
    return out


def _csv(rows: list[list[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


def write_feed(path: Path) -> Path:
    """Write the network as a GTFS zip at `path`."""
    stops: dict[str, tuple[str, float, float]] = {}
    trips = [["route_id", "service_id", "trip_id", "trip_headsign", "direction_id", "shape_id"]]
    stop_times = [["trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"]]
    for route_id, _agency, _short, long_name, _colour, points in CORRIDORS:
        named = [(name, lat, lon) for name, lat, lon in points if name]
        for name, lat, lon in named:
            stops.setdefault(_stop_id(name), (name, lat, lon))
        ends = long_name.split(" - ")
        for direction, order in ((0, named), (1, list(reversed(named)))):
            trip_id = f"{route_id}-{direction}"
            trips.append([route_id, "daily", trip_id, ends[1 - direction] if len(ends) == 2
                          else long_name, direction, f"{route_id}-{direction}"])
            for seq, (name, _lat, _lon) in enumerate(order, start=1):
                stop_times.append([trip_id, "", "", _stop_id(name), seq])
    shape_rows: list[list[object]] = [["shape_id", "shape_pt_lat", "shape_pt_lon",
                                       "shape_pt_sequence"]]
    for shape_id, line in shapes().items():
        shape_rows += [[shape_id, f"{lat:.6f}", f"{lon:.6f}", i]
                       for i, (lat, lon) in enumerate(line, start=1)]
    files = {
        "agency.txt": _csv([["agency_id", "agency_name", "agency_url", "agency_timezone"],
                            *[[a, n, u, "Asia/Jakarta"] for a, n, u in AGENCIES]]),
        "routes.txt": _csv([["route_id", "agency_id", "route_short_name", "route_long_name",
                             "route_color", "route_type"],
                            *[[r, a, s, n, c, 3] for r, a, s, n, c, _p in CORRIDORS]]),
        "stops.txt": _csv([["stop_id", "stop_name", "stop_lat", "stop_lon"],
                           *[[sid, n, f"{lat:.6f}", f"{lon:.6f}"]
                             for sid, (n, lat, lon) in sorted(stops.items())]]),
        "calendar.txt": _csv([["service_id", "monday", "tuesday", "wednesday", "thursday",
                               "friday", "saturday", "sunday", "start_date", "end_date"],
                              ["daily", 1, 1, 1, 1, 1, 1, 1, "20250101", "20301231"]]),
        "trips.txt": _csv(trips),
        "stop_times.txt": _csv(stop_times),
        "shapes.txt": _csv(shape_rows),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def write_shape_files(folder: Path) -> dict[str, Path]:
    """One JSON file of [lat, lon] points per shape, for simulated GPS receivers."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for shape_id, line in shapes().items():
        path = folder / f"{shape_id}.json"
        path.write_text(json.dumps([[round(lat, 6), round(lon, 6)] for lat, lon in line]))
        out[shape_id] = path
    return out
