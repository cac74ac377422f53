"""The MobilityData GTFS-Realtime validator's rules that apply to this system's feeds
(VehiclePositions and Alerts), checked against the static GTFS feed they refer to.

The validator itself is a Java program; these are its rules as its rule list defines
them, each under the validator's own code and title, written again here so that the
tests can run them on every feed the gateway serves. A few rules of the GTFS-Realtime
specification that the validator has no number for are checked too, under codes of their
own (`S...`). Thresholds are the validator's: a header at most 65 s old (W008), a
timestamp at most 60 s in the future (E050), a speed up to 26 m/s (W004), the agency's
coverage area the bounding box of its shapes widened by 1,609 m (E028), a vehicle on a
trip within 200 m of the trip's shape (E029).

TripUpdates are checked for their trips (E003, E004, E024, E035), their stops (E011,
E015, and E045/E051 against the trip's own stop_times), their order (E002, E036, E037),
their times (E001, E022, E025, and the entity timestamp's E012/E050), the fields a
stop_time_update must carry (E040, E043, E044) and start_date (E021). A trip run by
frequencies.txt, in either feed, is checked for its schedule_relationship (E013) and
start_time (E019, and E020 for any start_time).

The static feed is read straight from its zip, not through the code under test.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from google.transit import gtfs_realtime_pb2 as rt

ERROR, WARNING = "ERROR", "WARNING"


@dataclass(frozen=True)
class Rule:
    code: str
    severity: str
    title: str


RULES = {r.code: r for r in (
    Rule("E001", ERROR, "Not in POSIX time"),
    Rule("E003", ERROR, "GTFS-rt trip_id does not exist in GTFS data and does not have "
                        "schedule_relationship of ADDED"),
    Rule("E004", ERROR, "GTFS-rt route_id does not exist in GTFS data"),
    Rule("E011", ERROR, "GTFS-rt stop_id does not exist in GTFS data"),
    Rule("E012", ERROR, "Header timestamp should be greater than or equal to all other "
                        "timestamps"),
    Rule("E013", ERROR, "Frequency type 0 trip schedule_relationship should be "
                        "UNSCHEDULED or empty"),
    Rule("E015", ERROR, "All stop_ids referenced in GTFS-rt TripUpdates and "
                        "VehiclePositions feeds must have the location_type = 0"),
    Rule("E016", ERROR, "trip_ids with schedule_relationship ADDED must not be in GTFS data"),
    Rule("E017", ERROR, "GTFS-rt content changed but has the same header timestamp"),
    Rule("E018", ERROR, "GTFS-rt header timestamp decreased between two sequential "
                        "iterations"),
    Rule("E019", ERROR, "GTFS-rt frequency type 1 trip start_time must be a multiple of "
                        "GTFS headway_secs later than GTFS start_time"),
    Rule("E020", ERROR, "Invalid start_time format"),
    Rule("E024", ERROR, "trip direction_id does not match GTFS data"),
    Rule("E026", ERROR, "Invalid vehicle position"),
    Rule("E027", ERROR, "Invalid vehicle bearing"),
    Rule("E028", ERROR, "Vehicle position outside agency coverage area"),
    Rule("E029", ERROR, "Vehicle position far from trip shape"),
    Rule("E032", ERROR, "Alert does not have an informed_entity"),
    Rule("E033", ERROR, "Alert informed_entity does not have any specifiers"),
    Rule("E034", ERROR, "GTFS-rt agency_id does not exist in GTFS data"),
    Rule("E035", ERROR, "GTFS-rt trip.trip_id does not belong to GTFS-rt trip.route_id in "
                        "GTFS trips.txt"),
    Rule("E038", ERROR, "Invalid header.gtfs_realtime_version"),
    Rule("E039", ERROR, "FULL_DATASET feeds should not include entity.is_deleted"),
    Rule("E048", ERROR, "header timestamp not populated"),
    Rule("E049", ERROR, "header incrementality not populated"),
    Rule("E050", ERROR, "timestamp is in the future"),
    Rule("E052", ERROR, "vehicle.id is not unique"),
    Rule("W001", WARNING, "timestamp not populated"),
    Rule("W002", WARNING, "vehicle_id not populated"),
    Rule("W004", WARNING, "vehicle speed is unrealistic"),
    Rule("W006", WARNING, "trip missing trip_id"),
    Rule("W008", WARNING, "Header timestamp is older than 65 seconds"),
    Rule("W009", WARNING, "schedule_relationship not populated"),
    # TripUpdates
    Rule("E002", ERROR, "stop_time_updates for a given trip_id must be strictly sorted by "
                        "stop_sequence"),
    Rule("E021", ERROR, "Invalid start_date format"),
    Rule("E022", ERROR, "Sequential stop_time_update times are not increasing"),
    Rule("E025", ERROR, "stop_time_update departure time is before arrival time"),
    Rule("E036", ERROR, "Sequential stop_time_updates have the same stop_sequence"),
    Rule("E037", ERROR, "Sequential stop_time_updates have the same stop_id"),
    Rule("E040", ERROR, "stop_time_update doesn't contain stop_id or stop_sequence"),
    Rule("E041", ERROR, "trip doesn't have any stop_time_updates"),
    Rule("E043", ERROR, "stop_time_update doesn't have arrival or departure"),
    Rule("E044", ERROR, "stop_time_update arrival/departure doesn't have delay or time"),
    Rule("E045", ERROR, "GTFS-rt stop_time_update stop_sequence and stop_id do not match "
                        "GTFS"),
    Rule("E051", ERROR, "GTFS-rt stop_sequence not found in GTFS data"),
    # The specification's own rules, which the validator numbers not.
    Rule("S001", ERROR, "entity.id is not unique in the feed"),
    Rule("S002", ERROR, "entity carries no trip_update, vehicle or alert"),
    Rule("S003", ERROR, "value unknown to the GTFS-Realtime specification (an enum value "
                        "out of range, or a field it does not define)"),
    Rule("S004", ERROR, "alert active_period does not start before it ends"),
    Rule("S005", ERROR, "alert header_text or description_text missing"),
    Rule("S006", ERROR, "TranslatedString with an empty text, a repeated language, or "
                        "several translations one of which names no language"),
)}

VERSIONS = ("1.0", "2.0")
MAX_AGE_S = 65  # W008
FUTURE_TOLERANCE_S = 60  # E050
MAX_SPEED_MPS = 26.0  # W004
REGION_BUFFER_M = 1609.0  # E028
TRIP_BUFFER_M = 200.0  # E029
# POSIX seconds of this century: a time in milliseconds is far above, one in minutes or
# a small counter far below.
POSIX_RANGE = (946_684_800, 4_102_444_800)  # 2000-01-01 .. 2100-01-01
EARTH_M = 6_371_008.8
# E020: HH:MM:SS, the hours past 24 for a trip after midnight of its service day.
START_TIME = re.compile(r"(\d{2,3}):([0-5]\d):([0-5]\d)")


@dataclass(frozen=True)
class Finding:
    code: str
    where: str

    @property
    def rule(self) -> Rule:
        return RULES[self.code]

    def __str__(self) -> str:
        return f"{self.code} {self.rule.title}: {self.where}"


@dataclass(frozen=True)
class Trip:
    route_id: str
    direction_id: int | None
    shape_id: str | None


Line = list[tuple[float, float]]


@dataclass(frozen=True)
class StaticFeed:
    """What the rules need of a GTFS feed.

    Real feeds reuse ids: the Transjakarta one gives one trip_id to trips of two routes,
    and one shape_id to two lines (its points numbered from 1 again). So a trip id names
    every trip that carries it, and a shape id every line, each in file order.
    """

    agency_ids: frozenset[str]
    route_ids: frozenset[str]
    trips: dict[str, tuple[Trip, ...]]
    stops: dict[str, int]  # stop_id -> location_type
    shapes: dict[str, tuple[Line, ...]] = field(default_factory=dict)
    # trip_id -> each trip's (stop_sequence, stop_id) in order, as `trips` (a reused id's
    # rows numbered from the start again are the next trip of that id)
    stop_times: dict[str, tuple[tuple[tuple[int, str], ...], ...]] = field(
        default_factory=dict)
    # trip_id -> its frequencies.txt windows: (start_s, end_s, headway_s, exact_times)
    frequencies: dict[str, tuple[tuple[int, int, int, bool], ...]] = field(
        default_factory=dict)

    @functools.cached_property
    def coverage(self) -> tuple[float, float, float, float]:
        """(south, west, north, east) of the shapes (of the stops without shapes),
        widened by the validator's region buffer."""
        points = [p for lines in self.shapes.values() for line in lines for p in line] or [
            (0.0, 0.0)]
        south, north = min(p[0] for p in points), max(p[0] for p in points)
        west, east = min(p[1] for p in points), max(p[1] for p in points)
        dlat = math.degrees(REGION_BUFFER_M / EARTH_M)
        dlon = dlat / max(0.01, math.cos(math.radians((south + north) / 2)))
        return south - dlat, west - dlon, north + dlat, east + dlon


