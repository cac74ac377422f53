"""The vehicles' tracks on disk: every accepted position, kept TRANSIT_TRACK_DAYS days.

The live map never waits for the disk: `TrackWriter.append` only puts the positions on
a bounded queue (the oldest are dropped, and counted, when it is full), and a thread of
the writer's own writes them in batches. Days are UTC days: on PostgreSQL each is a
partition of `vehicle_positions`, made before the first batch that needs it and dropped
whole by retention (`tracking.adapters.track_sql`). `TRANSIT_TRACK_DAYS=0` keeps no
track: nothing is queued, written or pruned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from ledger.adapters.db import Sessions
from tracking.store import VehicleRecord
from transit.window import DAY_MS

log = logging.getLogger(__name__)

# 100,000 positions hold a fleet of 2,000 buses (one position each 5 s) for four minutes
# of a database away, in about 60 MB; beyond that the oldest go first.
CAPACITY = 100_000
BATCH_ROWS = 10_000  # a batch is written once this many are waiting ...
FLUSH_S = 0.5  # ... or this long after the last write
MAX_BATCH = 20_000
PRUNE_EVERY_S = 3600.0
RETRY_S = 1.0  # between attempts while the database is away
STOP_WITHIN_S = 10.0  # what `stop` waits for the last positions to be written


# -- days ----------------------------------------------------------------------------------------

def day_of(ts_ms: int) -> int:
    """The UTC day (days since 1970-01-01) an instant falls in."""
    return ts_ms // DAY_MS


def day_start(day: int) -> int:
    """The first millisecond of a UTC day."""
    return day * DAY_MS


def day_label(day: int) -> str:
    """A UTC day as `YYYYMMDD`, the suffix of its partition's name."""
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y%m%d")


def day_from_label(label: str) -> int:
    """The UTC day of a `YYYYMMDD` label."""
    moment = datetime.strptime(label, "%Y%m%d").replace(tzinfo=UTC)
    return int(moment.timestamp()) // 86_400


def day_iso(day: int) -> str:
    """A UTC day as `YYYY-MM-DD`."""
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")


def oldest_kept_day(now_ms: int, keep_days: int) -> int:
    """The first day still kept: a day goes once all of it is `keep_days` days old.

    So at least `keep_days` days of positions are kept, and at most one day more: whole
    days are what a partition holds and what retention drops.
    """
    return day_of(now_ms - keep_days * DAY_MS)


# -- the table the writer writes to --------------------------------------------------------------

@dataclass(frozen=True)
class TrackPoint:
    """A position as the track keeps it."""

    ts: int
    lat_e6: int
    lon_e6: int
    speed_cms: int | None
    bearing_deg: int | None
    route_id: str
    trip_id: str | None


class TrackUnavailable(Exception):
    """The database cannot be reached: the positions in hand are kept and tried again."""


@dataclass(frozen=True)
class Pruned:
    """What retention removed: whole days (PostgreSQL's partitions), or positions."""

    before_day: int
    days: tuple[int, ...] = ()  # the partitions dropped
    positions: int | None = None  # the rows deleted, where days are not partitions

    def describe(self) -> str:
        """One line for an operator."""
        before = day_iso(self.before_day)
        if self.positions is not None:
            return f"deleted {self.positions:,} positions dated before {before}"
        if not self.days:
            return f"nothing to drop: no day of tracks before {before}"
        names = ", ".join(day_iso(d) for d in self.days)
        return (f"dropped {len(self.days)} day{'s' if len(self.days) > 1 else ''} of tracks "
                f"before {before}: {names}")


class TrackTable(Protocol):
    """Where the positions are kept (`tracking.adapters.track_sql.SqlTrack`)."""

    def prepare(self, days: Collection[int]) -> None:
        """Make ready to take positions of these days (their partitions)."""
        ...

    def write(self, records: Sequence[VehicleRecord]) -> None:
        """Write positions in one transaction; TrackUnavailable when the database is away."""
        ...

    def prune(self, before_day: int) -> Pruned:
        """Remove every position of the days before `before_day`."""
        ...


# -- the writer ----------------------------------------------------------------------------------

