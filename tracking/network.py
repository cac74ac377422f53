"""The network as tracking needs it: each route's trips with their stops, cached."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tracking.adapters.models import Stop, Trip, TripStop
from tracking.domain import Point, StopOnRoute, approx_metres, next_stop


class Network:
    """Route -> trips -> ordered stops, reloaded every few minutes."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 300.0) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._trips: dict[str, dict[str, list[StopOnRoute]]] = {}
        self._loaded = -1e9
        self._lock = threading.Lock()

    def _load(self) -> None:
        with self.sessions() as session:
            stops = {s.stop_id: StopOnRoute(s.stop_id, s.name, s.lat_e6, s.lon_e6)
                     for s in session.scalars(select(Stop))}
            trips = dict(session.execute(select(Trip.trip_id, Trip.route_id)).all())
            by_route: dict[str, dict[str, list[StopOnRoute]]] = defaultdict(dict)
            for trip_id, _seq, stop_id in session.execute(
                    select(TripStop.trip_id, TripStop.seq, TripStop.stop_id)
                    .order_by(TripStop.trip_id, TripStop.seq)).all():
                route = trips.get(trip_id)
                if route is not None and stop_id in stops:
                    by_route[route].setdefault(trip_id, []).append(stops[stop_id])
        with self._lock:
            self._trips = dict(by_route)
            self._loaded = time.monotonic()

    def trips(self, route_id: str) -> dict[str, list[StopOnRoute]]:
        if time.monotonic() - self._loaded > self.ttl_s:
            self._load()
        return self._trips.get(route_id, {})

    def next_stop(self, route_id: str, trip_id: str | None, position: Point,
                  heading: int | None) -> StopOnRoute | None:
        """The next stop on the vehicle's trip (or on the route's closest trip)."""
        trips = self.trips(route_id)
        if not trips:
            return None
        if trip_id and trip_id in trips:
            return next_stop(position, heading, trips[trip_id])
        best = min(trips.values(), key=lambda stops: min(
            approx_metres(position.lat_e6, position.lon_e6, s.lat_e6, s.lon_e6)
            for s in stops))
        return next_stop(position, heading, best)
