"""Days of buses and riders on a real network, for measuring predictions and occupancy.

`plan_city(schedule, CityConfig(...))` picks lines of a `tracking.schedule.Schedule`
(two patterns each, one per direction), gives every line a timetable (a departure every
8-15 minutes from 05:00 to 22:00, run times from a planning speed per time band, as an
operator would write them) and fixes what stays the same from day to day: how slow each
segment is, how much it suffers at the peaks, how many riders each stop sees.
`simulate_day(city, n)` then runs day `n` (seeded: the same city and day give the same
day) and returns what happened:

- each trip as run (`Run`): its vehicle, the true arrival at and departure from every
  stop, the load after each stop, and where it broke down, if it did;
- its positions every `position_every_s` with GPS noise (`Day.positions(run)`:
  lat/lon, and the metres along the pattern a locator would read from them);
- the fare taps (`Day.taps`): an entry at each boarding, an exit at the alighting on
  the lines whose riders tap out (most of them do); each rider's card comes back for
  the ride home, so where a card boards next says where it got off;
- every ride as it truly was (`Day.rides`) and the true load of a trip at any
  instant (`Day.load_at`).

What varies: traffic is slower at the morning and evening peaks (smoothly, each segment
by its own amount), each day is a little faster or slower than the others and has its
own slow stretches, each trip its own driver and noise; dwell grows with boardings and
alightings; a few trips break down and stand for 10-20 minutes. Riders board the first
bus that comes, so a late bus gathers more riders and falls later still.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from tracking.schedule import Pattern, Schedule, ScheduledTrip, ServiceCalendar

FIRST_DEPARTURE_S = 5 * 3600
LAST_DEPARTURE_S = 22 * 3600
# The operator's time bands (start hour), each with its own planned run times.
BANDS = (5, 7, 10, 16, 20)
FIRST_DAY = date(2026, 3, 2)  # a Monday; the days follow one another


@dataclass(frozen=True)
class CityConfig:
    """What a simulated city is made of; defaults give a busy weekday."""

    routes: int = 14
    seed: int = 1
    headway_s: tuple[int, int] = (480, 900)
    position_every_s: int = 10
    gps_noise_m: float = 4.0
    breakdown_share: float = 0.02  # of trips
    breakdown_s: tuple[int, int] = (600, 1200)
    tap_out_lines: float = 0.4  # share of lines whose riders tap out
    tap_out_riders: float = 0.9  # on those lines, the share who do
    riders_per_stop_hour: float = 20.0  # mean arrivals at a stop at the peak, one direction
    return_share: float = 0.7  # riders who ride back later the same day ...
    errand_share: float = 0.4  # ... of them, after an errand rather than a day's work
    mean_ride_stops: float = 5.0
    min_stops: int = 8
    length_m: tuple[float, float] = (5000.0, 26000.0)


@dataclass(frozen=True)
class Line:
    """A route run both ways: its two patterns, whether riders tap out, its free speed."""

    route_id: str
    patterns: tuple[Pattern, Pattern]
    tap_out: bool
    free_mps: float


@dataclass(frozen=True)
class Segment:
    """What stays the same on a segment (stop i to i+1) from day to day."""

    slowness: float  # travel time over the free time, off peak
    peak: float  # how much of the peak's slowing this segment gets (0.3-1.7)


@dataclass(frozen=True)
class City:
    """The chosen lines, their timetable (a timed `Schedule`) and what stays the same."""

    config: CityConfig
    lines: tuple[Line, ...]
    timetable: Schedule
    segments: dict[str, tuple[Segment, ...]]  # pattern id -> its segments
    stop_rates: dict[str, tuple[float, ...]]  # pattern id -> riders per peak hour per stop
    reverse_stop: dict[str, tuple[int | None, ...]]  # pattern -> nearest stop on the other

    def pattern(self, pattern_id: str) -> Pattern:
        return self.timetable.patterns[pattern_id]

    def line_of(self, pattern_id: str) -> Line:
        return next(ln for ln in self.lines if pattern_id in
                    (ln.patterns[0].pattern_id, ln.patterns[1].pattern_id))

    def day_start_ms(self, n: int) -> int:
        """The zero of day `n`'s times (day 0 is FIRST_DAY)."""
        return self.timetable.day_start_ms(FIRST_DAY + timedelta(days=n))


