"""Arrival predictions: when a vehicle on a pattern will reach each stop ahead.

`TravelTimes` is what a prediction (and a headway in seconds) asks: how long a vehicle
takes from one point of a pattern to another, starting at a time of day.
`ConstantSpeed` answers with one speed for the whole route: the baseline the learned
times are measured against (bench/predictions.py). `LearnedTimes` answers with what the
buses did (`tracking.learn`): per segment between two stops and hour of the day.

`predict_arrivals` turns a vehicle's place on its pattern into the instant it reaches
each stop ahead, scaled by its own recent pace (`recent_pace`, long standing left out);
`arrival_departure` puts the arrival a dwell before it leaves; `delays_s` compares them
with a timed trip's schedule. All pure: the benchmark calls them directly.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tracking.schedule import DEFAULT_TIMEZONE, Pattern, Schedule, ScheduledTrip

log = logging.getLogger(__name__)

DEFAULT_SPEED_MPS = 5.5  # ~20 km/h: a city bus's mean speed, stops included


class TravelTimes(Protocol):
    """Seconds to travel a pattern from `from_m` to `to_m` (metres along its shape),
    leaving at `at_ms`."""

    def seconds(self, pattern: Pattern, from_m: float, to_m: float, at_ms: int) -> float:
        ...


class ConstantSpeed:
    """Travel at one speed per route (its mean, stops included), or a default."""

    def __init__(self, speeds_mps: dict[str, float] | None = None,
                 default_mps: float = DEFAULT_SPEED_MPS) -> None:
        self.speeds_mps = speeds_mps or {}
        self.default_mps = default_mps

    def seconds(self, pattern: Pattern, from_m: float, to_m: float, at_ms: int) -> float:
        speed = self.speeds_mps.get(pattern.route_id, self.default_mps)
        return max(0.0, to_m - from_m) / speed


# -- learned times -----------------------------------------------------------------------

# A cell (segment, hour) is believed from this many times on; fewer, its neighbouring
# hours are asked too.
MIN_N = 3
NEIGHBOUR_HOURS = 2  # how many hours either side a segment's time may be borrowed from


@dataclass(frozen=True)
class Cell:
    """A segment's times in one hour of the day, summed over the days learned."""

    n: int
    sum_ms: int

    @property
    def mean_s(self) -> float:
        return self.sum_ms / self.n / 1000


