"""GTFS static tables: agencies, routes (each with the operator its fares credit), stops,
shapes, trips; and what tracking keeps itself: the vehicles' tracks and the service
alerts."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, SmallInteger, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from ledger.adapters.db import Base


class Agency(Base):
    __tablename__ = "agencies"

    agency_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(300), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="")


class Route(Base):
    """A route and the operator (GTFS agency) whose revenue account its fares credit."""

    __tablename__ = "routes"

    route_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agency_id: Mapped[str] = mapped_column(String(64))
    short_name: Mapped[str] = mapped_column(String(100), default="")
    long_name: Mapped[str] = mapped_column(String(300), default="")
    color: Mapped[str] = mapped_column(String(6), default="")
    text_color: Mapped[str] = mapped_column(String(6), default="")
    # Keyed fingerprint of the route and its operator: revenue re-pointed to another
    # operator behind the application's back no longer matches it.
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Stop(Base):
    __tablename__ = "stops"

    stop_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lat_e6: Mapped[int] = mapped_column(Integer)
    lon_e6: Mapped[int] = mapped_column(Integer)


class ShapePoint(Base):
    __tablename__ = "shape_points"

    shape_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    lat_e6: Mapped[int] = mapped_column(Integer)
    lon_e6: Mapped[int] = mapped_column(Integer)


class Trip(Base):
    __tablename__ = "trips"
    __table_args__ = (Index("ix_trips_route_id", "route_id"),)

    trip_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    route_id: Mapped[str] = mapped_column(String(64))
    service_id: Mapped[str] = mapped_column(String(100), default="")
    headsign: Mapped[str] = mapped_column(String(200), default="")
    direction_id: Mapped[int | None] = mapped_column(Integer)
    shape_id: Mapped[str | None] = mapped_column(String(100))


class TripStop(Base):
    __tablename__ = "trip_stops"

    trip_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    stop_id: Mapped[str] = mapped_column(String(100))
    # GTFS times as seconds after the service day's "noon minus 12 h" (25:10:00 is
    # 90,600); None where the feed gives none (Transjakarta's trips are patterns).
    arrival_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    departure_s: Mapped[int | None] = mapped_column(Integer, nullable=True)


class CalendarEntry(Base):
    """calendar.txt: on which weekdays, between which dates, a service runs."""

    __tablename__ = "service_calendar"

    service_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Seven characters, Monday first, "1" where the service runs: "1111100".
    weekdays: Mapped[str] = mapped_column(String(7))
    start_date: Mapped[str] = mapped_column(String(8))  # YYYYMMDD, as GTFS writes it
    end_date: Mapped[str] = mapped_column(String(8))


class ServiceDate(Base):
    """calendar_dates.txt: a service added (1) or removed (2) on one date."""

    __tablename__ = "service_dates"

    service_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    date: Mapped[str] = mapped_column(String(8), primary_key=True)
    exception_type: Mapped[int] = mapped_column(SmallInteger)


class TripFrequency(Base):
    """frequencies.txt: a trip run every `headway_s` between two times of the day."""

    __tablename__ = "trip_frequencies"

    trip_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    start_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    end_s: Mapped[int] = mapped_column(Integer)
    headway_s: Mapped[int] = mapped_column(Integer)
    exact_times: Mapped[int] = mapped_column(SmallInteger, default=0)


class GtfsFeed(Base):
    """The feed in force: one row, written again by each `transit gtfs import` in the
    import's transaction. What a gateway asks every few seconds to know whether to read
    the schedule again (reading it costs seconds; this, one row)."""

    __tablename__ = "gtfs_feed"

    import_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    imported_ms: Mapped[int] = mapped_column(BigInteger)


class VehicleCapacity(Base):
    """How many riders a vehicle carries (`transit vehicles capacity V N`); a vehicle
    without a row carries `tracking.occupancy.DEFAULT_CAPACITY`."""

    __tablename__ = "vehicle_capacities"

    vehicle_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    capacity: Mapped[int] = mapped_column(Integer)
    set_ms: Mapped[int] = mapped_column(BigInteger)
    set_by: Mapped[str] = mapped_column(String(100))


class SegmentDay(Base):
    """What the buses did between two consecutive stops of a pattern, per hour of one
    service day: the learner's aggregate of the recorded tracks (`tracking.learn`).
    Predictions combine the last days' rows; a day is learned once, after it ends."""

    __tablename__ = "segment_days"
    # Predictions read, and the learner prunes, by day (`WHERE day >= since`): without
    # this the primary key, which starts with the pattern, makes both scan the table.
    __table_args__ = (Index("ix_segment_days_day", "day"),)

    pattern_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    from_index: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 = first stop
    hour: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # local, 0-23
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    n: Mapped[int] = mapped_column(Integer)
    sum_ms: Mapped[int] = mapped_column(BigInteger)  # travel, stop to stop, dwell included
    sumsq_s: Mapped[int] = mapped_column(BigInteger)  # sum of squared seconds (spread)


class LearnedDay(Base):
    """A service day whose tracks the learner has read (so it is read once)."""

    __tablename__ = "learned_days"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    learned_ms: Mapped[int] = mapped_column(BigInteger)
    passages: Mapped[int] = mapped_column(Integer)


class HeadwayThreshold(Base):
    """When buses count as bunched or gapped, as per cent of the headway; route `*` is
    the default for every route without its own row."""

    __tablename__ = "headway_thresholds"

    route_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bunched_pct: Mapped[int] = mapped_column(SmallInteger)
    gapped_pct: Mapped[int] = mapped_column(SmallInteger)
    set_ms: Mapped[int] = mapped_column(BigInteger)
    set_by: Mapped[str] = mapped_column(String(100))


# Every accepted position, kept for `TRANSIT_TRACK_DAYS` days. On PostgreSQL the table is
# partitioned by range of `ts`, one partition per UTC day (`vehicle_positions_YYYYMMDD`,
# made as positions arrive), so that retention drops whole days in one statement and a
# track's query reads only the days it spans (tracking/track.py). No primary key: a
# position is not an effect, and two validators on one bus may report the same instant.
vehicle_positions = Table(
    "vehicle_positions", Base.metadata,
    Column("vehicle_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("route_id", String(64), nullable=False),
    Column("trip_id", String(64), nullable=True),
    Column("lat_e6", Integer, nullable=False),
    Column("lon_e6", Integer, nullable=False),
    Column("speed_cms", Integer, nullable=True),
    Column("bearing_deg", SmallInteger, nullable=True),
    Index("ix_vehicle_positions_vehicle_ts", "vehicle_id", "ts"),
    postgresql_partition_by="RANGE (ts)",
)


class ServiceAlert(Base):
    """A service alert for riders (GTFS-Realtime Alerts): made and ended by operations,
    never deleted, so that what riders were told stays on record."""

    __tablename__ = "service_alerts"

    alert_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Texts as JSON objects of language -> text ({"id": "...", "en": "..."}).
    header: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    cause: Mapped[str] = mapped_column(String(32))
    effect: Mapped[str] = mapped_column(String(32))
    route_ids: Mapped[str] = mapped_column(Text)  # JSON list
    stop_ids: Mapped[str] = mapped_column(Text)  # JSON list
    start_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(100))
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
