"""Headways, bunching and gaps (contract section 8), pure: a route's live vehicles in
order along each direction, the gap from each to the one ahead, the headway to judge it
against, and whether the pair is bunched or gapped.

Order. A direction may have several patterns (the Transjakarta feed has up to 13 for one
route and direction: short turns, branches). Vehicles are ordered along the direction's
*reference*, its longest pattern: a vehicle on another pattern is projected onto it
through that pattern's stops (each placed once on the reference, in order, and
distances between stops interpolated), so a short-turn bus and a full-length one are
compared where they really are. Two vehicles on the same pattern are measured along
their own pattern.

Gap. Metres along the shape from the follower to the leader; seconds from
`TravelTimes` (handed in: `ConstantSpeed`, or the learned times) for the follower to
cover that stretch leaving now. The lead vehicle has no gap.

Headway. Scheduled where the schedule gives one: `frequencies.txt` in force now
(`frequency`), else the median spacing of the timed trips' first departures within an
hour either side of now (`scheduled`), over every pattern of the direction. Else
`observed`: the run time of the reference pattern divided by the vehicles now on the
road in the direction, the spacing the live fleet would keep if evenly spread. (The
median of the live gaps cannot judge them: with two buses their one gap is its own
median, so a pair running together would never be told.)

Verdict. `bunched` when the gap is under `bunched_pct` per cent of the headway,
`gapped` when over `gapped_pct` (by default 50 and 150, issue 19).

Terminals. A bus laying over at its last stop, or standing at its first before it
leaves, is not on the road: buses queue there nose to tail by design, and judging them
would raise a standing bunching alert at every busy terminal. A vehicle within
`TERMINAL_M` of its own pattern's first stop (or before it), or of its last stop (or
beyond it), is listed apart in its direction's `at_terminal`, takes no part in the gaps
and is not counted in the observed headway (which is the spacing of the buses running).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tracking.predict import TravelTimes
from tracking.schedule import Pattern, Schedule

DEFAULT_BUNCHED_PCT = 50
DEFAULT_GAPPED_PCT = 150
MAX_PCT = 1000
DEFAULT_ROUTE = "*"
WINDOW_S = 3600  # departures this far either side of now make the scheduled headway
# How near its pattern's first or last stop a vehicle counts as at the terminal. A bus
# waiting behind the first stop or laid over past the last is there whatever the reach;
# the reach is for the queue on the stop's other side: four 18 m articulated buses nose
# to tail with a few metres between (~85 m), plus the ~15 m a fix strays. A bus that has
# left is past it within ~10 s at busway speed (10 m/s), so it is judged again at once.
TERMINAL_M = 100.0


@dataclass(frozen=True)
class Thresholds:
    """When a gap counts as bunched or gapped: per cent of the headway; `route_id` is
    the route whose row they come from (`*` the default row, None no row at all)."""

    bunched_pct: int = DEFAULT_BUNCHED_PCT
    gapped_pct: int = DEFAULT_GAPPED_PCT
    route_id: str | None = None


def thresholds_for(route_id: str, rows: Mapping[str, tuple[int, int]]) -> Thresholds:
    """The route's own row, else the default row (`*`), else 50/150."""
    for key in (route_id, DEFAULT_ROUTE):
        if key in rows:
            bunched, gapped = rows[key]
            return Thresholds(bunched, gapped, key)
    return Thresholds()


def check_thresholds(bunched: object, gapped: object) -> str | None:
    """Why a pair of thresholds cannot be set (None when it can): whole numbers with
    1 <= bunched < gapped <= 1000."""
    for name, value in (("bunched_pct", bunched), ("gapped_pct", gapped)):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{name} must be a whole number"
    assert isinstance(bunched, int) and isinstance(gapped, int)
    if not 1 <= bunched < gapped <= MAX_PCT:
        return f"they must keep 1 <= bunched_pct < gapped_pct <= {MAX_PCT}"
    return None


@dataclass(frozen=True)
class Live:
    """A live vehicle as the headways read it: where it is along which pattern."""

    vehicle_id: str
    route_id: str
    ts: int
    pattern_id: str | None
    dist_m: float | None
    trip_id: str | None = None


