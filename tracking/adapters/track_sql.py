"""`vehicle_positions` in SQL: the track's writes, its days and its reads.

On PostgreSQL the table is partitioned by range of `ts`, one partition per UTC day
(`vehicle_positions_YYYYMMDD`, from the day's first millisecond to the next day's),
made on demand by whichever gateway first has a position of that day, and dropped whole
by retention: one `DROP TABLE` per day, however many positions it holds. A batch
travels with `COPY ... FROM STDIN` in binary. SQLite, the demo's database, has one plain
table: a batch is a multi-row insert, and retention a `DELETE`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy.exc
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine

from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import vehicle_positions
from tracking.store import VehicleRecord
from tracking.track import (
    Pruned,
    TrackPoint,
    TrackUnavailable,
    day_from_label,
    day_label,
    day_of,
    day_start,
)

TABLE = vehicle_positions.name
PARTITION = re.compile(rf"{TABLE}_([0-9]{{8}})")
COLUMNS = ("vehicle_id", "ts", "device_id", "route_id", "trip_id", "lat_e6", "lon_e6",
           "speed_cms", "bearing_deg")
# Binary COPY: the server takes the values as they are, with no text to parse.
COPY = f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ("text", "int8", "text", "text", "text", "int4", "int4", "int4", "int2")
PARTITIONS = text(f"SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = "
                  f"i.inhrelid WHERE i.inhparent = CAST('{TABLE}' AS regclass)")
# A partition made or dropped waits this long at most for the table's readers and
# writers (other gateways) to let go; the hourly run tries again.
LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"
# Making and dropping partitions, one gateway at a time: PostgreSQL can fail a CREATE
# ... PARTITION OF that races a DROP of a sibling partition ("could not find tuple for
# parent of relation", XX000), which IF [NOT] EXISTS does not cover. Held until commit.
PARTITIONS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('transit vehicle_positions'))"
DUPLICATE = {"42P07", "23505"}  # made by another gateway at the same moment
NO_PARTITION = "23514"  # a row for a day that has no partition (dropped meanwhile)
UNDEFINED_TABLE = "42P01"
LOCK_NOT_AVAILABLE = "55P03"

# One vehicle's positions from `start` (inclusive) to `end` (exclusive), oldest first:
# on PostgreSQL the bounds on `ts` leave only the partitions of the interval to read,
# each through its (vehicle_id, ts) index.
c = vehicle_positions.c
TRACK = (select(c.ts, c.lat_e6, c.lon_e6, c.speed_cms, c.bearing_deg, c.route_id, c.trip_id)
         .where(c.vehicle_id == sqlalchemy.bindparam("vehicle_id"),
                c.ts >= sqlalchemy.bindparam("start"), c.ts < sqlalchemy.bindparam("end"))
         .order_by(c.ts).limit(sqlalchemy.bindparam("limit")))


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _outages() -> tuple[type[BaseException], ...]:
    """The failures that mean the database is away rather than a fault in the code."""
    found: list[type[BaseException]] = [sqlalchemy.exc.OperationalError,
                                        sqlalchemy.exc.InterfaceError,
                                        sqlalchemy.exc.TimeoutError]
    try:
        import psycopg
    except ImportError:  # an SQLite installation
        return tuple(found)
    return (*found, psycopg.OperationalError, psycopg.InterfaceError)


class SqlTrack:
    """The track table of one database (PostgreSQL or SQLite)."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self.engine: Engine = sessions.kw["bind"]
        self.partitioned = self.engine.dialect.name == "postgresql"
        self.outages = _outages()
        self._days: set[int] = set()  # the days known to have their partition

    @contextmanager
    def _away_is_unavailable(self) -> Iterator[None]:
        try:
            yield
        except self.outages as exc:
            message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise TrackUnavailable(f"the database is unreachable ("
                                   f"{message[0] if message else type(exc).__name__})"
                                   ) from exc

    # -- writing ---------------------------------------------------------------------------------

    def prepare(self, days: Collection[int]) -> None:
        """Make the partitions of these days that are not known to exist yet."""
        if not self.partitioned:
            return
        with self._away_is_unavailable():
            for day in sorted(set(days) - self._days):
                self._create(day)
                self._days.add(day)

    def _create(self, day: int) -> None:
        name = f"{TABLE}_{day_label(day)}"
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(LOCK_TIMEOUT)
                conn.exec_driver_sql(PARTITIONS_LOCK)
                conn.exec_driver_sql(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {TABLE} "
                    f"FOR VALUES FROM ({day_start(day)}) TO ({day_start(day + 1)})")
        except sqlalchemy.exc.DBAPIError as exc:
            if _sqlstate(exc) not in DUPLICATE:
                raise

    def write(self, records: Sequence[VehicleRecord]) -> None:
        """Write positions in one transaction; TrackUnavailable when the database is away."""
        with self._away_is_unavailable():
            if not self.partitioned:
                with self.sessions.begin() as session:
                    session.execute(insert(vehicle_positions), [
                        {"vehicle_id": r.vehicle_id, "ts": r.ts, "device_id": r.device_id,
                         "route_id": r.route_id, "trip_id": r.trip_id, "lat_e6": r.lat_e6,
                         "lon_e6": r.lon_e6, "speed_cms": r.speed_cms,
                         "bearing_deg": r.bearing_deg} for r in records])
                return
            self.prepare({day_of(r.ts) for r in records})
            try:
                self._copy(records)
            except Exception as exc:
                if _sqlstate(exc) != NO_PARTITION:
                    raise
                # A day dropped behind this gateway's back (another's retention, an
                # operator): learn the partitions afresh and try once more.
                self._days.clear()
                self.prepare({day_of(r.ts) for r in records})
                self._copy(records)

    def _copy(self, records: Sequence[VehicleRecord]) -> None:
        pooled = self.engine.raw_connection()
        try:
            raw: Any = pooled.driver_connection
            with raw.cursor() as cursor, cursor.copy(COPY) as copy:
                copy.set_types(COPY_TYPES)
                write_row = copy.write_row
                for r in records:
                    write_row((r.vehicle_id, r.ts, r.device_id, r.route_id, r.trip_id,
                               r.lat_e6, r.lon_e6, r.speed_cms, r.bearing_deg))
            raw.commit()
        except self.outages:
            pooled.invalidate()  # the connection may be dead: never hand it out again
            raise
        except BaseException:
            raw.rollback()
            raise
        finally:
            pooled.close()

    # -- retention -------------------------------------------------------------------------------

    def prune(self, before_day: int) -> Pruned:
        """Remove every position of the days before `before_day`; on PostgreSQL whole
        partitions, each in a transaction of its own."""
        with self._away_is_unavailable():
            if not self.partitioned:
                with self.sessions.begin() as session:
                    deleted = session.execute(vehicle_positions.delete().where(
                        vehicle_positions.c.ts < day_start(before_day)))
                return Pruned(before_day, positions=int(getattr(deleted, "rowcount", 0)))
            with self.engine.connect() as conn:
                names = list(conn.execute(PARTITIONS).scalars())
            by_day = {day_from_label(m.group(1)): name for name in names
                      if (m := PARTITION.fullmatch(name))}
            dropped = [day for day in sorted(by_day) if day < before_day
                       and self._drop(by_day[day])]
            self._days = set(by_day) - set(dropped)
            return Pruned(before_day, days=tuple(dropped))

    def _drop(self, name: str) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(LOCK_TIMEOUT)
                conn.exec_driver_sql(PARTITIONS_LOCK)
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        except sqlalchemy.exc.DBAPIError as exc:
            if _sqlstate(exc) == UNDEFINED_TABLE:  # dropped by another gateway just now
                return True
            if _sqlstate(exc) == LOCK_NOT_AVAILABLE:  # busy: the next run drops it
                return False
            raise
        return True

    # -- reading ---------------------------------------------------------------------------------

    def read(self, vehicle_id: str, start: int, end: int, limit: int) -> list[TrackPoint]:
        """A vehicle's positions from `start` (inclusive) to `end` (exclusive), oldest
        first, at most `limit`."""
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            rows = session.execute(TRACK, {"vehicle_id": vehicle_id, "start": start,
                                           "end": end, "limit": limit}).all()
        return [TrackPoint(*row) for row in rows]