def _rows(z: zipfile.ZipFile, name: str) -> Iterator[dict[str, str]]:
    if name not in z.namelist():
        return iter(())
    text = z.read(name).decode("utf-8-sig")
    return iter(csv.DictReader(io.StringIO(text, newline="")))


@functools.lru_cache(maxsize=4)
def static_feed(path: Path) -> StaticFeed:
    """The static feed of a GTFS zip."""
    with zipfile.ZipFile(path) as z:
        agencies = frozenset(r.get("agency_id") or "" for r in _rows(z, "agency.txt"))
        routes = frozenset(r["route_id"] for r in _rows(z, "routes.txt"))
        trips: dict[str, tuple[Trip, ...]] = {}
        for r in _rows(z, "trips.txt"):
            trips[r["trip_id"]] = trips.get(r["trip_id"], ()) + (Trip(
                r["route_id"], int(r["direction_id"]) if r.get("direction_id") else None,
                r.get("shape_id") or None),)
        stops = {r["stop_id"]: int(r.get("location_type") or 0) for r in _rows(z, "stops.txt")}
        lines: dict[str, list[list[tuple[int, float, float]]]] = {}
        for r in _rows(z, "shapes.txt"):
            point = (int(r["shape_pt_sequence"]), float(r["shape_pt_lat"]),
                     float(r["shape_pt_lon"]))
            blocks = lines.setdefault(r["shape_id"], [])
            if not blocks or point[0] <= blocks[-1][-1][0]:  # numbered from the start again
                blocks.append([])
            blocks[-1].append(point)
        timed: dict[str, list[list[tuple[int, str]]]] = {}
        for r in _rows(z, "stop_times.txt"):
            row = (int(r["stop_sequence"]), r["stop_id"])
            blocks_t = timed.setdefault(r["trip_id"], [])
            if not blocks_t or row[0] <= blocks_t[-1][-1][0]:
                blocks_t.append([])
            blocks_t[-1].append(row)
        windows: dict[str, tuple[tuple[int, int, int, bool], ...]] = {}
        for r in _rows(z, "frequencies.txt"):
            windows[r["trip_id"]] = windows.get(r["trip_id"], ()) + ((
                _seconds(r["start_time"]), _seconds(r["end_time"]), int(r["headway_secs"]),
                (r.get("exact_times") or "0").strip() == "1"),)
        if not lines:  # coverage from the stops, as the validator does without shapes
            lines[""] = [[(0, float(r["stop_lat"]), float(r["stop_lon"]))
                          for r in _rows(z, "stops.txt")]]
    shapes = {sid: tuple([(lat, lon) for _seq, lat, lon in block] for block in blocks)
              for sid, blocks in lines.items()}
    stop_times = {tid: tuple(tuple(sorted(b)) for b in blocks_t)
                  for tid, blocks_t in timed.items()}
    return StaticFeed(agencies, routes, trips, stops, shapes, stop_times, windows)