class LearnedTimes:
    """Travel times learned from the tracks (`tracking.learn`): per segment (stop to
    stop) and local hour, the mean of the last days' times.

    A segment's time at an hour is its cell's mean when it has `MIN_N` times or more;
    else the times of the hours around it (up to `NEIGHBOUR_HOURS` either side, the
    nearest first) are pooled with it; a segment never learned runs at its pattern's
    mean speed (what was learned of it), else its route's, else `fallback`'s. The part
    of a segment travelled is its time pro rata by distance; before the first stop and
    beyond the last, `fallback` answers. Build it with `from_rows` (in memory) or
    `LearnedSource` (the database).
    """

    def __init__(self, cells: Mapping[tuple[str, int, int], Cell],
                 patterns: Mapping[str, Pattern] | None = None,
                 fallback: TravelTimes | None = None,
                 timezone: str = DEFAULT_TIMEZONE) -> None:
        self.cells = cells
        self.fallback: TravelTimes = fallback or ConstantSpeed()
        try:
            self.zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            self.zone = ZoneInfo(DEFAULT_TIMEZONE)
        self._pattern_mps: dict[str, float] = {}
        self._route_mps: dict[str, float] = {}
        self._speeds(patterns or {})

    @classmethod
    def from_rows(cls, rows: Iterable[Any], patterns: Mapping[str, Pattern] | None = None,
                  fallback: TravelTimes | None = None,
                  timezone: str = DEFAULT_TIMEZONE) -> LearnedTimes:
        """From SegmentDay-like rows (pattern_id, from_index, hour, n, sum_ms), summed
        over their days."""
        sums: dict[tuple[str, int, int], list[int]] = {}
        for r in rows:
            cell = sums.setdefault((r.pattern_id, r.from_index, r.hour), [0, 0])
            cell[0] += r.n
            cell[1] += r.sum_ms
        return cls({k: Cell(n, s) for k, (n, s) in sums.items() if n > 0}, patterns,
                   fallback, timezone)

    def _speeds(self, patterns: Mapping[str, Pattern]) -> None:
        """Each pattern's and route's mean speed over what was learned of them."""
        metres: dict[str, float] = {}
        secs: dict[str, float] = {}
        for (pattern_id, index, _hour), cell in self.cells.items():
            pattern = patterns.get(pattern_id)
            if pattern is None or index + 1 >= len(pattern.stops):
                continue
            length = pattern.stops[index + 1].dist_m - pattern.stops[index].dist_m
            for key in (f"p:{pattern_id}", f"r:{pattern.route_id}"):
                metres[key] = metres.get(key, 0.0) + length * cell.n
                secs[key] = secs.get(key, 0.0) + cell.sum_ms / 1000
        for key, m in metres.items():
            if secs[key] > 0 and m > 0:
                target = self._pattern_mps if key.startswith("p:") else self._route_mps
                target[key[2:]] = m / secs[key]

    def hour(self, at_ms: float) -> int:
        """The local hour at `at_ms`."""
        return datetime.fromtimestamp(at_ms / 1000, self.zone).hour

    def segment_s(self, pattern: Pattern, index: int, hour: int) -> float | None:
        """The learned seconds of segment `index` (stop index to index + 1) leaving in
        `hour`; None when neither it nor its neighbouring hours were learned."""
        pid = pattern.pattern_id
        n, total = 0, 0
        for step in range(NEIGHBOUR_HOURS + 1):
            for h in {(hour - step) % 24, (hour + step) % 24}:
                cell = self.cells.get((pid, index, h))
                if cell is not None:
                    n += cell.n
                    total += cell.sum_ms
            if n >= MIN_N:
                break
        return total / n / 1000 if n else None

    def _speed_s(self, pattern: Pattern, from_m: float, to_m: float, at_ms: float
                 ) -> float:
        mps = self._pattern_mps.get(pattern.pattern_id) or self._route_mps.get(
            pattern.route_id)
        if mps:
            return max(0.0, to_m - from_m) / mps
        return self.fallback.seconds(pattern, from_m, to_m, int(at_ms))

    def seconds(self, pattern: Pattern, from_m: float, to_m: float, at_ms: int) -> float:
        """Seconds from `from_m` to `to_m` along `pattern`, leaving at `at_ms`: the
        segments' learned times at the hours the vehicle reaches them."""
        if to_m <= from_m:
            return 0.0
        stops = pattern.stops
        clock = float(at_ms)
        total = 0.0
        at = from_m
        if not stops or at < stops[0].dist_m:
            end = min(to_m, stops[0].dist_m) if stops else to_m
            total += self.fallback.seconds(pattern, at, end, int(clock))
            at = end
        index = max(0, pattern.stop_index_after(at) - 1)
        while at < to_m and index + 1 < len(stops):
            a, b = stops[index].dist_m, stops[index + 1].dist_m
            end = min(to_m, b)
            if b > a and end > at:
                learned = self.segment_s(pattern, index, self.hour(clock))
                part = (learned * (end - at) / (b - a) if learned is not None
                        else self._speed_s(pattern, at, end, clock))
                total += part
                clock += part * 1000
            at = max(at, end)
            index += 1
        if at < to_m:  # beyond the last stop
            total += self.fallback.seconds(pattern, at, to_m, int(clock))
        return total


# -- the vehicle's own pace --------------------------------------------------------------

PACE_WINDOW_MS = 10 * 60_000  # its progress over the last 10 minutes ...
PACE_MIN_M = 300.0  # ... over at least this far, else its pace is not known (1.0)
PACE_MIN_MS = 60_000
PACE_RANGE = (0.6, 1.8)  # what one vehicle's recent pace may say of its next stops
PACE_DECAY_S = 900.0  # how fast that pace fades towards the usual with the horizon
# Standing this long within STAND_M of one place is not the traffic the pace measures
# but a breakdown, a layover, a bus held: left out of the pace (a stop's dwell, 6-60 s,
# stays in). Kept in, a 10-20 minute breakdown held the pace at its 1.8 clamp for the
# 10 minutes after the bus moved again: in bench/predictions.py, around breakdowns, the
# median error at 5-10 min ahead was 151 s; 77 s with stands of 2 min left out (87 s
# without any pace). 1.5 min did 3 s better, 3 min 5 s worse; 2 min keeps a long red
# light, which the simulation has not, in the pace.
STAND_M = 30.0  # GPS noise is ~4 m; a bus creeping in a queue moves more than this
STAND_MS = 120_000