@dataclass(frozen=True)
class Run:
    """A trip as it ran: true times at each stop (ms), load after each stop."""

    trip_id: str
    vehicle_id: str
    pattern_id: str
    arrivals_ms: tuple[int, ...]
    departures_ms: tuple[int, ...]
    loads: tuple[int, ...]
    breakdown: tuple[int, int, float] | None  # (from ms, to ms, dist_m) standing still
    timeline: tuple[tuple[int, float], ...]  # (ms, dist_m) breakpoints, piecewise linear

    @property
    def start_ms(self) -> int:
        return self.departures_ms[0]

    @property
    def end_ms(self) -> int:
        return self.arrivals_ms[-1]

    def dist_at(self, ms: int) -> float:
        """Where the bus truly is at `ms` (metres along its pattern)."""
        tl = self.timeline
        i = bisect.bisect_right(tl, (ms, math.inf)) - 1
        if i < 0:
            return tl[0][1]
        if i >= len(tl) - 1:
            return tl[-1][1]
        (t0, d0), (t1, d1) = tl[i], tl[i + 1]
        return d0 if t1 == t0 else d0 + (d1 - d0) * (ms - t0) / (t1 - t0)


@dataclass(frozen=True)
class Position:
    """A GPS fix as the bus's validator sends it, with the distance a locator reads."""

    vehicle_id: str
    trip_id: str
    pattern_id: str
    ts_ms: int
    lat_e6: int
    lon_e6: int
    dist_m: float


@dataclass(frozen=True)
class Tap:
    """A fare tap: `kind` is "entry" or "exit"; dist_m where it was made (the truth)."""

    card: str
    vehicle_id: str
    trip_id: str
    pattern_id: str
    ts_ms: int
    lat_e6: int
    lon_e6: int
    dist_m: float
    kind: str


@dataclass(frozen=True)
class Ride:
    """A rider's ride as it truly was: boarded at stop `board`, left at `alight`."""

    card: str
    trip_id: str
    board: int
    alight: int


@dataclass
class Day:
    """One simulated day: its runs and taps; positions made on demand (they are many)."""

    city: City
    index: int
    day_start_ms: int
    runs: list[Run]
    taps: list[Tap]
    seed: int
    rides: list[Ride] = field(default_factory=list)
    _by_trip: dict[str, Run] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_trip = {r.trip_id: r for r in self.runs}

    def run(self, trip_id: str) -> Run:
        return self._by_trip[trip_id]

    def positions(self, run: Run) -> Iterator[Position]:
        """The run's fixes every `position_every_s`, from leaving its first stop to
        reaching its last, each off the truth by the GPS noise."""
        cfg = self.city.config
        rng = random.Random(f"{self.seed}/{self.index}/pos/{run.trip_id}")
        shape = self.city.pattern(run.pattern_id).shape
        step = cfg.position_every_s * 1000
        ts = run.start_ms + rng.randrange(step)
        while ts <= run.end_ms + step:
            d = run.dist_at(ts)
            lat, lon = shape.point_at(d)
            n_m, e_m = rng.gauss(0, cfg.gps_noise_m), rng.gauss(0, cfg.gps_noise_m)
            cos = math.cos(math.radians(lat / 1e6))
            # Half of the fix's error lies along the street, as a locator would read it.
            yield Position(run.vehicle_id, run.trip_id, run.pattern_id, ts,
                           lat + int(n_m / 0.1113195), lon + int(e_m / (0.1113195 * cos)),
                           max(0.0, d + (n_m + e_m) / math.sqrt(2)))
            ts += step

    def load_at(self, trip_id: str, ms: int) -> int:
        """Riders aboard the trip at `ms`: the load after the last stop it has left
        (everyone leaves at the last stop)."""
        run = self._by_trip[trip_id]
        if ms < run.departures_ms[0] or ms >= run.arrivals_ms[-1]:
            return 0
        i = bisect.bisect_right(run.departures_ms, ms) - 1
        return run.loads[i]


# -- the city ----------------------------------------------------------------------------

def traffic(hour: float) -> float:
    """How much slower than off peak the city is at `hour` (0 = not at all): the
    morning peak around 07:30, the evening one around 17:30, a little at midday."""
    def bump(mid: float, width: float) -> float:
        return math.exp(-0.5 * ((hour - mid) / width) ** 2)
    return 0.55 * bump(7.5, 1.1) + 0.65 * bump(17.6, 1.4) + 0.12 * bump(12.5, 1.5)


