"""Trip assignment: which pattern of its route a live vehicle runs, how far along it,
and which scheduled trip that is.

Pure: the schedule (`tracking.schedule`), the position and the vehicle's previous record
in, the fields to store out. The pattern is found from where the vehicle is and where
it was: a vehicle on a pattern it is known to run is located within a window around its
last distance (a loop's other pass of the same street is not read as this one), and all
of its route's patterns are searched only when it has none yet, went backwards (turned
round), left the shape or changed route. Among the pattern's trips running on the
service date, the one whose time at the vehicle's distance is nearest to the position's
time is its trip; a trip it was given is kept while it still fits, so that a vehicle
does not hop between two trips of a timetable minutes apart.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from tracking.schedule import Pattern, PatternStop, Schedule, ScheduledTrip
from tracking.store import VehicleRecord

ON_SHAPE_M = 60.0      # a vehicle this close to a pattern's shape runs along it
DEVICE_FIT_M = 100.0   # a device's own trip is believed this far off its shape at most
JITTER_M = 40.0        # a fix moving back this much is noise, not a turn
KEEP_S = 20 * 60       # a timed trip is kept while the vehicle is this close to it
# A timed trip further off its time than this is not the one the vehicle runs (an extra
# bus, a trip of yesterday's timetable 24 h ago): better no trip than a wrong one.
MATCH_S = 2 * 3600
KNOWN_WINDOW_M = 1500.0  # searched around the last distance on the known pattern
BEARING_DEG = 60.0     # a vehicle's bearing agrees with the shape's within this
PROGRESS_KEEP = 6      # "ts:dist_m" pairs kept in VehicleRecord.progress
BOX_MARGIN_E6 = 1000   # ~110 m: a pattern whose box is farther away is not measured


@dataclass(frozen=True)
class Assignment:
    """What trip assignment made of a position: the VehicleRecord fields and the next
    stop of the pattern."""

    trip_id: str | None  # as stored (`ID@n` for a reused feed id)
    pattern_id: str
    dist_m: int
    start_date: str | None  # the trip's service date, YYYYMMDD
    trip_source: str | None  # "device" or "matched"; None with no trip
    progress: str
    next_stop: PatternStop | None


@dataclass(frozen=True)
class _Fix:
    pattern: Pattern
    dist_m: float
    offset_m: float


class Matcher:
    """Assigns trips against one schedule; keeps the few indexes it needs of it."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self._by_feed_id: dict[str, list[str]] = {}
        for trip_id in schedule.trips:
            self._by_feed_id.setdefault(trip_id.split("@", 1)[0], []).append(trip_id)
        self._boxes = {
            p.pattern_id: (min(p.shape.lat_e6) - BOX_MARGIN_E6,
                           max(p.shape.lat_e6) + BOX_MARGIN_E6,
                           min(p.shape.lon_e6) - BOX_MARGIN_E6,
                           max(p.shape.lon_e6) + BOX_MARGIN_E6)
            for p in schedule.patterns.values() if p.shape.cum_m}
        self._stop_dists = {p.pattern_id: [s.dist_m for s in p.stops]
                            for p in schedule.patterns.values()}

    def assign(self, route_id: str, ts: int, lat_e6: int, lon_e6: int,
               bearing_deg: int | None, device_trip_id: str | None,
               prev: VehicleRecord | None) -> Assignment | None:
        """The vehicle's pattern, distance, trip and next stop; None when its route has
        no pattern in the schedule (or it is on none of them)."""
        if not self.schedule.route_patterns.get(route_id):
            return None
        same_route = prev is not None and prev.route_id == route_id
        known = self.schedule.patterns.get(prev.pattern_id or "") if (
            prev is not None and same_route) else None
        if known is not None and known.route_id != route_id:
            known = None
        progress = _progress(prev.progress) if known is not None and prev else []

        device = self._device_trip(route_id, device_trip_id, lat_e6, lon_e6, known, prev)
        if device is not None:
            trip, on = device
            if known is None or on.pattern.pattern_id != known.pattern_id:
                progress = []
            dated = self._start_date(trip, on.dist_m, ts, prev, on.pattern)
            return self._result(on, trip.trip_id, dated, "device", progress, ts)

        fix: _Fix | None = None
        if known is not None and prev is not None and prev.dist_m is not None:
            here = known.shape.locate(lat_e6, lon_e6, near_m=prev.dist_m,
                                      window_m=KNOWN_WINDOW_M)
            last = progress[-1][1] if progress else prev.dist_m
            if here.offset_m <= ON_SHAPE_M and here.dist_m >= last - JITTER_M:
                fix = _Fix(known, here.dist_m, here.offset_m)
        if fix is None:
            progress = []
            fix = self._search(self.schedule.patterns_of(route_id), lat_e6, lon_e6,
                               bearing_deg, prev if same_route else None)
            if fix is None:
                return None
        kept = known is not None and fix.pattern.pattern_id == known.pattern_id
        if kept and prev is not None and prev.trip_id and self._still_fits(
                prev, fix.pattern, fix.dist_m, ts):
            # The trip it was running, and who said so (a device's trip stays the
            # device's while the vehicle keeps to it).
            return self._result(fix, prev.trip_id, prev.start_date,
                                prev.trip_source or "matched", progress, ts)
        trip_id, start = self._nearest_trip(fix.pattern, fix.dist_m, ts)
        return self._result(fix, trip_id, start, "matched", progress, ts)

    # -- the pattern -------------------------------------------------------------------

    def _located(self, pattern: Pattern, lat_e6: int, lon_e6: int) -> _Fix | None:
        box = self._boxes.get(pattern.pattern_id)
        if box is None or not (box[0] <= lat_e6 <= box[1] and box[2] <= lon_e6 <= box[3]):
            return None
        where = pattern.shape.locate(lat_e6, lon_e6)
        return _Fix(pattern, where.dist_m, where.offset_m)

    def _search(self, patterns: Sequence[Pattern], lat_e6: int, lon_e6: int,
                bearing_deg: int | None, prev: VehicleRecord | None) -> _Fix | None:
        """The pattern the vehicle goes forward along from its previous position, or
        before it has moved, the nearest whose shape's bearing agrees with its own."""
        near: list[_Fix] = []
        for pattern in patterns:
            fix = self._located(pattern, lat_e6, lon_e6)
            if fix is not None and fix.offset_m <= ON_SHAPE_M:
                near.append(fix)
        if not near:
            return None
        near.sort(key=lambda f: f.offset_m)
        if prev is not None:
            forward = []
            for fix in near:
                then = fix.pattern.shape.locate(prev.lat_e6, prev.lon_e6,
                                                near_m=fix.dist_m, window_m=KNOWN_WINDOW_M)
                moved = fix.dist_m - then.dist_m
                if then.offset_m <= ON_SHAPE_M and moved > 0:
                    forward.append((fix.offset_m + then.offset_m, -moved, fix))
            if forward:
                return min(forward, key=lambda x: (x[0], x[1]))[2]
        if bearing_deg is not None:
            for fix in near:
                if _angle(bearing_deg, _shape_bearing(fix.pattern, fix.dist_m)) \
                        <= BEARING_DEG:
                    return fix
        return near[0]

    # -- the trip ----------------------------------------------------------------------

    def _device_trip(self, route_id: str, trip_id: str | None, lat_e6: int, lon_e6: int,
                     known: Pattern | None, prev: VehicleRecord | None
                     ) -> tuple[ScheduledTrip, _Fix] | None:
        """The device's own trip, when it is one of this route's and the vehicle lies
        on its pattern."""
        if not trip_id:
            return None
        stored = [trip_id] if trip_id in self.schedule.trips else self._by_feed_id.get(
            trip_id, [])
        best: tuple[ScheduledTrip, _Fix] | None = None
        for tid in stored:
            trip = self.schedule.trips[tid]
            pattern = self.schedule.patterns.get(trip.pattern_id)
            if trip.route_id != route_id or pattern is None:
                continue
            if pattern is known and prev is not None and prev.dist_m is not None:
                where = pattern.shape.locate(lat_e6, lon_e6, near_m=prev.dist_m,
                                             window_m=KNOWN_WINDOW_M)
                fix = _Fix(pattern, where.dist_m, where.offset_m)
            else:
                located = self._located(pattern, lat_e6, lon_e6)
                if located is None:
                    continue
                fix = located
            if fix.offset_m <= DEVICE_FIT_M and (best is None
                                                 or fix.offset_m < best[1].offset_m):
                best = (trip, fix)
        return best

    def _still_fits(self, prev: VehicleRecord, pattern: Pattern, dist_m: float,
                    ts: int) -> bool:
        trip = self.schedule.trips.get(prev.trip_id or "")
        if trip is None or trip.pattern_id != pattern.pattern_id:
            return False
        if not trip.timed and not trip.frequencies:
            return True
        if not prev.start_date:
            return False
        day = _parse_day(prev.start_date)
        if day is None:
            return False
        when = self._time_at(trip, pattern, dist_m, day, ts)
        return when is not None and abs(when - ts) <= KEEP_S * 1000

    def _nearest_trip(self, pattern: Pattern, dist_m: float, ts: int
                      ) -> tuple[str | None, str | None]:
        """The trip of `pattern` running on a service day whose time at `dist_m` is
        nearest to `ts`; a pattern without timed trips is its own trip."""
        days = self.schedule.service_days(ts)
        best: tuple[int, str, str] | None = None
        untimed: ScheduledTrip | None = None
        for trip in self.schedule.trips_of(pattern.pattern_id):
            if not trip.timed and not trip.frequencies:
                if untimed is None or trip.trip_id == pattern.pattern_id:
                    untimed = trip
                continue
            for day in days:
                if not self.schedule.calendar.runs(trip.service_id, day):
                    continue
                when = self._time_at(trip, pattern, dist_m, day, ts)
                if when is None:
                    continue
                gap = abs(when - ts)
                if gap > MATCH_S * 1000:
                    continue
                if best is None or gap < best[0]:
                    best = (gap, trip.trip_id, day.strftime("%Y%m%d"))
        if best is not None:
            return best[1], best[2]
        if untimed is not None:
            # A pattern without a timetable: the vehicle on it runs it, whatever the
            # calendar says (Transjakarta's ended on 2021-12-31; its buses did not).
            return untimed.trip_id, days[0].strftime("%Y%m%d")
        return None, None

    def _start_date(self, trip: ScheduledTrip, dist_m: float, ts: int,
                    prev: VehicleRecord | None, pattern: Pattern) -> str:
        if prev is not None and prev.trip_id == trip.trip_id and prev.start_date:
            return prev.start_date
        days = self.schedule.service_days(ts)
        if trip.timed or trip.frequencies:
            timed = []
            for day in days:
                when = self._time_at(trip, pattern, dist_m, day, ts)
                if when is not None and self.schedule.calendar.runs(trip.service_id, day):
                    timed.append((abs(when - ts), day))
            if timed:
                return min(timed)[1].strftime("%Y%m%d")
        return days[0].strftime("%Y%m%d")

    def _time_at(self, trip: ScheduledTrip, pattern: Pattern, dist_m: float, day: date,
                 ts: int) -> int | None:
        """When (ms) the trip of service day `day` is scheduled at `dist_m`; a frequency
        trip's departure nearest to `ts` of its windows."""
        offset = _seconds_at(trip.times, self._stop_dists[pattern.pattern_id], dist_m)
        if offset is None:
            return None
        zero = self.schedule.day_start_ms(day)
        if not trip.frequencies:
            return zero + offset * 1000
        first = trip.times[0]
        if first is None:
            return None
        into = offset - first  # seconds from the trip's start to this distance
        target = (ts - zero) / 1000 - into  # the start that would be here now
        best: float | None = None
        for f in trip.frequencies:
            if f.headway_s <= 0 or f.end_s <= f.start_s:
                continue
            last_k = max(0, math.ceil((f.end_s - f.start_s) / f.headway_s) - 1)
            k = min(last_k, max(0, round((target - f.start_s) / f.headway_s)))
            start = f.start_s + k * f.headway_s
            if best is None or abs(start - target) < abs(best - target):
                best = start
        return None if best is None else zero + int((best + into) * 1000)

    # -- the result --------------------------------------------------------------------

    def _result(self, fix: _Fix, trip_id: str | None, start: str | None,
                source: str | None, progress: list[tuple[int, int]], ts: int
                ) -> Assignment:
        dist = int(round(fix.dist_m))
        progress = [*progress, (ts, dist)][-PROGRESS_KEEP:]
        stops = fix.pattern.stops
        i = bisect.bisect_right(self._stop_dists[fix.pattern.pattern_id], fix.dist_m)
        return Assignment(trip_id, fix.pattern.pattern_id, dist, start if trip_id else None,
                          source if trip_id else None,
                          " ".join(f"{t}:{d}" for t, d in progress),
                          stops[i] if i < len(stops) else None)


