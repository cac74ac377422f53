"""The schedule read from the imported feed (`tracking.schedule.build_schedule`), cached
and read again a while after a `transit gtfs import`."""

from __future__ import annotations

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
    """The schedule, read again every `ttl_s` seconds; callers share one instance."""

    def __init__(self, sessions: Sessions, ttl_s: float = TTL_S) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._schedule: Schedule | None = None
        self._loaded = -1e18
        self._lock = threading.Lock()

    def __call__(self) -> Schedule:
        with self._lock:
            if self._schedule is None or time.monotonic() - self._loaded > self.ttl_s:
                with self.sessions() as session:
                    self._schedule = read_schedule(session)
                self._loaded = time.monotonic()
            return self._schedule