def parse_progress(progress: str) -> list[tuple[int, int]]:
    """A VehicleRecord's `progress` ("ts:dist_m" pairs, newest last) as (ts, dist_m)."""
    out = []
    for pair in progress.replace(",", " ").split():
        ts, _, dist = pair.partition(":")
        try:
            out.append((int(ts), int(float(dist))))
        except ValueError:
            continue
    return out


def standing(progress: Sequence[tuple[int, int]], stand_ms: int = STAND_MS
             ) -> list[tuple[int, int]]:
    """The (first, last) indexes of each run of `progress` in which the vehicle stayed
    within `STAND_M` of where the run began for `stand_ms` or longer, in order."""
    out = []
    start = 0
    for j in range(1, len(progress) + 1):
        if j == len(progress) or progress[j][1] - progress[start][1] > STAND_M:
            if progress[j - 1][0] - progress[start][0] >= stand_ms:
                out.append((start, j - 1))
            start = j
    return out


def recent_pace(pattern: Pattern, progress: Sequence[tuple[int, int]],
                times: TravelTimes, window_ms: int = PACE_WINDOW_MS) -> float:
    """How slow the vehicle ran lately against `times`: observed seconds over expected
    for its progress in the last `window_ms` (1.0: as usual, 1.5: half as slow again),
    clamped to `PACE_RANGE`; 1.0 when it moved too little or too briefly to tell.

    Long standing (`standing`: a breakdown, a layover, a bus held) is left out of both
    times: it says nothing of how fast the bus will run once it moves again.
    """
    if len(progress) < 2:
        return 1.0
    last_ts, last_d = progress[-1]
    start = next((i for i, (ts, _) in enumerate(progress) if last_ts - ts <= window_ms),
                 None)
    if start is None:
        return 1.0
    points = progress[start:]
    first_ts, first_d = points[0]
    observed_ms = last_ts - first_ts
    if last_d - first_d < PACE_MIN_M:
        return 1.0
    expected = times.seconds(pattern, first_d, last_d, first_ts)
    for i, j in standing(points):
        (ts_i, d_i), (ts_j, d_j) = points[i], points[j]
        observed_ms -= ts_j - ts_i
        expected -= times.seconds(pattern, d_i, d_j, ts_i)
    if observed_ms < PACE_MIN_MS or expected <= 0:
        return 1.0
    ratio = observed_ms / 1000 / expected
    return min(PACE_RANGE[1], max(PACE_RANGE[0], ratio))


def paced(pace: float, horizon_s: float) -> float:
    """The factor on a leg reached `horizon_s` from now: the vehicle's pace, fading
    towards 1 (what the learned times say) as the horizon grows."""
    return 1.0 + (pace - 1.0) * math.exp(-max(0.0, horizon_s) / PACE_DECAY_S)


def predict_arrivals(pattern: Pattern, dist_m: float, now_ms: int, times: TravelTimes,
                     pace: float = 1.0) -> list[tuple[int, int]]:
    """(stop index, predicted ms) for every stop of `pattern` beyond `dist_m`, in order.

    Each leg (stop to stop) takes what `times` says, leaving when the vehicle is
    predicted to reach it, times the vehicle's `pace` faded with the horizon
    (`paced`). Predictions start from `now_ms`, never from the vehicle's last position
    time: a bus that stood still for long predicts from now, never in the past. Times
    are strictly increasing, a second apart at least (the feed's times are seconds).
    """
    out: list[tuple[int, int]] = []
    clock = float(now_ms)
    at = dist_m
    last = now_ms
    for index in range(pattern.stop_index_after(dist_m), len(pattern.stops)):
        stop_m = pattern.stops[index].dist_m
        leg = times.seconds(pattern, at, stop_m, int(clock))
        clock += max(0.0, leg) * paced(pace, (clock - now_ms) / 1000) * 1000
        arrival = max(int(round(clock)), last + 1000 if out else now_ms)
        out.append((index, arrival))
        last = arrival
        clock = max(clock, arrival)
        at = stop_m
    return out