def demand(hour: float) -> float:
    """Riders arriving at a stop at `hour` relative to the peak."""
    def bump(mid: float, width: float) -> float:
        return math.exp(-0.5 * ((hour - mid) / width) ** 2)
    return min(1.0, 0.18 + 0.85 * bump(7.3, 1.2) + 0.8 * bump(17.3, 1.5) + 0.2 * bump(12.5, 2))


def choose_lines(schedule: Schedule, cfg: CityConfig) -> list[tuple[Pattern, Pattern]]:
    """Routes run both ways: each route's longest pattern (by stops) per direction, both
    with at least `min_stops` stops and a length within `length_m`."""
    lo, hi = cfg.length_m
    pairs = []
    for route_id in sorted(schedule.route_patterns):
        by_dir: dict[int, Pattern] = {}
        for p in schedule.patterns_of(route_id):
            if p.direction_id not in (0, 1) or len(p.stops) < cfg.min_stops or \
                    not lo <= p.length_m <= hi:
                continue
            best = by_dir.get(p.direction_id)
            if best is None or len(p.stops) > len(best.stops):
                by_dir[p.direction_id] = p
        if len(by_dir) == 2:
            pairs.append((by_dir[0], by_dir[1]))
    random.Random(f"{cfg.seed}/lines").shuffle(pairs)
    return pairs[:cfg.routes]


def plan_city(schedule: Schedule, cfg: CityConfig | None = None) -> City:
    """The city of `cfg.routes` lines of `schedule`, with their timetable."""
    cfg = cfg or CityConfig()
    rng = random.Random(f"{cfg.seed}/city")
    lines: list[Line] = []
    segments: dict[str, tuple[Segment, ...]] = {}
    rates: dict[str, tuple[float, ...]] = {}
    reverse: dict[str, tuple[int | None, ...]] = {}
    for a, b in choose_lines(schedule, cfg):
        # 6.5-9 m/s free: a corridor with its own lane and lights (~25-32 km/h).
        line = Line(a.route_id, (a, b), rng.random() < cfg.tap_out_lines,
                    rng.uniform(6.5, 9.0))
        lines.append(line)
        for p, other in ((a, b), (b, a)):
            segments[p.pattern_id] = tuple(
                Segment(math.exp(rng.gauss(0.15, 0.3)), rng.uniform(0.3, 1.7))
                for _ in p.stops[1:])
            # A few busy stops and many quiet ones; nobody boards at the last stop.
            rates[p.pattern_id] = tuple(
                cfg.riders_per_stop_hour * math.exp(rng.gauss(-0.3, 0.8))
                for _ in p.stops[:-1]) + (0.0,)
            reverse[p.pattern_id] = tuple(_nearest_stop(other, s.lat_e6, s.lon_e6)
                                          for s in p.stops)
    trips: dict[str, ScheduledTrip] = {}
    for line in lines:
        for p in line.patterns:
            t = FIRST_DEPARTURE_S + rng.randrange(0, cfg.headway_s[0])
            n = 0
            while t <= LAST_DEPARTURE_S:
                trip_id = f"{p.pattern_id}#{n:03d}"
                trips[trip_id] = ScheduledTrip(
                    trip_id, p.route_id, p.pattern_id, "SIM", p.direction_id,
                    tuple(_planned_times(p, segments[p.pattern_id], line.free_mps, t)))
                n += 1
                t += rng.randrange(cfg.headway_s[0], cfg.headway_s[1] + 1, 30)
    patterns = {p.pattern_id: p for ln in lines for p in ln.patterns}
    route_patterns = {ln.route_id: tuple(p.pattern_id for p in ln.patterns) for ln in lines}
    pattern_trips: dict[str, list[str]] = {}
    for trip in trips.values():
        pattern_trips.setdefault(trip.pattern_id, []).append(trip.trip_id)
    timetable = Schedule(patterns, trips, ServiceCalendar(), schedule.timezone,
                         route_patterns, {k: tuple(v) for k, v in pattern_trips.items()})
    return City(cfg, tuple(lines), timetable, segments, rates, reverse)