class TrackWriter:
    """Writes accepted positions to `vehicle_positions` in batches, on a thread of its own."""

    def __init__(self, sessions: Sessions, registry: CollectorRegistry,
                 keep_days: int = 30, *, table: TrackTable | None = None,
                 capacity: int = CAPACITY, batch_rows: int = BATCH_ROWS,
                 flush_s: float = FLUSH_S, prune_every_s: float = PRUNE_EVERY_S,
                 clock: Callable[[], float] = time.time) -> None:
        if table is None:
            from tracking.adapters.track_sql import SqlTrack

            table = SqlTrack(sessions)
        self.table = table
        self.keep_days = keep_days
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.prune_every_s = prune_every_s
        self.clock = clock
        self._queue: deque[VehicleRecord] = deque(maxlen=capacity)
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = False
        self.positions = Counter("transit_track_positions_total",
                                 "Accepted positions for the track on disk, by outcome: "
                                 "written, dropped (the queue was full, or the gateway "
                                 "stopped with the database away), expired (their day is "
                                 "past retention)", ["outcome"], registry=registry)
        for outcome in ("written", "dropped", "expired"):
            self.positions.labels(outcome)
        Gauge("transit_track_queued", "Positions waiting to be written to the track",
              registry=registry).set_function(lambda: len(self._queue))

    @property
    def enabled(self) -> bool:
        """Whether a track is kept (`TRANSIT_TRACK_DAYS` is not 0)."""
        return self.keep_days > 0

    def start(self) -> None:
        """Start writing (and pruning, now and hourly)."""
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="track", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is held, then stop."""
        if self._thread is None:
            return
        self._stop.set()
        with self._ready:
            self._ready.notify()
        self._thread.join(timeout=STOP_WITHIN_S + 5)
        self._thread = None

    def append(self, records: Sequence[VehicleRecord]) -> None:
        """Take accepted positions to be written."""
        if not records or not self.enabled:
            return
        with self._ready:
            overflow = len(self._queue) + len(records) - (self._queue.maxlen or 0)
            self._queue.extend(records)  # a full deque drops from the other end: the oldest
            if len(self._queue) >= self.batch_rows:
                self._ready.notify()
        if overflow > 0:
            self.positions.labels("dropped").inc(overflow)

    # -- the writer's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        held: list[VehicleRecord] = []  # a batch the database did not take yet
        maintain_at = 0.0
        stop_by: float | None = None
        while True:
            if self._stop.is_set() and stop_by is None:
                stop_by = time.monotonic() + STOP_WITHIN_S
            if stop_by is None and time.monotonic() >= maintain_at:
                maintain_at = time.monotonic() + (
                    self.prune_every_s if self._maintain() else 60.0)
            if not held:
                held = self._take(wait=stop_by is None)
            if held and self._flush(held):
                held = []
            elif held and stop_by is None:
                self._stop.wait(RETRY_S)
            elif held:
                time.sleep(0.2)
            if stop_by is not None and (
                    not held and not self._queue or time.monotonic() >= stop_by):
                break
        lost = len(held) + len(self._queue)
        if lost:
            self.positions.labels("dropped").inc(lost)
            log.warning("track: %d positions not written: the database is away", lost)

    def _take(self, wait: bool) -> list[VehicleRecord]:
        deadline = time.monotonic() + self.flush_s
        with self._ready:
            while wait and len(self._queue) < self.batch_rows and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            n = min(len(self._queue), MAX_BATCH)
            return [self._queue.popleft() for _ in range(n)]

    def _flush(self, records: list[VehicleRecord]) -> bool:
        """Write a batch; False when the database is away (the batch is to be retried)."""
        first = oldest_kept_day(int(self.clock() * 1000), self.keep_days)
        kept = [r for r in records if day_of(r.ts) >= first]
        outcome = "written"
        try:
            if kept:
                self.table.write(kept)
        except TrackUnavailable as exc:
            if not self._outage:
                log.warning("track: positions not written: %s; holding them (the oldest "
                            "go when %d wait) until it is back", exc, self._queue.maxlen)
            self._outage = True
            return False
        except Exception:  # a fault, not an outage: retrying would fail the same way
            log.exception("track: a batch of %d positions not written", len(kept))
            outcome = "dropped"
        if self._outage:
            log.info("track: positions written again")
            self._outage = False
        self.positions.labels(outcome).inc(len(kept))
        if len(kept) < len(records):
            self.positions.labels("expired").inc(len(records) - len(kept))
        return True

    def _maintain(self) -> bool:
        """Prune past retention and make today's and tomorrow's days ready; False when
        the database is away."""
        now_ms = int(self.clock() * 1000)
        today = day_of(now_ms)
        try:
            pruned = self.table.prune(oldest_kept_day(now_ms, self.keep_days))
            self.table.prepare((today, today + 1))
        except TrackUnavailable:
            return False  # the next batch reports the outage
        except Exception:
            log.exception("track: retention not done")
            return False
        if pruned.days or pruned.positions:
            log.info("track: %s", pruned.describe())
        return True
