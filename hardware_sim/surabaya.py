"""A small Surabaya network for the demo: three corridors of Suroboyo Bus and Trans
Semanggi Suroboyo, with stops and shapes along the real streets (placed by hand from
the city map, to within a street or so) and a timetable, written out as a GTFS feed; and
the plans the demo's buses drive it by (`--gps sim:PLAN.json`)."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from validator_agent.adapters.sim_gps import cumulative_m

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
    return _line(points, step_m)[0]


def _line(points: list[tuple[float, float]], step_m: float = 50.0
          ) -> tuple[list[tuple[float, float]], list[int]]:
    """The polyline, and the index in it of each of `points` (each is one of its points)."""
    out = [points[0]]
    at = [0]
    for a, b in zip(points, points[1:], strict=False):
        n = max(1, int(_metres(a, b) // step_m))
        for i in range(1, n + 1):
            out.append((a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n))
        at.append(len(out) - 1)
    return out, at


def _stop_id(name: str) -> str:
    return "SBY-" + "".join(ch for ch in name.upper() if ch.isalnum())[:24]


def shapes() -> dict[str, list[tuple[float, float]]]:
    """shape_id -> points, one shape per corridor and direction."""
    return {shape_id: list(run.points) for shape_id, run in runs().items()}


def _csv(rows: list[list[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


# -- the timetable ------------------------------------------------------------------------

PLAN_SPEED_MPS = 5.5  # 20 km/h between stops: a city bus in Surabaya's daytime traffic
DWELL_S = 20  # planned at each stop between the ends
HEADWAY_S = 600  # a departure every 10 minutes, each corridor and direction
# Round the clock, so that the demo shows buses on their trips whatever the hour it is
# started at (a real roster would stop at night).
DEPARTURES_S = tuple(range(0, 24 * 3600, HEADWAY_S))
SERVICE_ID = "daily"
TIMEZONE = "Asia/Jakarta"
LAYOVER_S = 300  # the least a roster leaves a bus at a terminal between two trips


@dataclass(frozen=True)
class Run:
    """One direction of a corridor as the timetable runs it: its stops in order, where
    they lie along its shape, and the arrival and departure at each, in seconds after
    the trip's start."""

    route_id: str
    direction: int
    headsign: str
    stop_ids: tuple[str, ...]
    points: tuple[tuple[float, float], ...]  # its shape, as the feed writes it
    stops_m: tuple[float, ...]
    arrive_s: tuple[int, ...]
    depart_s: tuple[int, ...]

    @property
    def shape_id(self) -> str:
        return f"{self.route_id}-{self.direction}"

    @property
    def duration_s(self) -> int:
        return self.arrive_s[-1]

    def trip_id(self, start_s: int) -> str:
        """The trip of this run leaving its first stop `start_s` after midnight."""
        return f"{self.shape_id}-{start_s // 3600:02d}{start_s % 3600 // 60:02d}"


def _planned(stops_m: list[float]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    arrive, depart = [0], [0]
    for i in range(1, len(stops_m)):
        arrive.append(depart[-1] + round((stops_m[i] - stops_m[i - 1]) / PLAN_SPEED_MPS))
        depart.append(arrive[-1] + (DWELL_S if i < len(stops_m) - 1 else 0))
    return tuple(arrive), tuple(depart)


def runs() -> dict[str, Run]:
    """shape_id -> the run of that corridor and direction."""
    out = {}
    for route_id, _agency, _short, long_name, _colour, points in CORRIDORS:
        line, at = _line([(lat, lon) for _name, lat, lon in points])
        line = [(round(lat, 6), round(lon, 6)) for lat, lon in line]
        named = [(i, name) for i, (name, _lat, _lon) in zip(at, points, strict=True) if name]
        ends = long_name.split(" - ")
        for direction in (0, 1):
            shape = line if direction == 0 else list(reversed(line))
            stops = named if direction == 0 else [(len(line) - 1 - i, n)
                                                   for i, n in reversed(named)]
            cum = cumulative_m(shape)
            stops_m = [cum[i] for i, _name in stops]
            arrive, depart = _planned(stops_m)
            run = Run(route_id, direction,
                      ends[1 - direction] if len(ends) == 2 else long_name,
                      tuple(_stop_id(n) for _i, n in stops), tuple(shape), tuple(stops_m),
                      arrive, depart)
            out[run.shape_id] = run
    return out


def gtfs_time(seconds: int) -> str:
    """HH:MM:SS of the service day, past 24:00:00 for a trip that runs past midnight."""
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def write_feed(path: Path) -> Path:
    """Write the network and its timetable as a GTFS zip at `path`."""
    stops: dict[str, tuple[str, float, float]] = {}
    for _route, _agency, _short, _long, _colour, points in CORRIDORS:
        for name, lat, lon in points:
            if name:
                stops.setdefault(_stop_id(name), (name, lat, lon))
    trips: list[list[object]] = [["route_id", "service_id", "trip_id", "trip_headsign",
                                  "direction_id", "shape_id"]]
    stop_times: list[list[object]] = [["trip_id", "arrival_time", "departure_time",
                                       "stop_id", "stop_sequence", "shape_dist_traveled"]]
    for run in runs().values():
        for start in DEPARTURES_S:
            trip_id = run.trip_id(start)
            trips.append([run.route_id, SERVICE_ID, trip_id, run.headsign, run.direction,
                          run.shape_id])
            for seq, (stop_id, arrive, depart, dist) in enumerate(zip(
                    run.stop_ids, run.arrive_s, run.depart_s, run.stops_m, strict=True),
                    start=1):
                stop_times.append([trip_id, gtfs_time(start + arrive),
                                   gtfs_time(start + depart), stop_id, seq, f"{dist:.1f}"])
    shape_rows: list[list[object]] = [["shape_id", "shape_pt_lat", "shape_pt_lon",
                                       "shape_pt_sequence", "shape_dist_traveled"]]
    for run in runs().values():
        cum = cumulative_m(run.points)
        shape_rows += [[run.shape_id, f"{lat:.6f}", f"{lon:.6f}", i, f"{d:.1f}"]
                       for i, ((lat, lon), d) in enumerate(zip(run.points, cum, strict=True),
                                                           start=1)]
    files = {
        "agency.txt": _csv([["agency_id", "agency_name", "agency_url", "agency_timezone"],
                            *[[a, n, u, TIMEZONE] for a, n, u in AGENCIES]]),
        "routes.txt": _csv([["route_id", "agency_id", "route_short_name", "route_long_name",
                             "route_color", "route_type"],
                            *[[r, a, s, n, c, 3] for r, a, s, n, c, _p in CORRIDORS]]),
        "stops.txt": _csv([["stop_id", "stop_name", "stop_lat", "stop_lon"],
                           *[[sid, n, f"{lat:.6f}", f"{lon:.6f}"]
                             for sid, (n, lat, lon) in sorted(stops.items())]]),
        "calendar.txt": _csv([["service_id", "monday", "tuesday", "wednesday", "thursday",
                               "friday", "saturday", "sunday", "start_date", "end_date"],
                              [SERVICE_ID, 1, 1, 1, 1, 1, 1, 1, "20250101", "20301231"]]),
        "trips.txt": _csv(trips),
        "stop_times.txt": _csv(stop_times),
        "shapes.txt": _csv(shape_rows),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


# -- the buses' plans ----------------------------------------------------------------------

@dataclass(frozen=True)
class Running:
    """How one bus runs its roster: late by `delay_s` at each departure, and
    `speed_factor` times the timetable's speed between stops."""

    delay_s: float = 0.0
    speed_factor: float = 1.0


def _day_zero_ms(day: datetime) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=day.tzinfo).timestamp() * 1000)


