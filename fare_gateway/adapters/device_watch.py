"""Telling a gateway's device directory of every device change at once.

Contract section 10: `transit devices revoke` takes effect on every running gateway
within one second of returning (a move too: taps naming the old vehicle are refused).
The registry announces each change in the transaction that makes it
(`fare_gateway.devices._announce`); here each gateway hears the announcements and drops
the device from its cache, so the next message from it reads the row as committed.

- PostgreSQL: a connection of its own `LISTEN`s on the channel, and each `NOTIFY`
  (delivered at commit, never for a rolled-back change) names one device. If that
  connection drops, a notification may have been missed: the whole cache is dropped,
  again every second while the connection is down, and once more when it is back.
- SQLite (one host, the demo): every quarter of a second, the devices whose
  `change_seq` moved past the last one seen, read without taking the write lock.

The directory's time to live stays the fallback either way. Whatever goes wrong, the
watcher's thread carries on (a fault is logged with its traceback, once), and
`transit_device_changes_heard` says whether changes are being heard.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from fare_gateway.adapters.models import Device
from fare_gateway.devices import CHANGES_CHANNEL
from fare_gateway.metrics import Metrics
from ledger.adapters.db import READS_ONLY

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
APPLICATION_NAME = "transit device changes"  # how the LISTEN connection shows in pg_stat_activity
# How long data sent on the LISTEN connection may go unacknowledged before the connection
# is given up. Keepalives only probe an idle connection: on a link that drops packets
# silently, the ping's query would otherwise wait for TCP's retransmissions to run out
# (15 minutes and more with Linux's defaults), the cache trusted all along.
TCP_USER_TIMEOUT_MS = 10_000


class Forgetful(Protocol):
    """What a watcher tells of changes (the gateway's `DeviceDirectory`)."""

    def forget(self, device_id: str) -> None: ...

    def clear(self) -> None: ...


class DeviceWatch(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    @property
    def hearing(self) -> bool: ...


def device_watch(engine: Engine, directory: Forgetful, metrics: Metrics) -> DeviceWatch:
    """The watcher that fits the database behind `engine`, its state in `metrics`."""
    watch: _Watcher
    if engine.dialect.name == "postgresql":
        watch = PostgresListener(engine, directory)
    else:
        watch = ChangePoller(engine, directory)
    metrics.device_changes_heard.set_function(lambda: float(watch.hearing))
    return watch


class _Watcher(ABC):
    """A daemon thread running `_run` until `stop`; `_ready` is set once it hears changes."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._hearing = False
        self._thread = threading.Thread(target=self._run, name="device-changes",
                                        daemon=True)

    @property
    def hearing(self) -> bool:
        """True while changes are heard: the LISTEN connection is up, the last poll read."""
        return self._hearing

    def _heard(self, hearing: bool) -> None:
        self._hearing = hearing
        if hearing:
            self._ready.set()

    def start(self, wait_s: float = 5.0) -> None:
        """Start, and wait (up to `wait_s`) until changes are being heard."""
        self._thread.start()
        self._ready.wait(wait_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @abstractmethod
    def _run(self) -> None: ...


class PostgresListener(_Watcher):
    """LISTEN for device changes on a connection of its own (autocommit, outside the pool).

    `wait_s` is how long one wait for notifications lasts before the stop flag is looked
    at; `ping_s` how often the connection is tried with a query, so that a connection
    the network lost (no error, just silence) is noticed and replaced. TCP keepalives
    (idle) and `TCP_USER_TIMEOUT_MS` (unanswered data) bound how long that takes.
    """

    def __init__(self, engine: Engine, directory: Forgetful, wait_s: float = 0.5,
                 ping_s: float = 5.0) -> None:
        super().__init__()
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self.directory = directory
        self.wait_s = wait_s
        self.ping_s = ping_s

    def _run(self) -> None:
        import psycopg

        lost = False
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5,
                                     application_name=APPLICATION_NAME, keepalives=1,
                                     keepalives_idle=5, keepalives_interval=2,
                                     keepalives_count=2,
                                     tcp_user_timeout=TCP_USER_TIMEOUT_MS) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    # Whatever changed before the LISTEN was not heard: start from nothing.
                    self.directory.clear()
                    if lost:
                        log.info("device changes heard again: device cache dropped")
                    else:
                        log.info("listening for device changes (PostgreSQL NOTIFY)")
                    lost = False
                    self._heard(True)
                    self._listen(conn)
            except Exception as exc:  # not only the database's: nothing may end the thread
                self._heard(False)
                self.directory.clear()
                if not lost:
                    self._say_lost(exc, isinstance(exc, psycopg.Error))
                lost = True
                self._stop.wait(1.0)

    @staticmethod
    def _say_lost(exc: Exception, database: bool) -> None:
        """Log the start of an outage: a database error in one line, a fault with its
        traceback (this watcher's own bug, or a library's, should not hide)."""
        then = "device cache dropped, and again every second until they are back"
        if database:
            why = (str(exc).splitlines() or [type(exc).__name__])[0]
            log.warning("device change notifications lost (%s): %s", why, then)
        else:
            log.error("device change listener failed: %s", then, exc_info=exc)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        waited = 0.0
        while not self._stop.is_set():
            for note in conn.notifies(timeout=self.wait_s):
                self.directory.forget(note.payload)
            waited += self.wait_s
            if waited >= self.ping_s:
                conn.execute("SELECT 1")
                waited = 0.0


class ChangePoller(_Watcher):
    """Poll `devices.change_seq` every `interval_s` and forget the devices that moved on."""

    def __init__(self, engine: Engine, directory: Forgetful, interval_s: float = 0.25
                 ) -> None:
        super().__init__()
        self.engine = engine
        self.directory = directory
        self.interval_s = interval_s

    def _run(self) -> None:
        seen: int | None = None
        failing = False
        while True:
            try:
                seen = self._poll(seen)
                if failing:
                    log.info("device changes read again")
                failing = False
                self._heard(True)
            except Exception as exc:  # not only the database's: nothing may end the thread
                self._heard(False)
                if not failing:
                    if isinstance(exc, SQLAlchemyError):
                        why = (str(getattr(exc, "orig", exc)).splitlines() or ["?"])[0]
                        log.warning("device changes not read (%s): retrying", why)
                    else:
                        log.error("device changes not read: retrying", exc_info=exc)
                failing = True
            if self._stop.wait(self.interval_s):
                return

    def _poll(self, seen: int | None) -> int:
        """Forget every device changed after change number `seen`; the newest number."""
        c = Device.__table__.c
        # Reads only: on SQLite it must not queue for the write lock four times a second.
        with self.engine.connect().execution_options(**READS_ONLY) as conn:
            if seen is None:  # at start: note where the changes are, start from nothing
                newest = int(conn.scalar(select(func.coalesce(func.max(c.change_seq), 0)))
                             or 0)
                self.directory.clear()
                return newest
            changed = conn.execute(select(c.device_id, c.change_seq)
                                   .where(c.change_seq > seen)).all()
        for device_id, _seq in changed:
            self.directory.forget(device_id)
        return max([seen, *(int(seq) for _id, seq in changed)])
