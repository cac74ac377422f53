"""Route to operator lookup, so that fares credit the right operator's revenue account."""

from __future__ import annotations

import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ledger.domain import UNASSIGNED_OPERATOR
from tracking.adapters.models import Route


class RouteDirectory:
    """Cached `route_id -> agency_id`; a route not in the GTFS data is `unassigned`."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 30.0) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._map: dict[str, str] = {}
        self._loaded = -1e9
        self._lock = threading.Lock()

    def operator(self, route_id: str, refresh: bool = True) -> str:
        """The operator of a route; with refresh=False the cache is used as it is."""
        if refresh:
            self.refresh_if_stale()
        return self._map.get(route_id) or UNASSIGNED_OPERATOR

    def refresh_if_stale(self) -> None:
        """Reload the routes if the cache is older than its time to live."""
        now = time.monotonic()
        if now - self._loaded > self.ttl_s:
            with self.sessions() as session:
                rows = session.execute(select(Route.route_id, Route.agency_id)).all()
            with self._lock:
                self._map = dict(rows)
                self._loaded = now