@dataclass(frozen=True)
class Headway:
    """The headway a direction's gaps are judged against, and where it came from
    (`frequency`, `scheduled`, `observed`); None when nothing gives one."""

    seconds: float | None
    source: str | None


@dataclass(frozen=True)
class InLine:
    """A vehicle in its place along the direction, with its gap to the one ahead."""

    vehicle_id: str
    pattern_id: str
    trip_id: str | None
    ts: int
    dist_m: float  # along its own pattern
    along_m: float  # along the direction's reference pattern
    ahead: str | None = None  # the vehicle ahead
    gap_m: float | None = None
    gap_s: float | None = None
    bunched: bool = False
    gapped: bool = False


@dataclass(frozen=True)
class AtTerminal:
    """A vehicle standing at its pattern's first stop (`first`) or laid over at or past
    its last (`last`): listed, not judged."""

    vehicle_id: str
    pattern_id: str
    trip_id: str | None
    ts: int
    dist_m: float  # along its own pattern
    terminal: str  # `first` or `last`


@dataclass(frozen=True)
class Direction:
    """One direction of a route: its reference pattern, headway and vehicles on the road,
    the lead vehicle first, and those at a terminal."""

    direction_id: int | None
    reference: str | None
    headway: Headway
    vehicles: tuple[InLine, ...] = ()
    at_terminal: tuple[AtTerminal, ...] = ()


@dataclass(frozen=True)
class RouteHeadways:
    """A route's directions (each the schedule gives, with vehicles or not) and the
    vehicles that could not be placed on any of its patterns."""

    route_id: str
    thresholds: Thresholds
    directions: tuple[Direction, ...]
    unplaced: tuple[Live, ...] = ()


@dataclass(frozen=True)
class Bunch:
    """Two vehicles of a direction running too close: the follower and the one ahead."""

    route_id: str
    direction_id: int | None
    follower: str
    leader: str
    gap_m: float
    gap_s: float
    headway_s: float
    headway_source: str
    thresholds: Thresholds

    @property
    def key(self) -> str:
        """The pair, as the memory of when it was first seen bunched keeps it."""
        return f"{self.route_id}|{direction_name(self.direction_id)}|{self.follower}|" \
               f"{self.leader}"


def run_m(pattern: Pattern) -> float:
    """Metres a pattern's trips run: from its first stop to its last."""
    return pattern.stops[-1].dist_m - pattern.stops[0].dist_m if pattern.stops else 0.0


def terminal_of(pattern: Pattern, dist_m: float, reach_m: float = TERMINAL_M
                ) -> str | None:
    """`first` for a vehicle at or before the pattern's first stop (within `reach_m`),
    `last` at or beyond its last, else None (on the road). On a pattern shorter than
    four reaches the reach shrinks to a quarter of its run, so that its middle stays on
    the road."""
    if not pattern.stops:
        return None
    reach = min(reach_m, run_m(pattern) / 4)
    if dist_m >= pattern.stops[-1].dist_m - reach:
        return "last"
    if dist_m <= pattern.stops[0].dist_m + reach:
        return "first"
    return None


def direction_name(direction_id: int | None) -> str:
    """A direction as the alerts name it: its id, or `-` for a feed without one."""
    return "-" if direction_id is None else str(direction_id)


# -- where patterns lie on each other ---------------------------------------------------