def _nearest_stop(pattern: Pattern, lat_e6: int, lon_e6: int) -> int | None:
    """The index of the pattern's stop nearest to a point, if within 1 km."""
    best, best_m = None, 1000.0
    cos = math.cos(math.radians(lat_e6 / 1e6))
    for i, s in enumerate(pattern.stops):
        m = math.hypot((s.lat_e6 - lat_e6) * 0.1113195,
                       (s.lon_e6 - lon_e6) * 0.1113195 * cos)
        if m < best_m:
            best, best_m = i, m
    return best


def _planned_times(p: Pattern, segs: Sequence[Segment], free_mps: float,
                   depart_s: int) -> list[int]:
    """The timetable of a trip leaving at `depart_s`: one planning speed for the
    whole line in each time band (the typical traffic of the band's middle, spread over
    the line's length) and 20 s at each stop, as an operator plans a corridor."""
    band = max(i for i, h in enumerate(BANDS) if h * 3600 <= max(depart_s, BANDS[0] * 3600))
    ends = (*BANDS[1:], 24)
    mid = (BANDS[band] + ends[band]) / 2
    free_s = sum((b.dist_m - a.dist_m) / free_mps * s.slowness *
                 (1 + s.peak * traffic(mid)) for a, b, s in zip(p.stops[:-1], p.stops[1:], segs,
                                                                strict=True))
    span = p.stops[-1].dist_m - p.stops[0].dist_m
    sec_per_m = free_s / span if span > 0 else 0.0
    times = []
    for i, s in enumerate(p.stops):
        times.append(int(round(depart_s + (s.dist_m - p.stops[0].dist_m) * sec_per_m
                               + 20 * i)))
    return times


# -- a day -------------------------------------------------------------------------------

@dataclass
class _Rider:
    card: str
    pattern_id: str
    board: int
    alight: int
    at_s: float  # arrives at the stop
    taps_out: bool
    trip_id: str = ""


def simulate_day(city: City, n: int) -> Day:
    """Day `n` of the city: every trip of its timetable run, with its riders."""
    cfg = city.config
    seed = cfg.seed
    rng = random.Random(f"{seed}/{n}/day")
    day_ms = city.day_start_ms(n)
    day_factor = math.exp(rng.gauss(0, 0.06))
    # The day's slow stretches: some segments are slower all day (works, a market).
    day_segs = {pid: tuple(math.exp(rng.gauss(0, 0.1)) for _ in segs)
                for pid, segs in city.segments.items()}
    # A slowly changing state of the whole city's traffic (rain, an event): what a
    # vehicle's recent pace can see and the usual times cannot.
    waves = [(rng.uniform(0.04, 0.1), rng.uniform(1.5, 4.0), rng.uniform(0, 2 * math.pi))
             for _ in range(2)]

    def wave(t_s: float) -> float:
        h = t_s / 3600
        return math.exp(sum(a * math.sin(2 * math.pi * h / period + phase)
                            for a, period, phase in waves))

    riders = _riders(city, n, rng)
    runs: list[Run] = []
    taps: list[Tap] = []
    rides: list[Ride] = []
    for line in city.lines:
        line_runs: list[tuple[Run, list[_Rider]]] = []
        for p in line.patterns:
            trips = city.timetable.trips_of(p.pattern_id)
            draws = {t.trip_id: _TripDraws.make(rng, len(p.stops), cfg) for t in trips}
            segs = [s.slowness * d for s, d in zip(city.segments[p.pattern_id],
                                                   day_segs[p.pattern_id], strict=True)]
            peaks = [s.peak for s in city.segments[p.pattern_id]]

            zeros = [0] * len(p.stops)
            first = {t.trip_id: _drive(p, t, draws[t.trip_id], zeros, zeros, segs, peaks,
                                       line.free_mps, day_factor, wave) for t in trips}
            # Riders board the first bus to come after them (as first driven, with
            # the least dwell); their boardings then lengthen its dwell.
            per_stop = [sorted((first[t.trip_id].arrive_s[i], t.trip_id) for t in trips)
                        for i in range(len(p.stops))]
            aboard: dict[str, list[_Rider]] = {t.trip_id: [] for t in trips}
            for r in riders.get(p.pattern_id, ()):
                buses = per_stop[r.board]
                k = bisect.bisect_left(buses, (r.at_s, ""))
                if k < len(buses):
                    r.trip_id = buses[k][1]
                    aboard[r.trip_id].append(r)
            for t in trips:
                ons, offs = [0] * len(p.stops), [0] * len(p.stops)
                for r in aboard[t.trip_id]:
                    ons[r.board] += 1
                    offs[r.alight] += 1
                d = _drive(p, t, draws[t.trip_id], ons, offs, segs, peaks, line.free_mps,
                           day_factor, wave)
                load, loads = 0, []
                for i in range(len(p.stops)):
                    load += ons[i] - offs[i]
                    loads.append(load)
                tl = tuple((int(day_ms + s * 1000), m) for s, m in d.timeline)
                run = Run(t.trip_id, "", p.pattern_id,
                          tuple(int(day_ms + s * 1000) for s in d.arrive_s),
                          tuple(int(day_ms + s * 1000) for s in d.depart_s),
                          tuple(loads),
                          None if d.breakdown is None else
                          (int(day_ms + d.breakdown[0] * 1000),
                           int(day_ms + d.breakdown[1] * 1000), d.breakdown[2]), tl)
                line_runs.append((run, aboard[t.trip_id]))
        for run, aboard_run in _with_vehicles(line.route_id, line_runs):
            runs.append(run)
            taps.extend(_taps(city.pattern(run.pattern_id), run, aboard_run, rng))
            rides.extend(Ride(r.card, run.trip_id, r.board, r.alight) for r in aboard_run)
    taps.sort(key=lambda t: t.ts_ms)
    runs.sort(key=lambda r: r.start_ms)
    return Day(city, n, day_ms, runs, taps, seed, rides)