def _seconds(hms: str) -> int:
    """A GTFS time, H:MM:SS or HH:MM:SS, in seconds of its service day."""
    h, m, s = (int(x) for x in hms.strip().split(":"))
    return h * 3600 + m * 60 + s


def metres_to_shape(lat: float, lon: float, shape: Line) -> float:
    """The distance from a point to a polyline, on a plane tangent at the point (exact
    enough for the hundreds of metres the rules measure)."""
    kx = EARTH_M * math.cos(math.radians(lat)) * math.pi / 180
    ky = EARTH_M * math.pi / 180

    def xy(p: tuple[float, float]) -> tuple[float, float]:
        return (p[1] - lon) * kx, (p[0] - lat) * ky

    best = math.inf
    pts = [xy(p) for p in shape]
    for (ax, ay), (bx, by) in zip(pts, pts[1:] or pts, strict=False):
        dx, dy = bx - ax, by - ay
        length = dx * dx + dy * dy
        t = 0.0 if length == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / length))
        best = min(best, math.hypot(ax + t * dx, ay + t * dy))
    return best


def _posix(t: int) -> bool:
    return POSIX_RANGE[0] <= t < POSIX_RANGE[1]


def _unknown_fields(message: Message, where: str) -> Iterator[Finding]:
    if len(UnknownFieldSet(message)):
        yield Finding("S003", where)
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        items = value if descriptor.is_repeated else [value]
        for item in items:
            yield from _unknown_fields(item, f"{where}.{descriptor.name}")


