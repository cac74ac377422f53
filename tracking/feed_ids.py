"""What the GTFS-Realtime feeds may name: the ids of the imported network, read again a
few seconds after a `transit gtfs import` at most."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import Route, Stop, Trip
from tracking.realtime import StaticIds

# The public feed is fetched every few seconds by each consumer; the network changes
# once per import. Reading its ~8,000 ids (the Transjakarta feed) costs a few ms.
TTL_S = 30.0


class FeedIds:
    """The network's route, trip and stop ids, cached for `ttl_s` seconds."""

    def __init__(self, sessions: Sessions, ttl_s: float = TTL_S) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._ids = StaticIds()
        self._loaded = -1e18
        self._lock = threading.Lock()

    def __call__(self) -> StaticIds:
        with self._lock:
            if time.monotonic() - self._loaded > self.ttl_s:
                self._ids = self._read()
                self._loaded = time.monotonic()
            return self._ids

    def _read(self) -> StaticIds:
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
            trips: dict[tuple[str, str], str] = {}
            directions: dict[tuple[str, str], set[int | None]] = {}
            for trip_id, route_id, direction in session.execute(
                    select(Trip.trip_id, Trip.route_id, Trip.direction_id)):
                # A trip id the feed gives several trips is kept as `ID@n`, one per trip
                # (tracking.gtfs); the static feed's consumers know it as `ID`.
                original = trip_id.split("@", 1)[0]
                trips[trip_id, route_id] = trips[original, route_id] = original
                directions.setdefault((original, route_id), set()).add(direction)
            return StaticIds(
                routes=frozenset(session.scalars(select(Route.route_id))), trips=trips,
                stops=frozenset(session.scalars(select(Stop.stop_id))),
                directions={k: d for k, v in directions.items() if len(v) == 1
                            for d in v if d is not None})
