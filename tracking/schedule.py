"""The schedule as the predictions read it: each route's patterns (its stops in order
along a shape), the trips that run them and when, and which services run on a date.

Pure data, built once from the imported feed (`tracking.schedule_load`) and shared by
trip assignment, predictions, occupancy and headways. A *pattern* is one way a route
runs: trips with the same stops in the same order on the same shape share it, so a
feed of 500 trips that are really 2 patterns a route is read as 2 patterns a route.
Distances are metres along the pattern's shape; times of day are GTFS seconds after
the service day's "noon minus 12 h" (local), which is midnight but on the days the
clocks change.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Jakarta"  # WIB: Surabaya's and Jakarta's

# Where a trip has no times, its service date changes at the contract's default
# service_day_start, 03:00 local (contract section 1), not at midnight.
UNTIMED_DAY_START_S = 3 * 3600


def _metres(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> float:
    lat = math.radians((lat1_e6 + lat2_e6) / 2e6)
    dy = (lat2_e6 - lat1_e6) * 0.1113195
    dx = (lon2_e6 - lon1_e6) * 0.1113195 * math.cos(lat)
    return math.hypot(dx, dy)


@dataclass(frozen=True)
class Located:
    """Where a point lies on a shape: metres along it, metres off it."""

    dist_m: float
    offset_m: float


K_E6 = 0.1113195  # metres a micro-degree of latitude (and of longitude at the equator)


@dataclass(frozen=True)
class Shape:
    """A polyline with the distance travelled at each of its points."""

    lat_e6: tuple[int, ...]
    lon_e6: tuple[int, ...]
    cum_m: tuple[float, ...]
    # Made once for `locate`, which trip assignment asks several times a position (its
    # self time was 14 % of a loaded gateway's samples): the points in metres of latitude
    # and of longitude at the equator, each segment's extent in them, and its length
    # bound (no shorter than its length at any latitude).
    _ys: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _xs: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _dys: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _dxs: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _reach: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ys = tuple(v * K_E6 for v in self.lat_e6)
        xs = tuple(v * K_E6 for v in self.lon_e6)
        dys = tuple(b - a for a, b in zip(ys, ys[1:], strict=False))
        dxs = tuple(b - a for a, b in zip(xs, xs[1:], strict=False))
        object.__setattr__(self, "_ys", ys)
        object.__setattr__(self, "_xs", xs)
        object.__setattr__(self, "_dys", dys)
        object.__setattr__(self, "_dxs", dxs)
        object.__setattr__(self, "_reach", tuple(
            math.hypot(dx, dy) for dx, dy in zip(dxs, dys, strict=True)))

    @classmethod
    def of(cls, points: Sequence[tuple[int, int]]) -> Shape:
        """The shape through `points` ((lat_e6, lon_e6) in order), repeats dropped."""
        lats: list[int] = []
        lons: list[int] = []
        cum: list[float] = []
        for lat, lon in points:
            if lats and lats[-1] == lat and lons[-1] == lon:
                continue
            cum.append(cum[-1] + _metres(lats[-1], lons[-1], lat, lon) if lats else 0.0)
            lats.append(lat)
            lons.append(lon)
        return cls(tuple(lats), tuple(lons), tuple(cum))

    @property
    def length_m(self) -> float:
        return self.cum_m[-1] if self.cum_m else 0.0

    def locate(self, lat_e6: int, lon_e6: int, near_m: float | None = None,
               window_m: float = 2000.0) -> Located:
        """The nearest point of the shape to (lat, lon).

        With `near_m` (where the vehicle was last), only the part of the shape within
        `window_m` of it is searched: a route that passes the same street twice (a
        loop, a terminal's turn) is then not read as its other pass.
        """
        n = len(self.cum_m)
        if n == 1:
            return Located(0.0, _metres(self.lat_e6[0], self.lon_e6[0], lat_e6, lon_e6))
        lo, hi = 0, n - 1
        if near_m is not None:
            lo = max(0, bisect.bisect_left(self.cum_m, near_m - window_m) - 1)
            hi = min(n - 1, bisect.bisect_right(self.cum_m, near_m + window_m))
            if hi <= lo:
                lo, hi = max(0, hi - 1), max(1, hi)
        # Flat metres around the point: good to a fraction of a per cent in a city.
        cos = math.cos(math.radians(lat_e6 / 1e6))
        px, py = lon_e6 * K_E6, lat_e6 * K_E6
        xs, ys, dxs, dys, reach = self._xs, self._ys, self._dxs, self._dys, self._reach
        best_i, best_t, best2 = -1, 0.0, math.inf
        for i in range(lo, hi):
            ax = (xs[i] - px) * cos
            ay = ys[i] - py
            a2 = ax * ax + ay * ay
            if best_i >= 0:
                # A segment whose start lies further than the best offset plus its own
                # length cannot come nearer: most of a window is passed over here.
                bound = best2 ** 0.5 + reach[i]
                if a2 > bound * bound:
                    continue
            dx, dy = dxs[i] * cos, dys[i]
            seg2 = dx * dx + dy * dy
            t = 0.0 if seg2 == 0 else -(ax * dx + ay * dy) / seg2
            t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
            ox, oy = ax + t * dx, ay + t * dy
            off2 = ox * ox + oy * oy
            if off2 < best2:
                best_i, best_t, best2 = i, t, off2
        if best_i < 0:
            return Located(0.0, math.inf)
        cum = self.cum_m
        return Located(cum[best_i] + best_t * (cum[best_i + 1] - cum[best_i]),
                       math.sqrt(best2))

    def point_at(self, dist_m: float) -> tuple[int, int]:
        """The (lat_e6, lon_e6) at `dist_m` along the shape (clamped to its ends)."""
        if dist_m <= 0 or len(self.cum_m) == 1:
            return self.lat_e6[0], self.lon_e6[0]
        if dist_m >= self.length_m:
            return self.lat_e6[-1], self.lon_e6[-1]
        i = bisect.bisect_right(self.cum_m, dist_m) - 1
        span = self.cum_m[i + 1] - self.cum_m[i]
        f = (dist_m - self.cum_m[i]) / span if span else 0.0
        return (int(round(self.lat_e6[i] + f * (self.lat_e6[i + 1] - self.lat_e6[i]))),
                int(round(self.lon_e6[i] + f * (self.lon_e6[i + 1] - self.lon_e6[i]))))


@dataclass(frozen=True)
class PatternStop:
    """A stop of a pattern: its `stop_sequence` in the feed and where it lies on the
    shape."""

    seq: int
    stop_id: str
    name: str
    lat_e6: int
    lon_e6: int
    dist_m: float


@dataclass(frozen=True)
class Pattern:
    """One way a route runs: its stops in order along a shape.

    `pattern_id` is the id of the first trip (in id order) that runs it, so that the
    same feed imported again names its patterns the same (the learned segment times
    are kept by pattern).
    """

    pattern_id: str
    route_id: str
    direction_id: int | None
    headsign: str
    shape: Shape
    stops: tuple[PatternStop, ...]
    # The stops' metres along the shape, made once: `stop_index_after` is asked per leg
    # of every prediction (the list rebuilt on each call was 8 % of a TripUpdates build).
    stops_m: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stops_m", tuple(s.dist_m for s in self.stops))

    @property
    def length_m(self) -> float:
        return self.shape.length_m

    def stop_index_after(self, dist_m: float) -> int:
        """The index of the first stop lying beyond `dist_m` (len(stops) if none)."""
        return bisect.bisect_right(self.stops_m, dist_m)


@dataclass(frozen=True)
class Frequency:
    """A trip run every `headway_s` from `start_s` to `end_s` (frequencies.txt)."""

    start_s: int
    end_s: int
    headway_s: int
    exact_times: bool = False


@dataclass(frozen=True)
class ScheduledTrip:
    """A trip of the schedule. `times` holds the arrival at each of its pattern's stops
    in seconds of the service day, or None where the feed gives none; a trip whose
    first and last times are None is a pattern only (no timetable)."""

    trip_id: str  # as stored (a reused feed id is kept as `ID@n`, tracking.gtfs)
    route_id: str
    pattern_id: str
    service_id: str
    direction_id: int | None
    times: tuple[int | None, ...]
    frequencies: tuple[Frequency, ...] = ()
    # The trip's own stop_sequence at each of its pattern's stops: trips calling at the
    # same stops share one pattern (and its learned segment times) however the feed
    # numbers them, so a TripUpdate must carry the trip's numbers, not the pattern's
    # (E045/E051). Empty: the pattern's.
    seqs: tuple[int, ...] = ()

    @property
    def feed_trip_id(self) -> str:
        """The id the static feed's consumers know it by."""
        return self.trip_id.split("@", 1)[0]

    @property
    def timed(self) -> bool:
        return bool(self.times) and self.times[0] is not None and \
            self.times[-1] is not None

    def stop_sequence(self, pattern: Pattern, index: int) -> int:
        """The feed's stop_sequence of this trip at its pattern's stop `index`."""
        if len(self.seqs) == len(pattern.stops):
            return self.seqs[index]
        return pattern.stops[index].seq


@dataclass(frozen=True)
class ServiceCalendar:
    """Which services run on a date: calendar.txt weekdays within their dates, then
    calendar_dates.txt additions (1) and removals (2). A feed with neither file runs
    every service every day."""

    weekdays: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    exceptions: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def runs(self, service_id: str, day: date) -> bool:
        ymd = day.strftime("%Y%m%d")
        exception = self.exceptions.get((service_id, ymd))
        if exception is not None:
            return exception == 1
        rule = self.weekdays.get(service_id)
        if rule is None:
            # Not in calendar.txt: runs only on its added dates, unless the feed has no
            # calendar at all (a pattern feed), when everything runs.
            return not self.weekdays and not self.exceptions
        mask, start, end = rule
        return start <= ymd <= end and mask[day.weekday()] == "1"


@dataclass(frozen=True)
class Schedule:
    """The whole network's patterns and trips, and its calendar and time zone."""

    patterns: Mapping[str, Pattern]
    trips: Mapping[str, ScheduledTrip]
    calendar: ServiceCalendar
    timezone: str = DEFAULT_TIMEZONE
    # route -> its pattern ids; pattern -> its trip ids (both in id order)
    route_patterns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pattern_trips: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(DEFAULT_TIMEZONE)

    def patterns_of(self, route_id: str) -> list[Pattern]:
        return [self.patterns[p] for p in self.route_patterns.get(route_id, ())]

    def trips_of(self, pattern_id: str) -> list[ScheduledTrip]:
        return [self.trips[t] for t in self.pattern_trips.get(pattern_id, ())]

    def day_start_ms(self, day: date) -> int:
        """The instant of a service day's "noon minus 12 h", the zero of its times."""
        noon = datetime(day.year, day.month, day.day, 12, tzinfo=self.zone)
        return int((noon - timedelta(hours=12)).timestamp() * 1000)

    def service_date(self, now_ms: int) -> date:
        """The service day `now_ms` falls in when no timetable says: the local date,
        but before `UNTIMED_DAY_START_S` the day before (a bus running at 01:00 runs the
        evening's service, as a tap at 01:30 belongs to the previous day)."""
        return (datetime.fromtimestamp(now_ms / 1000, self.zone)
                - timedelta(seconds=UNTIMED_DAY_START_S)).date()

    def service_days(self, now_ms: int) -> list[date]:
        """The service days a trip running at `now_ms` may belong to: today and, for a
        trip past midnight (times beyond 24:00:00), yesterday."""
        today = datetime.fromtimestamp(now_ms / 1000, self.zone).date()
        return [today, today - timedelta(days=1)]

    def local_hour(self, ms: int) -> int:
        """The hour of the local day at `ms` (0-23): what segment times are kept by."""
        return datetime.fromtimestamp(ms / 1000, self.zone).hour


# -- building it -------------------------------------------------------------------------

@dataclass(frozen=True)
class TripRow:
    trip_id: str
    route_id: str
    service_id: str
    direction_id: int | None
    headsign: str
    shape_id: str | None


@dataclass(frozen=True)
class StopRow:
    stop_id: str
    name: str
    lat_e6: int
    lon_e6: int


def build_schedule(trips: Sequence[TripRow], stops: Mapping[str, StopRow],
                   shapes: Mapping[str, Sequence[tuple[int, int]]],
                   stop_times: Mapping[str, Sequence[tuple[int, str, int | None]]],
                   calendar: ServiceCalendar | None = None,
                   frequencies: Mapping[str, Sequence[Frequency]] | None = None,
                   timezone: str = DEFAULT_TIMEZONE) -> Schedule:
    """The schedule of a feed's rows.

    `shapes` are each shape's points in order; `stop_times` each trip's (seq, stop_id,
    arrival_s or None) in seq order. A trip with fewer than two stops is left out (no
    stop is ahead of anything on it); a trip without a shape runs along the straight
    lines between its stops. Stops are placed on the shape in order: each at its
    nearest point beyond the one before, so a loop's two passes of a street keep their
    order.
    """
    frequencies = frequencies or {}
    keyed: dict[tuple[str, tuple[str, ...], str | None], str] = {}
    patterns: dict[str, Pattern] = {}
    sched_trips: dict[str, ScheduledTrip] = {}
    shape_cache: dict[str, Shape] = {}
    for trip in sorted(trips, key=lambda t: t.trip_id):
        rows = [r for r in stop_times.get(trip.trip_id, ()) if r[1] in stops]
        if len(rows) < 2:
            continue
        key = (trip.route_id, tuple(r[1] for r in rows), trip.shape_id)
        pattern_id = keyed.get(key)
        if pattern_id is None:
            pattern_id = keyed[key] = trip.trip_id
            shape = _fitting_shape(trip.shape_id, [stops[r[1]] for r in rows], shapes,
                                   shape_cache)
            placed: list[PatternStop] = []
            at = 0.0
            for seq, stop_id, _ in rows:
                stop = stops[stop_id]
                where = shape.locate(stop.lat_e6, stop.lon_e6, near_m=at,
                                     window_m=max(3000.0, shape.length_m / 4))
                at = max(at, where.dist_m)
                placed.append(PatternStop(seq, stop_id, stop.name, stop.lat_e6,
                                          stop.lon_e6, at))
            patterns[pattern_id] = Pattern(pattern_id, trip.route_id, trip.direction_id,
                                           trip.headsign, shape, tuple(placed))
        sched_trips[trip.trip_id] = ScheduledTrip(
            trip.trip_id, trip.route_id, pattern_id, trip.service_id, trip.direction_id,
            tuple(_interpolated([r[2] for r in rows], patterns[pattern_id])),
            tuple(frequencies.get(trip.trip_id, ())), tuple(r[0] for r in rows))
    route_patterns: dict[str, list[str]] = {}
    pattern_trips: dict[str, list[str]] = {}
    for p in patterns.values():
        route_patterns.setdefault(p.route_id, []).append(p.pattern_id)
    for t in sched_trips.values():
        pattern_trips.setdefault(t.pattern_id, []).append(t.trip_id)
    return Schedule(patterns, sched_trips, calendar or ServiceCalendar(), timezone,
                    {k: tuple(v) for k, v in route_patterns.items()},
                    {k: tuple(v) for k, v in pattern_trips.items()})


FIT_M = 150.0  # a shape fits a trip when half its stops lie this close to it or closer


def fit_m(shape: Shape, stops: Sequence[StopRow]) -> float:
    """The median distance of (up to 7 of) the stops from the shape."""
    step = max(1, len(stops) // 7)
    sample = stops[::step]
    margin = 2 * FIT_M * 9  # e6 degrees of ~300 m
    lat_lo, lat_hi = min(shape.lat_e6) - margin, max(shape.lat_e6) + margin
    lon_lo, lon_hi = min(shape.lon_e6) - margin, max(shape.lon_e6) + margin
    inside = sum(1 for s in sample if lat_lo <= s.lat_e6 <= lat_hi
                 and lon_lo <= s.lon_e6 <= lon_hi)
    if inside * 2 < len(sample):
        return math.inf  # half the stops off its box: cannot fit, not worth measuring
    offsets = sorted(shape.locate(s.lat_e6, s.lon_e6).offset_m for s in sample)
    return offsets[len(offsets) // 2]


def _fitting_shape(shape_id: str | None, stops: Sequence[StopRow],
                   shapes: Mapping[str, Sequence[tuple[int, int]]],
                   cache: dict[str, Shape]) -> Shape:
    """The trip's shape, if its stops lie along it; else the best fitting of the shapes
    sharing its feed id (a feed reusing a shape id for several lines, `ID@n`, may pair
    them with its trips in another order than its trips come); else the straight lines
    between the stops."""

    def shape(key: str) -> Shape:
        if key not in cache:
            cache[key] = Shape.of(shapes[key])
        return cache[key]

    if shape_id and len(shapes.get(shape_id, ())) >= 2:
        own = shape(shape_id)
        if fit_m(own, stops) <= FIT_M:
            return own
        base = shape_id.split("@", 1)[0]
        siblings = [k for k in shapes if k.split("@", 1)[0] == base and k != shape_id
                    and len(shapes[k]) >= 2]
        if siblings:
            fits = [(fit_m(shape(k), stops), k) for k in siblings]
            best_m, best = min(fits)
            if best_m <= FIT_M:
                return shape(best)
    return Shape.of([(s.lat_e6, s.lon_e6) for s in stops])


def _interpolated(times: list[int | None], pattern: Pattern) -> list[int | None]:
    """Stop times with the gaps between two given times filled in by distance (GTFS
    allows times at timepoints only); a trip without its first or last time keeps
    its gaps."""
    if not times or times[0] is None or times[-1] is None:
        return times
    out = list(times)
    last = 0
    for i in range(1, len(out)):
        if out[i] is None:
            continue
        t0, t1 = out[last], out[i]
        d0, d1 = pattern.stops[last].dist_m, pattern.stops[i].dist_m
        for j in range(last + 1, i):
            f = (pattern.stops[j].dist_m - d0) / (d1 - d0) if d1 > d0 else (j - last) / (
                i - last)
            out[j] = int(round(t0 + f * (t1 - t0)))  # type: ignore[operator]
        last = i
    return out