@dataclass
class Projections:
    """Each pattern's stops placed on its direction's reference pattern, worked out once
    per schedule (a pattern's stops are located on the reference's shape: ~1 ms a stop
    on the Transjakarta shapes) and kept while the schedule is the same."""

    schedule: Schedule
    _maps: dict[tuple[str, str], tuple[tuple[float, ...], tuple[float, ...]]] = field(
        default_factory=dict)

    def reference(self, route_id: str, direction_id: int | None) -> Pattern | None:
        """The longest pattern of the route's direction, first stop to last (a short
        turn may share the full line's shape), by id for equal lengths."""
        own = [p for p in self.schedule.patterns_of(route_id)
               if p.direction_id == direction_id]
        return max(own, key=lambda p: (run_m(p), p.pattern_id)) if own else None

    def along(self, pattern: Pattern, dist_m: float, onto: Pattern) -> float:
        """Metres along `onto` of the point `dist_m` along `pattern`."""
        if pattern.pattern_id == onto.pattern_id:
            return dist_m
        src, dst = self._map(pattern, onto)
        if len(src) < 2:
            return onto.shape.locate(*pattern.shape.point_at(dist_m)).dist_m
        i = max(0, min(len(src) - 2, bisect.bisect_right(src, dist_m) - 1))
        span = src[i + 1] - src[i]
        f = (dist_m - src[i]) / span if span > 0 else 0.0
        return max(0.0, dst[i] + f * (dst[i + 1] - dst[i]))

    def _map(self, pattern: Pattern, onto: Pattern
             ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        key = (pattern.pattern_id, onto.pattern_id)
        if key not in self._maps:
            src: list[float] = []
            dst: list[float] = []
            at = 0.0
            for stop in pattern.stops:
                where = onto.shape.locate(stop.lat_e6, stop.lon_e6, near_m=at,
                                          window_m=max(3000.0, onto.length_m / 4))
                at = max(at, where.dist_m)
                if src and stop.dist_m <= src[-1]:
                    continue  # two stops at one place: the first says it
                src.append(stop.dist_m)
                dst.append(at)
            self._maps[key] = (tuple(src), tuple(dst))
        return self._maps[key]


def scheduled_headway(schedule: Schedule, route_id: str, direction_id: int | None,
                      now_ms: int, projections: Projections) -> Headway | None:
    """The headway the schedule gives the direction at `now_ms`, or None.

    Frequencies in force first (the shortest, when several trips run at once), then the
    median spacing of the timed trips departing within `WINDOW_S` of now on a service
    day that runs them.
    """
    patterns = [p for p in schedule.patterns_of(route_id) if p.direction_id == direction_id]
    days = [(day, schedule.day_start_ms(day)) for day in schedule.service_days(now_ms)]
    every: list[int] = []
    starts: list[int] = []
    for p in patterns:
        for trip in schedule.trips_of(p.pattern_id):
            running = [start for day, start in days
                       if schedule.calendar.runs(trip.service_id, day)]
            if not running:
                continue
            for f in trip.frequencies:
                for start in running:
                    if start + f.start_s * 1000 <= now_ms < start + f.end_s * 1000:
                        every.append(f.headway_s)
            if trip.frequencies or not trip.timed or trip.times[0] is None:
                continue
            for start in running:
                at = start + trip.times[0] * 1000
                if abs(at - now_ms) <= WINDOW_S * 1000:
                    starts.append(at)
    if every:
        return Headway(float(min(every)), "frequency")
    starts = sorted(set(starts))
    if len(starts) < 2:
        return None
    spacing = sorted((b - a) / 1000 for a, b in zip(starts, starts[1:], strict=False))
    return Headway(_median(spacing), "scheduled")


def _median(values: Sequence[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def observed_headway(reference: Pattern, vehicles: int, times: TravelTimes,
                     now_ms: int) -> Headway | None:
    """The reference pattern's run time shared among the direction's live vehicles."""
    if vehicles < 1 or run_m(reference) <= 0:
        return None
    run_s = times.seconds(reference, reference.stops[0].dist_m, reference.stops[-1].dist_m,
                          now_ms)
    return Headway(run_s / vehicles, "observed") if run_s > 0 else None


# -- the route's headways ----------------------------------------------------------------

def route_headways(schedule: Schedule, route_id: str, vehicles: Iterable[Live],
                   now_ms: int, times: TravelTimes, thresholds: Thresholds,
                   projections: Projections | None = None) -> RouteHeadways:
    """The route's directions with their vehicles in order, gaps and verdicts.

    `vehicles` are the route's live ones (stale and offline already left out). A vehicle
    whose pattern is not one of the route's (or that has none, or no distance) is listed
    apart, in `unplaced`.
    """
    proj = projections if projections is not None and projections.schedule is schedule \
        else Projections(schedule)
    own = {p.pattern_id: p for p in schedule.patterns_of(route_id)}
    by_direction: dict[int | None, list[tuple[Live, Pattern]]] = {
        p.direction_id: [] for p in own.values()}
    unplaced: list[Live] = []
    for v in vehicles:
        pattern = own.get(v.pattern_id or "")
        if pattern is None or v.dist_m is None:
            unplaced.append(v)
            continue
        by_direction[pattern.direction_id].append((v, pattern))
    directions = []
    for direction_id in sorted(by_direction, key=lambda d: (d is None, d or 0)):
        directions.append(_direction(schedule, route_id, direction_id,
                                     by_direction[direction_id], now_ms, times,
                                     thresholds, proj))
    return RouteHeadways(route_id, thresholds, tuple(directions),
                         tuple(sorted(unplaced, key=lambda v: v.vehicle_id)))


def _direction(schedule: Schedule, route_id: str, direction_id: int | None,
               placed: list[tuple[Live, Pattern]], now_ms: int, times: TravelTimes,
               thresholds: Thresholds, proj: Projections) -> Direction:
    reference = proj.reference(route_id, direction_id)
    assert reference is not None  # the direction exists because a pattern has it
    parked: list[AtTerminal] = []
    running: list[tuple[Live, Pattern]] = []
    for v, p in placed:
        terminal = terminal_of(p, float(v.dist_m or 0.0))
        if terminal is None:
            running.append((v, p))
        else:
            parked.append(AtTerminal(v.vehicle_id, p.pattern_id, v.trip_id, v.ts,
                                     float(v.dist_m or 0.0), terminal))
    lined = sorted(((proj.along(p, float(v.dist_m or 0.0), reference), v, p)
                    for v, p in running), key=lambda t: (-t[0], t[1].vehicle_id))
    headway = scheduled_headway(schedule, route_id, direction_id, now_ms, proj) or \
        observed_headway(reference, len(lined), times, now_ms) or Headway(None, None)
    out: list[InLine] = []
    for i, (along_m, v, pattern) in enumerate(lined):
        dist = float(v.dist_m or 0.0)
        if i == 0:
            out.append(InLine(v.vehicle_id, pattern.pattern_id, v.trip_id, v.ts, dist,
                              along_m))
            continue
        lead_along, lead, lead_pattern = lined[i - 1]
        if lead_pattern.pattern_id == pattern.pattern_id:
            on, start, end = pattern, dist, float(lead.dist_m or 0.0)
        else:
            on, start, end = reference, along_m, lead_along
        gap_m = max(0.0, end - start)
        gap_s = times.seconds(on, start, end, now_ms)
        bunched = gapped = False
        if headway.seconds:
            bunched = gap_s * 100 < thresholds.bunched_pct * headway.seconds
            gapped = gap_s * 100 > thresholds.gapped_pct * headway.seconds
        out.append(InLine(v.vehicle_id, pattern.pattern_id, v.trip_id, v.ts, dist,
                          along_m, lead.vehicle_id, gap_m, gap_s, bunched, gapped))
    parked.sort(key=lambda a: (a.terminal, a.vehicle_id))
    return Direction(direction_id, reference.pattern_id, headway, tuple(out),
                     tuple(parked))


def bunches(route: RouteHeadways) -> list[Bunch]:
    """The pairs of the route that are bunched now."""
    out = []
    for d in route.directions:
        if d.headway.seconds is None or d.headway.source is None:
            continue
        for v in d.vehicles:
            if v.bunched and v.ahead is not None and v.gap_m is not None and \
                    v.gap_s is not None:
                out.append(Bunch(route.route_id, d.direction_id, v.vehicle_id, v.ahead,
                                 v.gap_m, v.gap_s, d.headway.seconds, d.headway.source,
                                 route.thresholds))
    return out


def carry_since(known: Mapping[str, int], now_pairs: Iterable[str], now_ms: int
                ) -> tuple[dict[str, int], list[str]]:
    """When each pair bunched now was first seen so (kept from `known`, else now), and
    the known pairs no longer bunched (to forget)."""
    current = list(dict.fromkeys(now_pairs))
    since = {k: known.get(k, now_ms) for k in current}
    return since, [k for k in known if k not in since]
