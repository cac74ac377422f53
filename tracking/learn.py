"""What the buses did, learned from their recorded tracks: the time each took between
two consecutive stops of a pattern, per hour of the local day, one service day at a time.

`passages` and `SegmentStats` are pure: a vehicle's track along one pattern becomes the
times it left each stop, and consecutive passages become segment times, summed per
(pattern, segment, hour, day) with outliers left out. `learn_day` is the adapter: it
reads one service day of `vehicle_positions` (in vehicle and time order, streamed),
and writes the day's `SegmentDay` rows and its `LearnedDay` row in one transaction.
`tracking.predict.LearnedTimes` reads the last days' rows back. `Learner` is the
gateway's: it runs `transit predictions learn` hourly in a child process.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import LearnedDay, SegmentDay, vehicle_positions
from tracking.predict import LEARNED_DAYS
from tracking.schedule import Pattern, Schedule

log = logging.getLogger(__name__)

# A stop is passed once the vehicle is this far beyond it: a bus standing at the stop
# reads a few metres either side of it (GPS), so the crossing of the stop itself would
# date its arrival, and 20 m beyond it dates its departure (~4 s later at 5 m/s, the
# same for every stop, so segment times are not biased by it).
LEFT_M = 20.0
# Between two positions further apart than this, no passage is made up: a bus may have
# stood anywhere in the gap (a tunnel, a device restarting).
GAP_MS = 180_000
# Distance going back by this much or less is GPS jitter: the vehicle is taken to stand.
# Further back, it started the pattern again (a second run on the same trip id, as a
# pattern feed's trips are run all day).
RESTART_M = 500.0
OFF_SHAPE_M = 200.0  # a position further from the pattern's shape is not on it
NEAR_WINDOW_M = 500.0
# A segment time beyond 5 times the median of its segment that day (a breakdown, a bus
# parked at a stop), or under a fifth of it (a jump of GPS), is left out of the sums.
OUTLIER_FACTOR = 5.0
MIN_SEGMENT_MS = 1_000


Point = tuple[int, int]  # (ts_ms, dist_m)


def passages(pattern: Pattern, points: Sequence[Point]) -> list[tuple[int, int]]:
    """When a vehicle passed each stop of `pattern`, from its track along it.

    `points` are (ts_ms, dist_m along the pattern's shape), oldest first. Returns
    (stop index, ts_ms) in time order: the instant it was `LEFT_M` beyond the stop,
    interpolated between the two positions around it, so a stop it stood at is dated
    when it left (the terminal, which it cannot leave along the pattern, when it
    arrived). Jitter (distance going back a little, a lone position ahead) is
    smoothed; a gap over `GAP_MS` makes no passage; distance falling back more than
    `RESTART_M` starts the pattern over (its stops may be passed again).
    """
    out: list[tuple[int, int]] = []
    if len(points) < 2 or not pattern.stops:
        return out
    smooth = _clipped([d for _ts, d in points])
    # The last stop (the terminal) is where the shape ends: a bus never gets beyond it,
    # so it is passed on arriving, as is any stop within LEFT_M of the end.
    end = pattern.length_m - LEFT_M
    marks = [min(s.dist_m + LEFT_M, max(end, s.dist_m - LEFT_M)) for s in pattern.stops]
    reach = smooth[0]
    prev_ts, prev_d = points[0][0], reach
    nxt = _first_beyond(marks, reach)
    for (ts, _raw), d in zip(points[1:], smooth[1:], strict=True):
        if d < reach - RESTART_M:  # a new run from (near) the start
            reach = d
            prev_ts, prev_d = ts, d
            nxt = _first_beyond(marks, reach)
            continue
        if d <= reach:  # standing, or jitter backwards: time passes at the same place
            prev_ts = ts
            continue
        if ts - prev_ts > GAP_MS:
            nxt = _first_beyond(marks, d)
        else:
            while nxt < len(marks) and marks[nxt] <= d:
                f = (marks[nxt] - prev_d) / (d - prev_d)
                out.append((nxt, int(round(prev_ts + f * (ts - prev_ts)))))
                nxt += 1
        reach = d
        prev_ts, prev_d = ts, d
    return out


def _first_beyond(marks: Sequence[float], d: float) -> int:
    """The first stop whose mark lies beyond `d` (the next one to be passed)."""
    i = 0
    while i < len(marks) and marks[i] <= d:
        i += 1
    return i


def _clipped(values: Sequence[float]) -> list[float]:
    """Each value no further than the further of its two neighbours (ends kept): one
    position thrown ahead by GPS no longer passes the stops before the bus does, and a
    run starting again from the terminal is not smoothed away."""
    out = list(values)
    for i in range(1, len(values) - 1):
        out[i] = min(values[i], max(values[i - 1], values[i + 1]))
    return out


@dataclass(frozen=True)
class SegmentRow:
    """One `SegmentDay` row: a segment's sums in one hour of one day."""

    pattern_id: str
    from_index: int
    hour: int
    day: str
    n: int
    sum_ms: int
    sumsq_s: int


@dataclass
class SegmentStats:
    """Segment times (from one stop to the next) gathered by (pattern, from_index,
    local hour, day), summed into `SegmentDay` rows by `rows`.

    Outliers are left out when the sums are made: a time over `OUTLIER_FACTOR` times
    the median of the same segment on the same day (all hours; the median of a cell of
    a few times would be the outlier itself), or under its fifth. A bus that broke down
    between two stops for half an hour then changes no mean; `dropped` counts them.
    """

    samples: dict[tuple[str, int, int, str], list[int]] = field(default_factory=dict)
    dropped: int = 0

    def add(self, pattern_id: str, from_index: int, hour: int, day: str, ms: int) -> None:
        """Note one segment time (ms) starting in local `hour` of `day` (YYYY-MM-DD)."""
        if ms >= MIN_SEGMENT_MS:
            self.samples.setdefault((pattern_id, from_index, hour, day), []).append(ms)

    def add_passages(self, pattern_id: str, passed: Iterable[tuple[int, int]], day: str,
                     hour_of: Callable[[int], int]) -> int:
        """Note the segment times between consecutive passages (stop i, then i + 1);
        the hour is `hour_of` the first's time. Returns how many were noted."""
        noted = 0
        prev: tuple[int, int] | None = None
        for index, ts in passed:
            if prev is not None and index == prev[0] + 1 and ts > prev[1]:
                self.add(pattern_id, prev[0], hour_of(prev[1]), day, ts - prev[1])
                noted += 1
            prev = (index, ts)
        return noted

    def rows(self) -> list[SegmentRow]:
        """The sums per cell, outliers left out (and counted in `dropped`)."""
        by_segment: dict[tuple[str, int, str], list[int]] = {}
        for (pattern_id, index, _hour, day), times in self.samples.items():
            by_segment.setdefault((pattern_id, index, day), []).extend(times)
        medians = {k: statistics.median(v) for k, v in by_segment.items()}
        out: list[SegmentRow] = []
        self.dropped = 0
        for (pattern_id, index, hour, day), times in sorted(self.samples.items()):
            median = medians[(pattern_id, index, day)]
            kept = [t for t in times
                    if median / OUTLIER_FACTOR <= t <= median * OUTLIER_FACTOR]
            self.dropped += len(times) - len(kept)
            if kept:
                out.append(SegmentRow(pattern_id, index, hour, day, len(kept), sum(kept),
                                      sum(round((t / 1000) ** 2) for t in kept)))
        return out


# -- the adapter -------------------------------------------------------------------------

@dataclass(frozen=True)
class Learned:
    """What learning one day made: passages read, segment rows written, outliers."""

    day: str
    passages: int
    segments: int
    rows: int
    dropped: int
    seconds: float

    def describe(self) -> str:
        """One line for an operator."""
        return (f"{self.day}: {self.passages:,} stop passages, {self.segments:,} segment "
                f"times in {self.rows:,} rows ({self.dropped:,} outliers left out) in "
                f"{self.seconds:.1f}s")


def _runs(rows: Iterable[tuple[str, int, str | None, int, int]]
          ) -> Iterator[tuple[str, list[tuple[int, int, int]]]]:
    """Consecutive positions of one vehicle on one trip: (trip_id, [(ts, lat, lon)])."""
    key: tuple[str, str | None] | None = None
    run: list[tuple[int, int, int]] = []
    for vehicle_id, ts, trip_id, lat, lon in rows:
        if (vehicle_id, trip_id) != key:
            if key is not None and key[1] is not None and run:
                yield key[1], run
            key, run = (vehicle_id, trip_id), []
        run.append((ts, lat, lon))
    if key is not None and key[1] is not None and run:
        yield key[1], run


def along(pattern: Pattern, run: Sequence[tuple[int, int, int]]) -> list[Point]:
    """A run's positions as (ts, dist_m) along the pattern, those off its shape left out."""
    out: list[Point] = []
    near: float | None = None
    for ts, lat, lon in run:
        # A bus moves a few hundred metres between positions at most: searching 500 m
        # either side of the last reads a day's track 3 times faster than the default
        # 2 km (measured on the Transjakarta shapes).
        where = pattern.shape.locate(lat, lon, near_m=near, window_m=NEAR_WINDOW_M)
        if where.offset_m > OFF_SHAPE_M and near is not None:
            # Maybe far from where it was (a gap): look along the whole shape again.
            where = pattern.shape.locate(lat, lon)
        if where.offset_m > OFF_SHAPE_M:
            continue
        near = where.dist_m
        out.append((ts, int(where.dist_m)))
    return out


def day_label(day: date) -> str:
    return day.isoformat()


def learn_positions(schedule: Schedule, day: date,
                    rows: Iterable[tuple[str, int, str | None, int, int]]
                    ) -> tuple[SegmentStats, int]:
    """The segment stats of one service day's positions, (vehicle, ts, trip, lat, lon)
    in vehicle and time order; and how many passages they made."""
    stats = SegmentStats()
    label = day_label(day)
    count = 0
    for trip_id, run in _runs(rows):
        trip = schedule.trips.get(trip_id)
        pattern = schedule.patterns.get(trip.pattern_id) if trip is not None else None
        if pattern is None:
            continue
        passed = passages(pattern, along(pattern, run))
        count += len(passed)
        stats.add_passages(pattern.pattern_id, passed, label, schedule.local_hour)
    return stats, count


ADVISORY_KEY = 0x7472_6970  # "trip": the learners of every gateway take this one lock


# Days kept in segment_days and learned_days: what predictions read (LEARNED_DAYS back
# from today), and two more for a clock a little off or a day's edge. Older rows are
# removed as each day is learned: ~210 k rows a day on Transjakarta would otherwise
# grow to ~77 M a year that nothing reads.
KEEP_DAYS = LEARNED_DAYS + 2


def learn_day(sessions: Sessions, schedule: Schedule, day: date,
              clock: Callable[[], float] = time.time,
              prune_before: date | None = None) -> Learned | None:
    """Learn one service day from `vehicle_positions`: its SegmentDay rows replaced and
    its LearnedDay row written (and, given `prune_before`, the rows of the days before
    it removed). None when another process holds the learner's lock (PostgreSQL): it
    is learning.

    The day's positions are read in a transaction that only reads, and the rows written
    in a short one after: on SQLite a write transaction held while a day of tracks is
    read (minutes for a big fleet) would stop every tap and position meanwhile.
    """
    started = time.perf_counter()
    start_ms = schedule.day_start_ms(day)
    end_ms = schedule.day_start_ms(day + timedelta(days=1))
    label = day_label(day)
    with sessions() as reading:
        reading.connection(execution_options=READS_ONLY)
        if not _lock(reading):
            return None
        try:
            stats, count = learn_positions(schedule, day,
                                           _positions(reading, start_ms, end_ms))
            rows = stats.rows()
            with sessions.begin() as session:
                session.execute(delete(SegmentDay).where(SegmentDay.day == label))
                session.add_all(SegmentDay(pattern_id=r.pattern_id, from_index=r.from_index,
                                           hour=r.hour, day=r.day, n=r.n, sum_ms=r.sum_ms,
                                           sumsq_s=r.sumsq_s) for r in rows)
                session.merge(LearnedDay(day=label, learned_ms=int(clock() * 1000),
                                         passages=count))
                if prune_before is not None:
                    oldest = day_label(prune_before)
                    session.execute(delete(SegmentDay).where(SegmentDay.day < oldest))
                    session.execute(delete(LearnedDay).where(LearnedDay.day < oldest))
        finally:
            _unlock(reading)
    return Learned(label, count, sum(r.n for r in rows), len(rows), stats.dropped,
                   time.perf_counter() - started)


def _lock(session: Session) -> bool:
    """Take the learner's lock (PostgreSQL, held by this session's connection until
    `_unlock`). SQLite has none: two learners there at once would only write the same
    rows twice, each day replaced whole."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                {"k": ADVISORY_KEY}).scalar())


def _unlock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})


STREAM_ROWS = 5_000  # fetched at a time: a day of a big fleet is millions of positions


def _positions(session: Session, start_ms: int, end_ms: int
               ) -> Iterator[tuple[str, int, str | None, int, int]]:
    p = vehicle_positions.c
    query = (select(p.vehicle_id, p.ts, p.trip_id, p.lat_e6, p.lon_e6)
             .where(p.ts >= start_ms, p.ts < end_ms)
             .order_by(p.vehicle_id, p.ts))
    for row in session.execute(query, execution_options={"yield_per": STREAM_ROWS}):
        yield row[0], row[1], row[2], row[3], row[4]


def closed_days(schedule: Schedule, now_ms: int, days: int) -> list[date]:
    """The last `days` service days that have ended by `now_ms`, oldest first. A day
    ends when the next one starts, plus an hour for trips past midnight (after 24:00)."""
    today = datetime.fromtimestamp(now_ms / 1000, schedule.zone).date()
    out = []
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        if schedule.day_start_ms(day + timedelta(days=1)) + 3_600_000 <= now_ms:
            out.append(day)
    return out[-days:] if days else []


def learned_days(sessions: Sessions) -> set[str]:
    """The days learned already."""
    with sessions() as session:
        session.connection(execution_options=READS_ONLY)
        return set(session.scalars(select(LearnedDay.day)))


class LearnerBusy(Exception):
    """Another process holds the learner's lock (PostgreSQL): it learns the days.
    `learned` are the days this one learned before it found the lock taken."""

    def __init__(self, learned: list[Learned]) -> None:
        super().__init__("another process is learning")
        self.learned = learned


def pending_days(schedule: Schedule, now_ms: int, days: int, done: set[str],
                 most: int | None = None) -> list[date]:
    """The days to learn, oldest first: the last `days` closed days not in `done`, none
    older than what is kept (`KEEP_DAYS`: it would be removed at once), only the newest
    `most` of them when given (the days that predictions weigh first)."""
    today = datetime.fromtimestamp(now_ms / 1000, schedule.zone).date()
    oldest = today - timedelta(days=KEEP_DAYS)
    out = [d for d in closed_days(schedule, now_ms, days)
           if d >= oldest and day_label(d) not in done]
    return out[-most:] if most is not None and most > 0 else out


def learn_pending(sessions: Sessions, schedule: Schedule, now_ms: int, days: int = 7,
                  clock: Callable[[], float] = time.time,
                  stopping: Callable[[], bool] = lambda: False,
                  most: int | None = None) -> list[Learned]:
    """Learn the `pending_days` (at most `most`), oldest first, until `stopping` says
    so; the rows older than `KEEP_DAYS` are removed as each is learned. Nothing without
    a schedule: the tracks are kept until one is imported. Raises `LearnerBusy` when
    another process holds the lock."""
    if not schedule.patterns:
        return []
    today = datetime.fromtimestamp(now_ms / 1000, schedule.zone).date()
    out: list[Learned] = []
    for day in pending_days(schedule, now_ms, days, learned_days(sessions), most):
        if stopping():
            break  # the gateway stops: the rest is learned when it is back
        learned = learn_day(sessions, schedule, day, clock,
                            prune_before=today - timedelta(days=KEEP_DAYS))
        if learned is None:
            raise LearnerBusy(out)  # it learns the rest too
        out.append(learned)
    return out


# The gateway's learner learns at most this many days a run (hourly): a day of a big
# fleet is ~30-36 min of one core (4,300 buses, 74 M positions at 34-43 k a second), so
# a fresh deploy with a week of tracks catches up over a few hours, newest day first,
# rather than spending hours back to back on it.
DAYS_PER_RUN = 1


def learn_command(days: int = 7, most: int = DAYS_PER_RUN) -> list[str]:
    """`transit predictions learn` as this interpreter runs it."""
    return [sys.executable, "-m", "transit", "predictions", "learn", "--days", str(days),
            "--most", str(most)]


class Learner:
    """The gateway's learner: at start and then hourly, runs `command` (`transit
    predictions learn`) in a child process with the gateway's environment, one at a
    time, and logs what it says. A child rather than a thread: learning a day is pure
    Python for half an hour at fleet scale, and on a thread it would hold the GIL
    against the taps and positions the gateway takes meanwhile."""

    def __init__(self, command: Sequence[str] | None = None, every_s: float = 3600.0,
                 env: dict[str, str] | None = None) -> None:
        self.command = list(command) if command is not None else learn_command()
        self.every_s = every_s
        self.env = env
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the rounds on a thread of its own."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="learner", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the child (a day half learned is not written: its transaction is not
        committed, and PostgreSQL frees the lock with the connection) and the rounds."""
        self._stop.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    def run_once(self) -> int | None:
        """Run the command once and log its lines; its exit status (None: not run)."""
        with self._lock:
            if self._stop.is_set():
                return None
            try:
                self._child = subprocess.Popen(
                    self.command, env=self.env,  # None: the gateway's own environment
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
            except OSError as exc:
                log.warning("learner: cannot run %s: %s", self.command[0], exc)
                return None
            child = self._child
        out, err = child.communicate()
        with self._lock:
            self._child = None
        for line in out.splitlines():
            log.info("learner: %s", line)
        if child.returncode != 0 and not self._stop.is_set():
            said = err.strip().splitlines()
            log.warning("learner: exit status %d: %s", child.returncode,
                        said[-1] if said else "(nothing said)")
        return child.returncode

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.every_s)


class SegmentDays:
    """The SegmentDay rows of the days from a date on, summed over those days per
    (pattern, segment, hour) by the database (`tracking.predict.LearnedSource` reads
    them; each row's `day` is `since`). Summed there: two weeks of the Transjakarta
    network are ~3 million rows (11,698 segments, 18 hours, 14 days), and a million
    rows read one by one took 12.4 s against 0.36 s summed (SQLite, measured)."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def __call__(self, since: str) -> list[SegmentRow]:
        s = SegmentDay
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            rows = session.execute(
                select(s.pattern_id, s.from_index, s.hour, func.sum(s.n),
                       func.sum(s.sum_ms), func.sum(s.sumsq_s))
                .where(s.day >= since).group_by(s.pattern_id, s.from_index, s.hour))
            # PostgreSQL sums a bigint as numeric: back to int.
            return [SegmentRow(pattern_id, index, hour, since, int(n), int(sum_ms),
                               int(sumsq))
                    for pattern_id, index, hour, n, sum_ms, sumsq in rows]