def roster(route_id: str, slot: int, from_ms: int, until_ms: int
           ) -> list[tuple[str, str, int]]:
    """The departures a bus of `route_id` takes between two instants, back and forth:
    (trip_id, shape_id of its run, scheduled start in epoch ms), in order.

    The roster's round trip is both trips and two layovers, rounded up to whole
    headways; the bus in `slot` leaves its first terminal `slot` headways after the one
    in slot 0, so that the buses of a corridor follow each other a headway apart.
    """
    zone = ZoneInfo(TIMEZONE)
    out_run, back_run = runs()[f"{route_id}-0"], runs()[f"{route_id}-1"]
    cycle_s = -(-(out_run.duration_s + back_run.duration_s + 2 * LAYOVER_S + HEADWAY_S)
                // HEADWAY_S) * HEADWAY_S
    slots = cycle_s // HEADWAY_S
    # The grid of departures: every HEADWAY_S from a local midnight (WIB keeps no summer
    # time, so the grid runs on unbroken from one day into the next).
    origin = _day_zero_ms(datetime.fromtimestamp(from_ms / 1000, zone)) - 86_400_000
    first = origin + (slot % slots) * HEADWAY_S * 1000
    legs: list[tuple[str, str, int]] = []
    k = max(0, (from_ms - cycle_s * 1000 - first) // (cycle_s * 1000))
    while True:
        out_ms = first + k * cycle_s * 1000
        if out_ms > until_ms:
            return legs
        came_ms = out_ms + (out_run.duration_s + LAYOVER_S) * 1000
        back_ms = origin + -(-(came_ms - origin) // (HEADWAY_S * 1000)) * HEADWAY_S * 1000
        for start_ms, run in ((out_ms, out_run), (back_ms, back_run)):
            if start_ms + run.duration_s * 1000 >= from_ms:
                local = datetime.fromtimestamp(start_ms / 1000, zone)
                since = int((start_ms - _day_zero_ms(local)) / 1000)
                legs.append((run.trip_id(since), run.shape_id, start_ms))
        k += 1


def bus_plan(route_id: str, slot: int, epoch_ms: int, until_ms: int,
             running: Running = Running()) -> dict[str, object]:
    """The plan (`--gps sim:PLAN.json`) of a bus of `route_id` in roster `slot`, from
    `epoch_ms` (the plan's clock is the wall clock there) until `until_ms`."""
    used = {f"{route_id}-0": runs()[f"{route_id}-0"], f"{route_id}-1": runs()[f"{route_id}-1"]}
    return {
        "epoch_ms": epoch_ms,
        "delay_s": running.delay_s,
        "speed_factor": running.speed_factor,
        "layover_s": 60,
        "runs": {key: {"shape": [list(p) for p in run.points],
                       "stops_m": [round(m, 1) for m in run.stops_m],
                       "arrive_s": list(run.arrive_s), "depart_s": list(run.depart_s)}
                 for key, run in used.items()},
        "legs": [{"trip_id": trip, "run": run, "start_ms": start}
                 for trip, run, start in roster(route_id, slot, epoch_ms, until_ms)],
    }


def write_shape_files(folder: Path) -> dict[str, Path]:
    """One JSON file of [lat, lon] points per shape, for simulated GPS receivers."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for shape_id, line in shapes().items():
        path = folder / f"{shape_id}.json"
        path.write_text(json.dumps([[round(lat, 6), round(lon, 6)] for lat, lon in line]))
        out[shape_id] = path
    return out
