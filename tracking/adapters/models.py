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
