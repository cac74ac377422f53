"""The schedule read from the imported feed (`tracking.schedule.build_schedule`), cached
and read again a while after a `transit gtfs import`."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import (
    Agency,
    CalendarEntry,
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

# Building the Transjakarta schedule (574 trips, 86,000 shape points) takes about a
# second; the network changes once per import.
TTL_S = 300.0
EMPTY_TTL_S = 1.0  # before the first import: the network is seen a second after it

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


class ScheduleSource:
    """The schedule, read again every `ttl_s` seconds; callers share one instance.

    Only the first call waits for the read: later ones are read in the background
    while the schedule in hand is still returned, so the position ingest calling this
    per batch never stalls for the second or so a read of a large feed takes. An empty
    schedule (before the first import) is read again, at once, when asked for more than
    `empty_ttl_s` after it was read.
    """

    def __init__(self, sessions: Sessions, ttl_s: float = TTL_S,
                 empty_ttl_s: float = EMPTY_TTL_S) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.empty_ttl_s = empty_ttl_s
        self._schedule: Schedule | None = None
        self._loaded = -1e18
        self._lock = threading.Lock()
        self._reading = False

    def __call__(self) -> Schedule:
        with self._lock:
            age = time.monotonic() - self._loaded
            if self._schedule is None or (not self._schedule.patterns
                                          and age > self.empty_ttl_s):
                # Nothing to serve meanwhile: read now (an empty network in
                # milliseconds; the first read after an import in about a second).
                self._schedule = self._read()
                self._loaded = time.monotonic()
                return self._schedule
            if not self._reading and age > self.ttl_s:
                self._reading = True
                threading.Thread(target=self._refresh, name="schedule-read",
                                 daemon=True).start()
            return self._schedule

    def _read(self) -> Schedule:
        with self.sessions() as session:
            return read_schedule(session)

    def _refresh(self) -> None:
        try:
            schedule = self._read()
        except Exception:  # the database away: the schedule in hand serves on
            log.exception("schedule not read again; the one in hand is kept")
            schedule = None
        with self._lock:
            if schedule is not None:
                self._schedule = schedule
            self._loaded = time.monotonic()
            self._reading = False