@dataclass(frozen=True)
class _TripDraws:
    """A trip's random parts, drawn once so that driving it again (with its riders'
    dwell) changes nothing else."""

    late_s: float
    driver: float
    noise: tuple[float, ...]
    breakdown: tuple[int, float, float] | None  # (segment, fraction along it, seconds)

    @classmethod
    def make(cls, rng: random.Random, n_stops: int, cfg: CityConfig) -> _TripDraws:
        late = rng.expovariate(1 / 60)
        driver = math.exp(rng.gauss(0, 0.05))
        noise = tuple(math.exp(rng.gauss(0, 0.15)) for _ in range(n_stops - 1))
        broke = None
        if rng.random() < cfg.breakdown_share:
            broke = (rng.randrange(n_stops - 1), rng.random(),
                     float(rng.randint(*cfg.breakdown_s)))
        return cls(late, driver, noise, broke)


@dataclass
class _Drive:
    arrive_s: list[float]
    depart_s: list[float]
    timeline: list[tuple[float, float]]
    breakdown: tuple[float, float, float] | None


def _drive(p: Pattern, trip: ScheduledTrip, draws: _TripDraws, ons: Sequence[int],
           offs: Sequence[int], segs: Sequence[float], peaks: Sequence[float],
           free_mps: float, day_factor: float, wave: Callable[[float], float]) -> _Drive:
    """A trip's times along its pattern: each segment's time from the traffic when the
    bus leaves its stop; dwell from the boardings and alightings."""
    t = float(trip.times[0] or 0) + draws.late_s
    arrive, depart, tl = [], [], []
    broke = None
    for i, stop in enumerate(p.stops):
        arrive.append(t)
        tl.append((t, stop.dist_m))
        if i < len(p.stops) - 1:
            # Doors, then 2.5 s a boarding (a tap each) and 1.2 s an alighting; at the
            # first stop the bus waits for its time with its doors open.
            work = ons[i] * 2.5 + offs[i] * 1.2
            t += 0.0 if i == 0 and not ons[i] else 6.0 + work
        depart.append(t)
        tl.append((t, stop.dist_m))
        if i == len(p.stops) - 1:
            break
        length = p.stops[i + 1].dist_m - stop.dist_m
        slow = segs[i] * (1 + peaks[i] * traffic(t / 3600)) * day_factor * wave(t) * \
            draws.driver * draws.noise[i]
        run_s = max(1.0, length / free_mps * slow)
        if draws.breakdown is not None and draws.breakdown[0] == i:
            _, f, stand = draws.breakdown
            at = stop.dist_m + f * length
            tl.append((t + f * run_s, at))
            broke = (t + f * run_s, t + f * run_s + stand, at)
            tl.append((broke[1], at))
            t += stand
        t += run_s
    return _Drive(arrive, depart, tl, broke)


