"""A simulated GPS receiver (`--gps sim`): one that stands still, one that drives along
a route shape at a bus's speed, or one on a bus that runs a timetable (a plan), for
drills, the demo and tests without a receiver."""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from geopy.distance import geodesic

from validator_agent.gps import Fix

Point = tuple[float, float]  # (lat, lon) in degrees


def _bearing(a: Point, b: Point) -> float:
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlon = math.radians(b[1] - a[1])
    x = math.sin(dlon) * math.cos(lat2)
    y = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return (math.degrees(math.atan2(x, y)) + 360) % 360


def drive(shape: Sequence[Point], speed_mps: float = 8.0, interval_s: float = 1.0,
          time_scale: float = 1.0, loop: bool = True, stop_every_m: float = 600.0,
          dwell_s: float = 20.0) -> Iterator[Fix]:
    """Fixes along `shape`, back and forth, pausing at a stop every `stop_every_m` metres.

    `time_scale` > 1 runs simulated time faster than the wall clock.
    """
    if len(shape) < 2:
        raise ValueError("a shape needs at least two points")
    path = list(shape)
    while True:
        since_stop = 0.0
        for a, b in zip(path, path[1:], strict=False):
            length = geodesic(a, b).meters
            bearing = _bearing(a, b)
            travelled = 0.0
            while travelled < length:
                step = min(speed_mps * interval_s, length - travelled)
                travelled += step
                since_stop += step
                f = travelled / length if length else 1.0
                lat = a[0] + (b[0] - a[0]) * f
                lon = a[1] + (b[1] - a[1]) * f
                yield Fix(int(time.time() * 1000), int(round(lat * 1e6)), int(round(lon * 1e6)),
                          int(speed_mps * 100), int(round(bearing)) % 360)
                time.sleep(interval_s / time_scale)
                if since_stop >= stop_every_m:
                    since_stop = 0.0
                    for _ in range(max(1, int(dwell_s / interval_s))):
                        yield Fix(int(time.time() * 1000), int(round(lat * 1e6)),
                                  int(round(lon * 1e6)), 0, int(round(bearing)) % 360)
                        time.sleep(interval_s / time_scale)
        if not loop:
            return
        path.reverse()


def standing(lat: float, lon: float, interval_s: float = 1.0) -> Iterator[Fix]:
    """A receiver that has a fix and does not move."""
    while True:
        yield Fix(int(time.time() * 1000), int(round(lat * 1e6)), int(round(lon * 1e6)), 0, None)
        time.sleep(interval_s)


# -- a bus on a timetable (`--gps sim:PLAN.json`) ----------------------------------------
#
# A plan is what a bus's duty roster says: the runs it drives (one per direction: the
# shape, where its stops lie along it, and the timetable's arrival and departure at each
# stop, in seconds after the trip's start), and the timetable's departures it takes, in
# order. The bus leaves each departure `delay_s` late (or later still, when it came in
# later than that and must first stand `layover_s` at the terminal), drives each stretch
# between stops `speed_factor` times as fast as the timetable plans, stands at each stop
# the timetable's dwell plus `extra_dwell_s`, and waits at the terminal for its next
# departure. The plan's clock is epoch milliseconds: at time scale k it runs k times
# faster than the wall clock from `epoch_ms` on, while the fixes carry the wall clock.

EARTH_M = 6_371_008.8


def _metres(a: Point, b: Point) -> float:
    lat = math.radians((a[0] + b[0]) / 2)
    dy = math.radians(b[0] - a[0]) * EARTH_M
    dx = math.radians(b[1] - a[1]) * EARTH_M * math.cos(lat)
    return math.hypot(dx, dy)


def cumulative_m(points: Sequence[Point]) -> list[float]:
    """The distance travelled along `points` at each of them, in metres."""
    out = [0.0]
    for a, b in zip(points, points[1:], strict=False):
        out.append(out[-1] + _metres(a, b))
    return out


@dataclass(frozen=True)
class Run:
    """One direction as the timetable runs it: its shape, its stops' distances along it,
    and the timetable's arrival and departure at each stop (seconds after the start)."""

    points: tuple[Point, ...]
    cum_m: tuple[float, ...]
    stops_m: tuple[float, ...]
    arrive_s: tuple[float, ...]
    depart_s: tuple[float, ...]

    def point_at(self, dist_m: float) -> tuple[Point, float]:
        """The point `dist_m` along the shape and the bearing of the street there."""
        i = min(max(bisect.bisect_right(self.cum_m, dist_m) - 1, 0), len(self.points) - 2)
        a, b = self.points[i], self.points[i + 1]
        span = self.cum_m[i + 1] - self.cum_m[i]
        f = min(max((dist_m - self.cum_m[i]) / span, 0.0), 1.0) if span else 1.0
        return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f), _bearing(a, b)


@dataclass(frozen=True)
class Leg:
    """A departure the bus takes: the timetable's trip, its run, its scheduled start."""

    trip_id: str
    run: str
    start_ms: int


@dataclass(frozen=True)
class Where:
    """Where the plan has the bus at a moment, and what it is doing."""

    lat: float
    lon: float
    speed_mps: float
    bearing: float
    trip_id: str | None  # the trip it is driving; None while it waits at a terminal
    dist_m: float  # along the run it is on (or last drove)
    late_s: float  # behind the timetable at this point of its trip (0 while waiting)