# The learned times date a passage when the bus is 20 m beyond the stop
# (`tracking.learn.LEFT_M`), after its dwell: `predict_arrivals` gives the instant the
# bus leaves each stop. A rider sees it at the stop one dwell earlier. In
# bench/predictions.py the predictions were 13 s late on average against the true
# arrival and 3 s early against the true departure; arriving 15 s before the departure
# cut the median error 0-5 min ahead from 17 s to 14 s (p90 49 s to 44 s).
DWELL_S = 15.0


def arrival_departure(predicted: Sequence[tuple[int, int]], now_ms: int,
                      dwell_s: float = DWELL_S) -> list[tuple[int, int, int]]:
    """(stop index, arrival ms, departure ms) from `predict_arrivals`' departures: the
    arrival one dwell before, never before now nor before the previous stop's departure
    (a second after it at least), so that the times never go back along the trip."""
    out: list[tuple[int, int, int]] = []
    floor = now_ms
    for index, departure in predicted:
        arrival = min(departure, max(floor, departure - int(dwell_s * 1000)))
        out.append((index, arrival, departure))
        floor = departure + 1000
    return out


def scheduled_ms(schedule: Schedule, trip: ScheduledTrip, start_date: date
                 ) -> list[int | None]:
    """A timed trip's scheduled instant at each of its pattern's stops on `start_date`
    (None where the schedule has no time, or everywhere for an untimed trip or one run
    by frequency, whose instances' times are not the template's)."""
    if not trip.timed or trip.frequencies:
        return [None] * len(trip.times)
    zero = schedule.day_start_ms(start_date)
    return [None if t is None else zero + t * 1000 for t in trip.times]


def delays_s(arrivals: Sequence[tuple[int, int]], scheduled: Sequence[int | None]
             ) -> list[int | None]:
    """Each predicted arrival's delay in seconds (predicted − scheduled; late > 0), None
    where the stop has no scheduled time."""
    out: list[int | None] = []
    for index, ms in arrivals:
        at = scheduled[index] if index < len(scheduled) else None
        out.append(None if at is None else int(round((ms - at) / 1000)))
    return out


# -- the loader --------------------------------------------------------------------------

LEARNED_DAYS = 14  # two weeks of days: each weekday's hours seen twice
LEARNED_TTL_S = 300.0  # the learner writes once a day; 5 minutes is fresh enough


class LearnedSource:
    """The learned times of the last `days` days, read again every `ttl_s` seconds;
    callers share one instance."""

    def __init__(self, read_rows: Callable[[str], Iterable[Any]],
                 schedule: Callable[[], Schedule], days: int = LEARNED_DAYS,
                 ttl_s: float = LEARNED_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.read_rows = read_rows  # rows of the days from a YYYY-MM-DD on
        self.schedule = schedule
        self.days = days
        self.ttl_s = ttl_s
        self.clock = clock
        self._times: LearnedTimes | None = None
        self._loaded = -1e18
        self._lock = threading.Lock()

    def __call__(self) -> LearnedTimes:
        """The learned times; those read last (or none: the constant speed) while the
        database cannot be read, tried again after a minute."""
        with self._lock:
            if self._times is None or time.monotonic() - self._loaded > self.ttl_s:
                try:
                    schedule = self.schedule()
                    since = (datetime.fromtimestamp(self.clock(), schedule.zone).date()
                             - timedelta(days=self.days)).isoformat()
                    self._times = LearnedTimes.from_rows(self.read_rows(since),
                                                         schedule.patterns,
                                                         timezone=schedule.timezone)
                    self._loaded = time.monotonic()
                except Exception:
                    log.warning("learned times not read; predicting from what is at hand",
                                exc_info=True)
                    self._times = self._times or LearnedTimes({})
                    self._loaded = time.monotonic() - self.ttl_s + 60
            return self._times