def _riders(city: City, n: int, rng: random.Random) -> dict[str, list[_Rider]]:
    """Every ride of day `n`, by pattern: arrivals at each stop by time of day, each
    rider going a few stops; most ride back later on the other pattern of the line."""
    cfg = city.config
    out: dict[str, list[_Rider]] = {}
    card = 0
    last_s = LAST_DEPARTURE_S + 3600
    for line in city.lines:
        for p, other in (line.patterns, line.patterns[::-1]):
            n_stops = len(p.stops)
            rates = city.stop_rates[p.pattern_id]
            for i in range(n_stops - 1):
                peak = rates[i]
                if peak <= 0:
                    continue
                # Thinning: arrivals at the peak rate, kept as demand(hour) says.
                t = float(FIRST_DEPARTURE_S)
                while True:
                    t += rng.expovariate(peak / 3600)
                    if t >= last_s:
                        break
                    if rng.random() > demand(t / 3600):
                        continue
                    ride = min(n_stops - 1 - i,
                               1 + int(rng.expovariate(1 / (cfg.mean_ride_stops - 0.5))))
                    card += 1
                    cid = f"{n:02d}{card:07X}"
                    tap_out = line.tap_out and rng.random() < cfg.tap_out_riders
                    out.setdefault(p.pattern_id, []).append(
                        _Rider(cid, p.pattern_id, i, i + ride, t, tap_out))
                    # The ride home: from the stop across the road to near where
                    # they started, some hours later.
                    back_from = city.reverse_stop[p.pattern_id][i + ride]
                    back_to = city.reverse_stop[p.pattern_id][i]
                    # An errand (back within 1-3 h) or a day's work (8-10 h).
                    home = t + 3600 * (rng.uniform(1, 3) if rng.random() < cfg.errand_share
                                       else rng.uniform(8, 10))
                    if back_from is not None and back_to is not None and \
                            back_to > back_from and home < last_s and \
                            rng.random() < cfg.return_share:
                        out.setdefault(other.pattern_id, []).append(
                            _Rider(cid, other.pattern_id, back_from, back_to, home,
                                   line.tap_out and rng.random() < cfg.tap_out_riders))
    for riders in out.values():
        riders.sort(key=lambda r: r.at_s)
    return out


def _with_vehicles(route_id: str, runs: list[tuple[Run, list[_Rider]]]
                   ) -> list[tuple[Run, list[_Rider]]]:
    """The line's runs given vehicles: a bus takes the next trip it is free for (5
    minutes after arriving), else the line gets one more bus."""
    out = []
    free: list[tuple[int, str]] = []
    fleet = 0
    for run, aboard in sorted(runs, key=lambda x: x[0].start_ms):
        free.sort()
        if free and free[0][0] <= run.start_ms:
            _, vehicle = free.pop(0)
        else:
            fleet += 1
            vehicle = f"SIM-{route_id}-{fleet:03d}"
        free.append((run.end_ms + 300_000, vehicle))
        out.append((_replace_vehicle(run, vehicle), aboard))
    return out


def _replace_vehicle(run: Run, vehicle_id: str) -> Run:
    return Run(run.trip_id, vehicle_id, run.pattern_id, run.arrivals_ms,
               run.departures_ms, run.loads, run.breakdown, run.timeline)


def _taps(p: Pattern, run: Run, aboard: list[_Rider], rng: random.Random) -> list[Tap]:
    """The run's taps: an entry at each boarding (during the dwell, one after another),
    an exit at each alighting of a rider who taps out."""
    out = []
    ons: dict[int, int] = {}
    offs: dict[int, int] = {}
    for r in aboard:
        k = ons[r.board] = ons.get(r.board, 0) + 1
        s = p.stops[r.board]
        out.append(Tap(r.card, run.vehicle_id, run.trip_id, p.pattern_id,
                       run.arrivals_ms[r.board] + 3000 + 2500 * k,
                       s.lat_e6 + rng.randint(-30, 30), s.lon_e6 + rng.randint(-30, 30),
                       s.dist_m, "entry"))
        if r.taps_out:
            k = offs[r.alight] = offs.get(r.alight, 0) + 1
            s = p.stops[r.alight]
            out.append(Tap(r.card, run.vehicle_id, run.trip_id, p.pattern_id,
                           run.arrivals_ms[r.alight] + 2000 + 1200 * k,
                           s.lat_e6 + rng.randint(-30, 30), s.lon_e6 + rng.randint(-30, 30),
                           s.dist_m, "exit"))
    return out