@dataclass(frozen=True)
class Plan:
    """A bus's duty: its runs, the departures it takes, how it runs them."""

    epoch_ms: int
    runs: Mapping[str, Run]
    legs: tuple[Leg, ...]
    delay_s: float = 0.0
    speed_factor: float = 1.0
    extra_dwell_s: float = 0.0
    layover_s: float = 60.0
    _starts: tuple[int, ...] = field(default=(), compare=False, repr=False)
    _own: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(
        default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.legs:
            raise ValueError("a plan needs at least one departure")
        if self.speed_factor <= 0:
            raise ValueError("speed_factor must be above 0")
        for leg in self.legs:
            if leg.run not in self.runs:
                raise ValueError(f"departure {leg.trip_id} names no run {leg.run!r}")
        own = {}
        for key, run in self.runs.items():
            arrive, depart = [0.0], [0.0]
            for i in range(1, len(run.stops_m)):
                arrive.append(depart[-1] + (run.arrive_s[i] - run.depart_s[i - 1])
                              / self.speed_factor)
                last = i == len(run.stops_m) - 1
                depart.append(arrive[-1] + (0.0 if last else run.depart_s[i] - run.arrive_s[i]
                                            + self.extra_dwell_s))
            own[key] = (tuple(arrive), tuple(depart))
        object.__setattr__(self, "_own", own)
        starts: list[int] = []
        end = None
        for leg in self.legs:
            start = leg.start_ms + int(self.delay_s * 1000)
            if end is not None:
                start = max(start, end + int(self.layover_s * 1000))
            starts.append(start)
            end = start + int(own[leg.run][0][-1] * 1000)
        object.__setattr__(self, "_starts", tuple(starts))

    def where(self, at_ms: float) -> Where:
        """Where the bus is at `at_ms` of the plan's clock."""
        j = bisect.bisect_right(self._starts, at_ms) - 1
        if j < 0:  # before its first departure: at the first stop, waiting
            leg = self.legs[0]
            run = self.runs[leg.run]
            return self._standing(run, run.stops_m[0], None)
        leg, run = self.legs[j], self.runs[self.legs[j].run]
        arrive, depart = self._own[leg.run]
        tau = (at_ms - self._starts[j]) / 1000
        if tau >= arrive[-1]:  # came in: waits at the terminal for its next departure
            return self._standing(run, run.stops_m[-1], None)
        i = bisect.bisect_right(depart, tau) - 1  # the stop it left last
        late = (self._starts[j] - leg.start_ms) / 1000
        if tau >= arrive[i + 1]:  # standing at the next stop, riders getting on and off
            return self._standing(run, run.stops_m[i + 1], leg.trip_id,
                                  late + arrive[i + 1] - run.arrive_s[i + 1])
        span = arrive[i + 1] - depart[i]
        f = (tau - depart[i]) / span if span else 1.0
        length = run.stops_m[i + 1] - run.stops_m[i]
        dist = run.stops_m[i] + f * length
        (lat, lon), bearing = run.point_at(dist)
        planned = run.depart_s[i] + f * (run.arrive_s[i + 1] - run.depart_s[i])
        return Where(lat, lon, length / span if span else 0.0, bearing, leg.trip_id, dist,
                     late + tau - planned)

    def _standing(self, run: Run, dist_m: float, trip_id: str | None,
                  late_s: float = 0.0) -> Where:
        (lat, lon), bearing = run.point_at(dist_m)
        return Where(lat, lon, 0.0, bearing, trip_id, dist_m, late_s)


def plan_of(data: object) -> Plan:
    """The plan of a parsed plan file; ValueError saying what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("a plan is a JSON object")
    try:
        runs = {}
        for key, r in data["runs"].items():
            points = tuple((float(p[0]), float(p[1])) for p in r["shape"])
            if len(points) < 2:
                raise ValueError(f"run {key}: a shape needs at least two points")
            stops = tuple(float(m) for m in r["stops_m"])
            arrive = tuple(float(s) for s in r["arrive_s"])
            depart = tuple(float(s) for s in r["depart_s"])
            if not len(stops) == len(arrive) == len(depart) >= 2:
                raise ValueError(f"run {key}: stops_m, arrive_s and depart_s need one "
                                 "entry per stop, two stops at least")
            if any(b < a for a, b in zip(stops, stops[1:], strict=False)):
                raise ValueError(f"run {key}: stops_m must not decrease")
            times = [t for pair in zip(arrive, depart, strict=True) for t in pair]
            if any(b < a for a, b in zip(times, times[1:], strict=False)):
                raise ValueError(f"run {key}: times must not decrease along the run")
            runs[str(key)] = Run(points, tuple(cumulative_m(points)), stops, arrive, depart)
        legs = tuple(Leg(str(g["trip_id"]), str(g["run"]), int(g["start_ms"]))
                     for g in data["legs"])
        if any(b.start_ms < a.start_ms for a, b in zip(legs, legs[1:], strict=False)):
            raise ValueError("departures must come in time order")
        return Plan(int(data["epoch_ms"]), runs, legs, float(data.get("delay_s", 0)),
                    float(data.get("speed_factor", 1)), float(data.get("extra_dwell_s", 0)),
                    float(data.get("layover_s", 60)))
    except KeyError as exc:
        raise ValueError(f"missing {exc.args[0]!r}") from None
    except (TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"malformed ({exc})") from None


def follow(plan: Plan, interval_s: float = 1.0, time_scale: float = 1.0,
           clock: Callable[[], float] = time.time,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Fix]:
    """Fixes of a bus running its plan, one every `interval_s` of the wall clock.

    The fixes carry the wall clock; their speed is the one seen on it (the timetable's
    speed times `time_scale`), so that speed and the distance between fixes agree.
    """
    while True:
        wall_ms = int(clock() * 1000)
        w = plan.where(plan.epoch_ms + (wall_ms - plan.epoch_ms) * time_scale)
        yield Fix(wall_ms, int(round(w.lat * 1e6)), int(round(w.lon * 1e6)),
                  int(round(w.speed_mps * time_scale * 100)), int(round(w.bearing)) % 360)
        sleep(interval_s)