def _progress(text: str) -> list[tuple[int, int]]:
    out = []
    for pair in text.split():
        ts, _, dist = pair.partition(":")
        try:
            out.append((int(ts), int(dist)))
        except ValueError:
            return []
    return out


def _parse_day(ymd: str) -> date | None:
    try:
        return date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:8]))
    except ValueError:
        return None


def _seconds_at(times: Sequence[int | None], dists: Sequence[float], dist_m: float
                ) -> int | None:
    """The trip's time (seconds of its day) at `dist_m`, interpolated between its stops
    by distance; before the first stop its first time, past the last its last."""
    if not times or times[0] is None or times[-1] is None:
        return None
    i = bisect.bisect_right(dists, dist_m)
    if i == 0:
        return times[0]
    if i >= len(dists):
        return times[-1]
    t0, t1 = times[i - 1], times[i]
    if t0 is None or t1 is None:
        return t0 if t0 is not None else t1
    span = dists[i] - dists[i - 1]
    f = (dist_m - dists[i - 1]) / span if span > 0 else 0.0
    return int(round(t0 + f * (t1 - t0)))


def _shape_bearing(pattern: Pattern, dist_m: float) -> float:
    """The shape's bearing (degrees clockwise from north) around `dist_m`."""
    lat1, lon1 = pattern.shape.point_at(max(0.0, dist_m - 15))
    lat2, lon2 = pattern.shape.point_at(min(pattern.length_m, dist_m + 15))
    dy = lat2 - lat1
    dx = (lon2 - lon1) * math.cos(math.radians(lat1 / 1e6))
    return math.degrees(math.atan2(dx, dy)) % 360


def _angle(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)
