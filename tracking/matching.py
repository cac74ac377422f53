"""Trip assignment: which pattern of its route a live vehicle runs, how far along it,
and which scheduled trip that is.

Pure: the schedule (`tracking.schedule`), the position and the vehicle's previous record
in, the fields to store out. The pattern is found from where the vehicle is and where
it was: a vehicle on a pattern it is known to run is located within a window around its
last distance (a loop's other pass of the same street is not read as this one), and all
of its route's patterns are searched only when it has none yet, went backwards (turned
round: back from the furthest it got, so that a turn made a few metres a fix is seen),
left the shape or changed route. Among the pattern's trips running on the service
date, the one whose time at the vehicle's distance is nearest to the position's time is
its trip, but for a vehicle at the start of its pattern: it takes the next departure not
yet gone (or gone a couple of minutes), not the one the bus ahead left on. A trip it was
given is kept while it still fits, so that a vehicle does not hop between two trips of
a timetable minutes apart, until another trip of its pattern fits it clearly better at
several positions running (never at its last stop, where the trip is done). Two live
vehicles are not put on one timed trip when another trip fits one of them: the matcher
remembers which vehicle it last gave each timed trip and how well it fitted (a few
bytes a vehicle), and the one fitting worse takes another. A vehicle's progress
("ts:dist_m" points) is thinned to a point every 30 s or 100 m, so that its last 20
points reach ~10 minutes back (what `tracking.predict.recent_pace` measures over); it
starts afresh on a new trip.
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
# VehicleRecord.progress keeps a point every 30 s or 100 m, whichever comes first, and
# the newest: 20 points reach 9.5-10 min back for a bus crawling in traffic (what
# recent_pace's 10-minute window needs), ~400 bytes in the store a vehicle. Every fix
# kept (10-20 s apart) would reach back 2-3 minutes only.
PROGRESS_KEEP = 20
PROGRESS_STEP_MS = 30_000
PROGRESS_STEP_M = 100
# A vehicle this little beyond its pattern's first stop is still at the start (a bus
# standing at a stop reads a few metres either side of it, tracking.learn.LEFT_M).
START_REACH_M = 50.0
# At the start, a departure gone this long is still the one the vehicle leaves on (a bus
# leaving a little late); one gone longer left with the bus ahead.
DEPARTED_S = 120
# A kept trip is given up for another of its pattern nearer in time by this much ...
BETTER_S = 180
# ... at this many positions running (the newest and two before it): a bus standing at
# a light for one fix does not change trips.
SUSTAIN = 3
# A vehicle heard from this recently still holds its trip (tracking.trip_updates.LIVE_S).
HOLD_LIVE_MS = 90_000
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
class _Hold:
    vehicle_id: str
    ts: int
    gap_ms: int  # how far off the trip's time the vehicle was


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
        # (trip id, service date) of a timed trip -> who was last given it; and each
        # vehicle's entry, so that it is dropped when the vehicle takes another trip.
        self._holds: dict[tuple[str, str], _Hold] = {}
        self._held_by: dict[str, tuple[str, str]] = {}
        # A service day's zero and whether a service runs on it: asked for every trip
        # of a pattern when its trips are compared (144 a day on the demo's), and each
        # costs a time zone conversion (~3 us) otherwise.
        self._zeros: dict[date, int] = {}
        self._by_departure: dict[str, tuple[list[int], list[ScheduledTrip], int]] = {}
        self._runs: dict[tuple[str, date], bool] = {}

    def assign(self, route_id: str, ts: int, lat_e6: int, lon_e6: int,
               bearing_deg: int | None, device_trip_id: str | None,
               prev: VehicleRecord | None, vehicle_id: str | None = None
               ) -> Assignment | None:
        """The vehicle's pattern, distance, trip and next stop; None when its route has
        no pattern in the schedule (or it is on none of them). `vehicle_id` (else the
        previous record's) names who holds the trip given."""
        if not self.schedule.route_patterns.get(route_id):
            return None
        vehicle = vehicle_id or (prev.vehicle_id if prev is not None else None)
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
            return self._result(on, trip.trip_id, dated, "device", progress, ts, prev,
                                vehicle)

        fix: _Fix | None = None
        if known is not None and prev is not None and prev.dist_m is not None:
            here = known.shape.locate(lat_e6, lon_e6, near_m=prev.dist_m,
                                      window_m=KNOWN_WINDOW_M)
            # Against the furthest it got, not its last fix: a bus turning round at a
            # terminal goes back 27 m a fix (5 s apart at 5.5 m/s), within the jitter
            # allowed each time; measured on the demo's buses, that kept 2 in 3 of
            # their positions on the way they had come.
            reach = max([d for _, d in progress] + [prev.dist_m])
            if here.offset_m <= ON_SHAPE_M and here.dist_m >= reach - JITTER_M:
                fix = _Fix(known, here.dist_m, here.offset_m)
        if fix is None:
            progress = []
            fix = self._search(self.schedule.patterns_of(route_id), lat_e6, lon_e6,
                               bearing_deg, prev if same_route else None)
            if fix is None:
                return None
        kept = known is not None and fix.pattern.pattern_id == known.pattern_id
        if kept and prev is not None and prev.trip_id and self._still_fits(
                prev, fix, ts, progress, vehicle):
            # The trip it was running, and who said so (a device's trip stays the
            # device's while the vehicle keeps to it).
            return self._result(fix, prev.trip_id, prev.start_date,
                                prev.trip_source or "matched", progress, ts, prev, vehicle)
        trip_id, start = self._nearest_trip(fix.pattern, fix.dist_m, ts, vehicle)
        source = "matched"
        if kept and prev is not None and trip_id == prev.trip_id and prev.trip_source:
            source = prev.trip_source  # chosen again (at the start): still the same trip
        return self._result(fix, trip_id, start, source, progress, ts, prev, vehicle)

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

    def _still_fits(self, prev: VehicleRecord, fix: _Fix, ts: int,
                    progress: Sequence[tuple[int, int]], vehicle: str | None) -> bool:
        """Whether the vehicle keeps the trip it had: it is still near the trip's time,
        no live vehicle fitting the trip better holds it, and no other trip of the
        pattern has fitted it clearly better for `SUSTAIN` positions."""
        pattern, dist_m = fix.pattern, fix.dist_m
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
        if when is None or abs(when - ts) > KEEP_S * 1000:
            return False
        if trip.frequencies:
            return True  # one trip id for every departure: nothing to change to
        if pattern.stops and dist_m >= pattern.stops[-1].dist_m - START_REACH_M:
            # Come in at its last stop: the trip is done, and the time it stands there
            # says nothing of which trip it was (measured on the demo: after 3 minutes
            # the next trip's arrival was the nearer, and the trip it came on was lost).
            return True
        # Kept at the start too: a trip given there was the next departure
        # (`_nearest_trip`), so one gone long since is the vehicle's own, left late (the
        # demo's bus 1 leaves 4 minutes late each time), unless a vehicle that left on
        # it holds it (`_taken`).
        gap = abs(when - ts)
        if self._taken((trip.trip_id, prev.start_date), vehicle, gap, ts):
            return False
        # Only a vehicle well off its trip's time looks further: most are near theirs,
        # and keeping costs them one interpolation.
        return gap <= BETTER_S * 1000 or not self._better_elsewhere(
            trip, day, pattern, dist_m, ts, gap, progress)

    def _better_elsewhere(self, trip: ScheduledTrip, day: date, pattern: Pattern,
                          dist_m: float, ts: int, gap: int,
                          progress: Sequence[tuple[int, int]]) -> bool:
        """Whether another timed trip of the pattern is nearer in time by `BETTER_S`
        now and at the `SUSTAIN - 1` positions before."""
        earlier = list(progress[-(SUSTAIN - 1):]) if SUSTAIN > 1 else []
        if len(earlier) < SUSTAIN - 1:
            return False
        best: tuple[int, ScheduledTrip, date] | None = None
        firsts, trips, run_s = self._departures(pattern.pattern_id)
        reach_s = (gap - BETTER_S * 1000) / 1000
        for d in self.schedule.service_days(ts):
            # Only a trip leaving between these can be nearer than `gap - BETTER_S` at
            # dist_m (it takes `run_s` at most to get anywhere): a few of the 288
            # departures of two days of a 10-minute timetable; measured, a bus 4 minutes
            # late costs ~20-27 us a position so, 340 us looking at them all.
            now_s = (ts - self._zero(d)) / 1000
            lo = bisect.bisect_left(firsts, now_s - reach_s - run_s)
            hi = bisect.bisect_right(firsts, now_s + reach_s)
            for other in trips[lo:hi]:
                if other is trip or not self._running(other.service_id, d):
                    continue
                when = self._time_at(other, pattern, dist_m, d, ts)
                if when is None:
                    continue
                g = abs(when - ts)
                if g + BETTER_S * 1000 <= gap and (best is None or g < best[0]):
                    best = (g, other, d)
        if best is None:
            return False
        _, other, other_day = best
        for then, dist in earlier:
            mine = self._time_at(trip, pattern, dist, day, then)
            theirs = self._time_at(other, pattern, dist, other_day, then)
            if mine is None or theirs is None or \
                    abs(theirs - then) + BETTER_S * 1000 > abs(mine - then):
                return False
        return True

    def _departures(self, pattern_id: str
                    ) -> tuple[list[int], list[ScheduledTrip], int]:
        """The pattern's timed trips (not frequencies) by first time, their first
        times, and the longest of them end to end (s)."""
        known = self._by_departure.get(pattern_id)
        if known is None:
            timed: list[tuple[int, str, ScheduledTrip]] = []
            run = 0
            for t in self.schedule.trips_of(pattern_id):
                first, last = t.times[0] if t.times else None, t.times[-1] if t.times \
                    else None
                if first is None or last is None or t.frequencies:
                    continue
                timed.append((first, t.trip_id, t))
                run = max(run, last - first)
            timed.sort(key=lambda x: x[:2])
            known = self._by_departure[pattern_id] = (
                [f for f, _, _ in timed], [t for *_, t in timed], run)
        return known

    def _taken(self, key: tuple[str, str], vehicle: str | None, gap: int, ts: int
               ) -> bool:
        """Whether another live vehicle holds the trip and fits it better."""
        hold = self._holds.get(key)
        return hold is not None and hold.vehicle_id != vehicle and \
            abs(ts - hold.ts) <= HOLD_LIVE_MS and hold.gap_ms < gap

    def _hold(self, vehicle: str | None, trip_id: str | None, start: str | None,
              pattern: Pattern, dist_m: float, ts: int) -> None:
        """Remember that `vehicle` runs the timed trip, and how near its time."""
        if vehicle is None:
            return
        old = self._held_by.pop(vehicle, None)
        if old is not None and (hold := self._holds.get(old)) is not None \
                and hold.vehicle_id == vehicle:
            del self._holds[old]
        trip = self.schedule.trips.get(trip_id or "")
        if trip is None or not trip.timed or trip.frequencies or not start:
            return
        day = _parse_day(start)
        when = self._time_at(trip, pattern, dist_m, day, ts) if day is not None else None
        if when is None:
            return
        self._holds[(trip.trip_id, start)] = _Hold(vehicle, ts, abs(when - ts))
        self._held_by[vehicle] = (trip.trip_id, start)

    def _nearest_trip(self, pattern: Pattern, dist_m: float, ts: int,
                      vehicle: str | None = None) -> tuple[str | None, str | None]:
        """The trip of `pattern` running on a service day whose time at `dist_m` is
        nearest to `ts`, or at the start the next departure not gone (`DEPARTED_S`);
        of those, one that no live vehicle fitting it better holds when another fits
        within `KEEP_S`. A pattern without timed trips is its own trip."""
        days = self.schedule.service_days(ts)
        start = _at_start(pattern, dist_m)
        options: list[tuple[tuple[int, int], int, str, str, bool]] = []
        untimed: ScheduledTrip | None = None
        for trip in self.schedule.trips_of(pattern.pattern_id):
            if not trip.timed and not trip.frequencies:
                if untimed is None or trip.trip_id == pattern.pattern_id:
                    untimed = trip
                continue
            for day in days:
                if not self._running(trip.service_id, day):
                    continue
                when = self._time_at(trip, pattern, dist_m, day, ts)
                if when is None:
                    continue
                gap = abs(when - ts)
                if gap > MATCH_S * 1000:
                    continue
                rank = (1, gap)
                if start and not trip.frequencies and trip.times[0] is not None:
                    leaves = self._zero(day) + trip.times[0] * 1000
                    if leaves >= ts - DEPARTED_S * 1000:
                        rank = (0, leaves)  # the next to leave, not the nearest
                options.append((rank, gap, trip.trip_id, day.strftime("%Y%m%d"),
                                not trip.frequencies))
        if options:
            options.sort()
            free = [o for o in options
                    if not (o[4] and self._taken((o[2], o[3]), vehicle, o[1], ts))]
            if free and (free[0][0][0] == 0 or free[0][1] <= KEEP_S * 1000):
                return free[0][2], free[0][3]
            return options[0][2], options[0][3]
        if untimed is not None:
            # A pattern without a timetable: the vehicle on it runs it, whatever the
            # calendar says (Transjakarta's ended on 2021-12-31; its buses did not).
            return untimed.trip_id, self.schedule.service_date(ts).strftime("%Y%m%d")
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
                if when is not None and self._running(trip.service_id, day):
                    timed.append((abs(when - ts), day))
            if timed:
                return min(timed)[1].strftime("%Y%m%d")
        return self.schedule.service_date(ts).strftime("%Y%m%d")

    def _zero(self, day: date) -> int:
        zero = self._zeros.get(day)
        if zero is None:
            if len(self._zeros) > 64:
                self._zeros.clear()
            zero = self._zeros[day] = self.schedule.day_start_ms(day)
        return zero

    def _running(self, service_id: str, day: date) -> bool:
        key = (service_id, day)
        runs = self._runs.get(key)
        if runs is None:
            if len(self._runs) > 10_000:
                self._runs.clear()
            runs = self._runs[key] = self.schedule.calendar.runs(service_id, day)
        return runs

    def _time_at(self, trip: ScheduledTrip, pattern: Pattern, dist_m: float, day: date,
                 ts: int) -> int | None:
        """When (ms) the trip of service day `day` is scheduled at `dist_m`; a frequency
        trip's departure nearest to `ts` of its windows."""
        offset = _seconds_at(trip.times, self._stop_dists[pattern.pattern_id], dist_m)
        if offset is None:
            return None
        zero = self._zero(day)
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
                source: str | None, progress: list[tuple[int, int]], ts: int,
                prev: VehicleRecord | None, vehicle: str | None) -> Assignment:
        dist = int(round(fix.dist_m))
        if prev is None or trip_id != prev.trip_id or start != prev.start_date:
            progress = []  # a new trip: its pace is its own
        progress = _thinned(progress, ts, dist)
        self._hold(vehicle, trip_id, start if trip_id else None, fix.pattern, fix.dist_m,
                   ts)
        stops = fix.pattern.stops
        i = bisect.bisect_right(self._stop_dists[fix.pattern.pattern_id], fix.dist_m)
        return Assignment(trip_id, fix.pattern.pattern_id, dist, start if trip_id else None,
                          source if trip_id else None,
                          " ".join(f"{t}:{d}" for t, d in progress),
                          stops[i] if i < len(stops) else None)


def _at_start(pattern: Pattern, dist_m: float) -> bool:
    return bool(pattern.stops) and dist_m <= pattern.stops[0].dist_m + START_REACH_M


def _thinned(progress: Sequence[tuple[int, int]], ts: int, dist: int
             ) -> list[tuple[int, int]]:
    """`progress` with (ts, dist) added: the newest point always, the one before it
    only if it came `PROGRESS_STEP_MS` or `PROGRESS_STEP_M` after its own previous."""
    out = list(progress)
    if len(out) >= 2 and out[-1][0] - out[-2][0] < PROGRESS_STEP_MS \
            and abs(out[-1][1] - out[-2][1]) < PROGRESS_STEP_M:
        out.pop()
    out.append((ts, dist))
    return out[-PROGRESS_KEEP:]


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
