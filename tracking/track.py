"""The vehicles' tracks on disk: every accepted position, kept TRANSIT_TRACK_DAYS days."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from ledger.adapters.db import Sessions
from tracking.store import VehicleRecord


class TrackWriter:
    """Writes accepted positions to `vehicle_positions` in batches, on a thread of its own."""

    def __init__(self, sessions: Sessions, registry: CollectorRegistry,
                 keep_days: int = 30) -> None:
        self.sessions = sessions
        self.keep_days = keep_days

    def start(self) -> None:
        """Start writing."""

    def stop(self) -> None:
        """Write what is held, then stop."""

    def append(self, records: Sequence[VehicleRecord]) -> None:
        """Take accepted positions to be written."""
