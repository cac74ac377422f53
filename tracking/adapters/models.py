"""GTFS static tables: agencies, routes (each with the operator its fares credit), stops,
shapes, trips."""

from __future__ import annotations

from sqlalchemy import Index, Integer, String
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