class Checker:
    """The rules, applied to one feed message as it is served at `now_s`."""

    def __init__(self, static: StaticFeed, now_s: float,
                 detours: Iterable[rt.FeedMessage] = ()) -> None:
        self.static = static
        self.now_s = now_s
        self.findings: list[Finding] = []
        # Trips and routes on a DETOUR alert (of this feed or another, such as the
        # Alerts feed beside VehiclePositions) may be off their shapes (E029).
        self.detoured: set[tuple[str, str]] = set()
        for feed in detours:
            self._note_detours(feed)

    def _add(self, code: str, where: str) -> None:
        self.findings.append(Finding(code, where))

    def _note_detours(self, feed: rt.FeedMessage) -> None:
        for e in feed.entity:
            if e.HasField("alert") and e.alert.effect == rt.Alert.DETOUR:
                for s in e.alert.informed_entity:
                    if s.HasField("trip") and s.trip.trip_id:
                        self.detoured.add(("trip", s.trip.trip_id))
                    if s.route_id:
                        self.detoured.add(("route", s.route_id))
                    if s.HasField("trip") and s.trip.route_id:
                        self.detoured.add(("route", s.trip.route_id))

    def check(self, feed: rt.FeedMessage, previous: rt.FeedMessage | None = None
              ) -> list[Finding]:
        self._note_detours(feed)
        self._header(feed, previous)
        ids: set[str] = set()
        vehicle_ids: set[str] = set()
        for e in feed.entity:
            where = f"entity {e.id!r}"
            if e.id in ids:
                self._add("S001", where)
            ids.add(e.id)
            if (feed.header.incrementality == rt.FeedHeader.FULL_DATASET
                    and e.HasField("is_deleted")):
                self._add("E039", where)
            kinds = [k for k in ("trip_update", "vehicle", "alert") if e.HasField(k)]
            if not kinds:
                self._add("S002", where)
            if e.HasField("vehicle"):
                self._vehicle(e.vehicle, where, feed.header.timestamp, vehicle_ids)
            if e.HasField("alert"):
                self._alert(e.alert, where)
            if e.HasField("trip_update"):
                self._trip_update(e.trip_update, where, feed.header.timestamp)
        self.findings.extend(_unknown_fields(feed, "feed"))
        return self.findings

    def _header(self, feed: rt.FeedMessage, previous: rt.FeedMessage | None) -> None:
        h = feed.header
        if h.gtfs_realtime_version not in VERSIONS:
            self._add("E038", f"header.gtfs_realtime_version {h.gtfs_realtime_version!r}")
        if not h.HasField("incrementality"):
            self._add("E049", "header")
        if not h.HasField("timestamp") or h.timestamp == 0:
            self._add("E048", "header")
            return
        self._timestamp(h.timestamp, "header.timestamp")
        if _posix(h.timestamp) and self.now_s - h.timestamp > MAX_AGE_S:
            self._add("W008", f"header.timestamp is {self.now_s - h.timestamp:.0f} s old")
        if previous is not None and previous.header.timestamp:
            if h.timestamp < previous.header.timestamp:
                self._add("E018", f"header.timestamp {h.timestamp} after "
                                  f"{previous.header.timestamp}")
            elif (h.timestamp == previous.header.timestamp
                  and list(feed.entity) != list(previous.entity)):
                self._add("E017", f"header.timestamp {h.timestamp}")

    def _timestamp(self, t: int, where: str, header: int | None = None,
                   measured: bool = True) -> None:
        """E001 for any time; E050 and E012 for the time something was `measured` (not
        an alert's period, which is meant to reach into the future)."""
        if not _posix(t):
            self._add("E001", f"{where} {t}")
            return
        if not measured:
            return
        if t > self.now_s + FUTURE_TOLERANCE_S:
            self._add("E050", f"{where} {t} is {t - self.now_s:.0f} s ahead")
        if header is not None and t > header:
            self._add("E012", f"{where} {t} after the header's {header}")

    def _vehicle(self, v: rt.VehiclePosition, where: str, header_ts: int,
                 vehicle_ids: set[str]) -> None:
        if not v.vehicle.id:
            self._add("W002", where)
        elif v.vehicle.id in vehicle_ids:
            self._add("E052", f"{where} has vehicle.id {v.vehicle.id!r}")
        vehicle_ids.add(v.vehicle.id)
        if not v.HasField("timestamp"):
            self._add("W001", where)
        else:
            self._timestamp(v.timestamp, f"{where} timestamp", header_ts)
        trip = v.trip if v.HasField("trip") else None
        if trip is not None:
            self._trip(trip, where)
        if v.HasField("stop_id"):
            self._stop(v.stop_id, where, vehicle=True)
        if v.HasField("position"):
            self._position(v.position, where, trip)

    def _trip_of(self, trip: rt.TripDescriptor) -> Trip | None:
        """The static trip a descriptor names: of its route, where the id is reused."""
        known = self.static.trips.get(trip.trip_id, ()) if trip.trip_id else ()
        return next((t for t in known if t.route_id == trip.route_id),
                    known[0] if known else None)

    def _trip(self, trip: rt.TripDescriptor, where: str) -> None:
        added = (trip.schedule_relationship == rt.TripDescriptor.ADDED
                 and trip.HasField("schedule_relationship"))
        known = self._trip_of(trip)
        if not trip.trip_id:
            self._add("W006", where)
        elif known is None and not added:
            self._add("E003", f"{where} trip_id {trip.trip_id!r}")
        elif known is not None and added:
            self._add("E016", f"{where} trip_id {trip.trip_id!r}")
        if trip.route_id and trip.route_id not in self.static.route_ids:
            self._add("E004", f"{where} route_id {trip.route_id!r}")
        if known is not None and trip.route_id and known.route_id != trip.route_id:
            self._add("E035", f"{where} trip_id {trip.trip_id!r} is of route "
                              f"{known.route_id!r}, not {trip.route_id!r}")
        if (known is not None and trip.HasField("direction_id")
                and known.direction_id is not None
                and known.direction_id != trip.direction_id):
            self._add("E024", f"{where} trip_id {trip.trip_id!r}")
        if not trip.HasField("schedule_relationship"):
            self._add("W009", f"{where} trip")
        self._frequency(trip, where)

    def _frequency(self, trip: rt.TripDescriptor, where: str) -> None:
        """E020 for any start_time; E013 and E019 for a trip of frequencies.txt."""
        start_s: int | None = None
        if trip.HasField("start_time"):
            match = START_TIME.fullmatch(trip.start_time)
            if match is None:
                self._add("E020", f"{where} start_time {trip.start_time!r}")
            else:
                h, m, s = (int(x) for x in match.groups())
                start_s = h * 3600 + m * 60 + s
        windows = self.static.frequencies.get(trip.trip_id, ()) if trip.trip_id else ()
        if not windows:
            return
        if (not any(w[3] for w in windows) and trip.HasField("schedule_relationship")
                and trip.schedule_relationship != rt.TripDescriptor.UNSCHEDULED):
            self._add("E013", f"{where} trip_id {trip.trip_id!r} has schedule_relationship "
                              f"{trip.schedule_relationship}")
        exact = [w for w in windows if w[3]]
        if exact and start_s is not None and not any(
                start <= start_s < end and (start_s - start) % headway == 0
                for start, end, headway, _ in exact):
            self._add("E019", f"{where} trip_id {trip.trip_id!r} start_time "
                              f"{trip.start_time!r} is on none of its headways")

    def _stops_of(self, trip: rt.TripDescriptor) -> tuple[tuple[int, str], ...] | None:
        """The static stop_times of the trip a descriptor names (of its route)."""
        known = self.static.trips.get(trip.trip_id, ()) if trip.trip_id else ()
        blocks = self.static.stop_times.get(trip.trip_id, ())
        nth = next((n for n, t in enumerate(known) if t.route_id == trip.route_id), 0)
        return blocks[nth] if nth < len(blocks) else None

    def _trip_update(self, tu: rt.TripUpdate, where: str, header_ts: int) -> None:
        self._trip(tu.trip, where)
        if tu.trip.HasField("start_date") and not (
                len(tu.trip.start_date) == 8 and tu.trip.start_date.isdigit()
                and 1 <= int(tu.trip.start_date[4:6]) <= 12
                and 1 <= int(tu.trip.start_date[6:]) <= 31):
            self._add("E021", f"{where} start_date {tu.trip.start_date!r}")
        if not tu.vehicle.id:
            self._add("W002", where)
        if not tu.HasField("timestamp"):
            self._add("W001", where)
        else:
            self._timestamp(tu.timestamp, f"{where} timestamp", header_ts)
        canceled = tu.trip.schedule_relationship == rt.TripDescriptor.CANCELED
        if not tu.stop_time_update and not canceled:
            self._add("E041", where)
        static_stops = self._stops_of(tu.trip)
        by_seq = dict(static_stops) if static_stops is not None else None
        prev: rt.TripUpdate.StopTimeUpdate | None = None
        prev_time: int | None = None
        skip = (rt.TripUpdate.StopTimeUpdate.SKIPPED, rt.TripUpdate.StopTimeUpdate.NO_DATA)
        for k, u in enumerate(tu.stop_time_update):
            at = f"{where} stop_time_update[{k}]"
            has_seq, has_stop = u.HasField("stop_sequence"), u.HasField("stop_id")
            if not has_seq and not has_stop:
                self._add("E040", at)
            if has_stop:
                self._stop(u.stop_id, at, vehicle=True)
            if has_seq and by_seq is not None:
                if u.stop_sequence not in by_seq:
                    self._add("E051", f"{at} stop_sequence {u.stop_sequence}")
                elif has_stop and by_seq[u.stop_sequence] != u.stop_id:
                    self._add("E045", f"{at} stop_sequence {u.stop_sequence} is "
                                      f"{by_seq[u.stop_sequence]!r}, not {u.stop_id!r}")
            if prev is not None:
                if has_seq and prev.HasField("stop_sequence"):
                    if u.stop_sequence < prev.stop_sequence:
                        self._add("E002", f"{at} stop_sequence {u.stop_sequence} after "
                                          f"{prev.stop_sequence}")
                    elif u.stop_sequence == prev.stop_sequence:
                        self._add("E036", f"{at} stop_sequence {u.stop_sequence}")
                elif has_stop and u.stop_id == prev.stop_id:
                    self._add("E037", f"{at} stop_id {u.stop_id!r}")
            events = [(name, getattr(u, name)) for name in ("arrival", "departure")
                      if u.HasField(name)]
            if not events and u.schedule_relationship not in skip:
                self._add("E043", at)
            times: list[int] = []
            for name, event in events:
                if not event.HasField("time") and not event.HasField("delay"):
                    self._add("E044", f"{at} {name}")
                if event.HasField("time"):
                    self._timestamp(event.time, f"{at} {name}.time", measured=False)
                    times.append(event.time)
            if (u.HasField("arrival") and u.HasField("departure") and u.arrival.HasField(
                    "time") and u.departure.HasField("time")
                    and u.departure.time < u.arrival.time):
                self._add("E025", at)
            if times:
                if prev_time is not None and min(times) <= prev_time:
                    self._add("E022", f"{at} time {min(times)} not after {prev_time}")
                prev_time = max(times)
            prev = u

    def _stop(self, stop_id: str, where: str, vehicle: bool) -> None:
        if stop_id not in self.static.stops:
            self._add("E011", f"{where} stop_id {stop_id!r}")
        elif vehicle and self.static.stops[stop_id] != 0:
            self._add("E015", f"{where} stop_id {stop_id!r}")

    def _position(self, p: rt.Position, where: str, trip: rt.TripDescriptor | None) -> None:
        if not -90 <= p.latitude <= 90 or not -180 <= p.longitude <= 180:
            self._add("E026", f"{where} at ({p.latitude}, {p.longitude})")
        else:
            south, west, north, east = self.static.coverage
            if not (south <= p.latitude <= north and west <= p.longitude <= east):
                self._add("E028", f"{where} at ({p.latitude:.6f}, {p.longitude:.6f})")
            else:
                self._on_shape(p, where, trip)
        if p.HasField("bearing") and not 0 <= p.bearing <= 360:
            self._add("E027", f"{where} bearing {p.bearing}")
        if p.HasField("speed") and not 0 <= p.speed <= MAX_SPEED_MPS:
            self._add("W004", f"{where} speed {p.speed} m/s")

    def _on_shape(self, p: rt.Position, where: str, trip: rt.TripDescriptor | None) -> None:
        known = self._trip_of(trip) if trip is not None else None
        if trip is None or known is None or known.shape_id not in self.static.shapes:
            return
        if {("trip", trip.trip_id), ("route", trip.route_id or known.route_id)} & self.detoured:
            return
        off = min(metres_to_shape(p.latitude, p.longitude, line)
                  for line in self.static.shapes[known.shape_id or ""])
        if off > TRIP_BUFFER_M:
            self._add("E029", f"{where} trip_id {trip.trip_id!r} is {off:.0f} m from its "
                              "shape")

    def _alert(self, a: rt.Alert, where: str) -> None:
        if not a.informed_entity:
            self._add("E032", where)
        for s in a.informed_entity:
            if not (s.agency_id or s.route_id or s.HasField("route_type") or s.HasField("trip")
                    or s.stop_id):
                self._add("E033", where)
            if s.agency_id and s.agency_id not in self.static.agency_ids:
                self._add("E034", f"{where} agency_id {s.agency_id!r}")
            if s.route_id and s.route_id not in self.static.route_ids:
                self._add("E004", f"{where} informed route_id {s.route_id!r}")
            if s.stop_id:
                self._stop(s.stop_id, where, vehicle=False)
        for period in a.active_period:
            for name in ("start", "end"):
                if period.HasField(name):
                    self._timestamp(getattr(period, name), f"{where} active_period.{name}",
                                    measured=False)
            if period.HasField("start") and period.HasField("end") and period.start >= period.end:
                self._add("S004", f"{where} {period.start}..{period.end}")
        for name in ("header_text", "description_text"):
            if not a.HasField(name) or not getattr(a, name).translation:
                self._add("S005", f"{where} {name}")
            else:
                self._translated(getattr(a, name), f"{where} {name}")

    def _translated(self, s: rt.TranslatedString, where: str) -> None:
        languages = [t.language for t in s.translation]
        if (any(not t.text for t in s.translation) or len(set(languages)) != len(languages)
                or (len(languages) > 1 and not all(languages))):
            self._add("S006", f"{where} languages {languages}")


def check(feed: rt.FeedMessage, static: StaticFeed, now_s: float, *,
          previous: rt.FeedMessage | None = None,
          detours: Iterable[rt.FeedMessage] = ()) -> list[Finding]:
    """Every finding of the rules on `feed`, served at `now_s` (POSIX seconds)."""
    return Checker(static, now_s, detours).check(feed, previous)


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that are errors (the rest are warnings)."""
    return [f for f in findings if f.rule.severity == ERROR]
