"""The schedule read from the imported feed (`tracking.schedule.build_schedule`), cached,
and read again soon after a `transit gtfs import`, only then.

Reading the Transjakarta schedule costs about 2.8 s of CPU (574 trips, 86,000 shape
points), under the interpreter lock the tap path and the position ingest need; read
again every 5 minutes it was 14 % of a loaded gateway's samples, and each new object
made trip assignment start a new matcher, forgetting which vehicle held which timed
trip. Now a gateway asks the import's stamp (`gtfs_feed`, one row) every `CHECK_S`
seconds and reads the schedule again only when the stamp changed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import (
    Agency,
    CalendarEntry,
    GtfsFeed,
    ServiceDate,
    ShapePoint,
    Stop,
    Trip,
    TripFrequency,
    TripStop,
)
from tracking.schedule import (
    DEFAULT_TIMEZONE,
    Frequency,
    Schedule,
    ServiceCalendar,
    StopRow,
    TripRow,
    build_schedule,
)

# One primary-key read of one row (~0.3 ms on PostgreSQL, off the callers' threads):
# every 2 s, an import is served within about 2 s plus its reading.
CHECK_S = 2.0

log = logging.getLogger(__name__)


def read_schedule(session: Session) -> Schedule:
    """The schedule of the feed imported in this database."""
    session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
    stops = {s.stop_id: StopRow(s.stop_id, s.name, s.lat_e6, s.lon_e6)
             for s in session.scalars(select(Stop))}
    shapes: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for shape_id, lat, lon in session.execute(
            select(ShapePoint.shape_id, ShapePoint.lat_e6, ShapePoint.lon_e6)
            .order_by(ShapePoint.shape_id, ShapePoint.seq)):
        shapes[shape_id].append((lat, lon))
    stop_times: dict[str, list[tuple[int, str, int | None]]] = defaultdict(list)
    for trip_id, seq, stop_id, arrival, departure in session.execute(
            select(TripStop.trip_id, TripStop.seq, TripStop.stop_id, TripStop.arrival_s,
                   TripStop.departure_s).order_by(TripStop.trip_id, TripStop.seq)):
        stop_times[trip_id].append((seq, stop_id, arrival if arrival is not None
                                    else departure))
    trips = [TripRow(t.trip_id, t.route_id, t.service_id, t.direction_id, t.headsign,
                     t.shape_id) for t in session.scalars(select(Trip))]
    frequencies: dict[str, list[Frequency]] = defaultdict(list)
    for f in session.scalars(select(TripFrequency).order_by(TripFrequency.start_s)):
        frequencies[f.trip_id].append(Frequency(f.start_s, f.end_s, f.headway_s,
                                                bool(f.exact_times)))
    calendar = ServiceCalendar(
        {c.service_id: (c.weekdays, c.start_date, c.end_date)
         for c in session.scalars(select(CalendarEntry))},
        {(d.service_id, d.date): d.exception_type
         for d in session.scalars(select(ServiceDate))})
    zone = next((z for z in session.scalars(select(Agency.timezone)) if z), "")
    return build_schedule(trips, stops, shapes, stop_times, calendar, frequencies,
                          zone or DEFAULT_TIMEZONE)


def feed_stamp(session: Session) -> str | None:
    """The stamp of the feed imported in this database (None before the first import)."""
    session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
    return session.scalars(select(GtfsFeed.import_id).limit(1)).first()


class ScheduleSource:
    """The schedule; callers share one instance and get the same object until a new
    feed is imported.

    Only the first call waits for the read. Later ones return the schedule in hand and,
    every `check_s` seconds, start a background check of the import's stamp, which reads
    the schedule again when the stamp changed: the position ingest calling this per
    batch never stalls for the seconds a read of a large feed takes. `reads` counts the
    schedules read and `checks` the stamps asked (also `transit_schedule_reads_total`
    and `transit_schedule_checks_total` with a `registry`).
    """

    def __init__(self, sessions: Sessions, check_s: float = CHECK_S,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_stamp: Callable[[str | None], None] | None = None) -> None:
        self.sessions = sessions
        self.check_s = check_s
        # Told the stamp of the schedule in hand after each read and check (what
        # `fare_gateway.ingest_workers` publishes in Redis per process).
        self.on_stamp = on_stamp
        self._watching = threading.Event()
        self.clock = clock
        self.reads = 0
        self.checks = 0
        self._counter = None if registry is None else Counter(
            "transit_schedule_reads", "Schedules read from the imported feed (at start "
            "and after each import)", registry=registry)
        self._checks = None if registry is None else Counter(
            "transit_schedule_checks", "Times the imported feed's stamp was asked "
            "(the schedule is read again only when it changed)", registry=registry)
        self._schedule: Schedule | None = None
        self._stamp: str | None = None
        self._checked = -1e18
        self._lock = threading.Lock()
        self._reading = False
        self._failing = False  # the last check could not reach the database

    def __call__(self) -> Schedule:
        with self._lock:
            if self._schedule is None:
                # Nothing to serve meanwhile: read now (an empty network in
                # milliseconds; a large feed in seconds).
                self._stamp, self._schedule = self._read()
                self._checked = self.clock()
                return self._schedule
            if not self._reading and self.clock() - self._checked >= self.check_s:
                self._reading = True
                threading.Thread(target=self._refresh, name="schedule-read",
                                 daemon=True).start()
            return self._schedule

    def watch(self) -> None:
        """Check the stamp every `check_s` from now on, called or not: a process that
        gets no positions for a while still has the new schedule when they come (the
        first read, if not done yet, is done on the watching thread)."""
        self._watching.set()
        threading.Thread(target=self._watch, name="schedule-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop the checks of `watch`."""
        self._watching.clear()

    def served(self) -> str | None:
        """The stamp of the schedule in hand (None: no feed imported, or none read)."""
        return self._stamp

    def _watch(self) -> None:
        try:
            self()
        except Exception as exc:  # the database away: the next checks try again
            log.warning("schedule not read (%s); reading it again in %g s", exc,
                        self.check_s)
        self._told()
        while self._watching.is_set():
            time.sleep(self.check_s)
            with self._lock:
                if self._reading or not self._watching.is_set():
                    continue
                self._reading = True
            self._refresh()

    def _told(self) -> None:
        if self.on_stamp is not None:
            try:
                self.on_stamp(self._stamp)
            except Exception as exc:  # Redis away: said again at the next check
                log.debug("schedule stamp not told (%s)", exc)

    def _read(self) -> tuple[str | None, Schedule]:
        with self.sessions() as session:
            # The stamp first: an import committed between the two reads is read again
            # at the next check rather than missed.
            stamp = feed_stamp(session)
        started = time.thread_time()
        with self.sessions() as session:
            schedule = read_schedule(session)
        self.reads += 1
        if self._counter is not None:
            self._counter.inc()
        log.info("schedule read (feed %s): %d patterns, %d trips, %.2f s of CPU",
                 stamp or "none", len(schedule.patterns), len(schedule.trips),
                 time.thread_time() - started)
        return stamp, schedule

    def _refresh(self) -> None:
        try:
            with self.sessions() as session:
                stamp = feed_stamp(session)
            self.checks += 1
            if self._checks is not None:
                self._checks.inc()
            found = None if stamp == self._stamp else self._read()
        except Exception as exc:  # the database away: the schedule in hand serves on
            # One line when the checks start failing (every 2 s otherwise), no
            # traceback: an outage is not a fault of the code.
            if not self._failing:
                log.warning("the imported feed not checked (%s: %s); the schedule in "
                            "hand is kept until the database answers",
                            type(exc).__name__, str(exc).splitlines()[0] if str(exc)
                            else "")
            self._failing = True
            found = None
        else:
            if self._failing:
                log.info("the imported feed is checked again")
            self._failing = False
        with self._lock:
            if found is not None:
                self._stamp, self._schedule = found
            self._checked = self.clock()
            self._reading = False
        self._told()
