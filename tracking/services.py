"""Tracking's reads for the back office: the validators' state and the network the map
draws.

What tracking needs from the gateway's records (the device roster, the taps on a
vehicle) it is handed through the small Protocols below, by the wiring: tracking sits
below the gateway and imports nothing of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.adapters.db import Sessions
from tracking.adapters.models import Route, ShapePoint, Stop, Trip
from tracking.domain import (
    OFFLINE_AFTER_S,
    SILENT_AFTER_S,
    spool_growing_since,
    validator_state,
)

DEFAULT_ROUTE_COLOR = "3366CC"  # a route the feed gives no colour


class RegisteredDevice(Protocol):
    """A validator as the device registry knows it."""

    @property
    def device_id(self) -> str: ...

    @property
    def vehicle_id(self) -> str: ...

    @property
    def status(self) -> str: ...  # active | revoked


class DeviceRoster(Protocol):
    """Every registered validator."""

    def registered(self) -> Sequence[RegisteredDevice]: ...


class VehicleTaps(Protocol):
    """How many taps were made on a vehicle."""

    def count(self, vehicle_id: str, service_date: str) -> int: ...


@dataclass(frozen=True)
class ValidatorState:
    """A registered validator: its state from what was heard of it, and what its last
    status message said (as of `last_status_ms`)."""

    device_id: str
    vehicle_id: str
    registration: str
    state: str  # online | silent | offline (tracking.domain.validator_state)
    online: bool  # state == "online"
    last_seen_ms: int | None  # when anything of it was last heard: tap, position, status
    last_seen_s: float | None
    last_status_ms: int | None  # when its last status came: the spool depth is as of then
    spool_depth: Any
    spool_full: Any
    spool_growing_since_ms: int | None  # tracking.domain.spool_growing_since
    denylist_version: Any
    software: Any
    route_id: Any


def validator_states(devices: Sequence[RegisteredDevice],
                     statuses: Mapping[str, tuple[dict[str, Any], int]], now_ms: int,
                     offline_after_s: float = OFFLINE_AFTER_S, *,
                     heard: Mapping[str, int] | None = None,
                     samples: Mapping[str, list[tuple[int, int]]] | None = None,
                     silent_after_s: float = SILENT_AFTER_S) -> list[ValidatorState]:
    """Each registered device with its state, judged from when it was last heard
    (`heard`: taps and positions; a status counts too) and what its status said."""
    heard = heard or {}
    samples = samples or {}
    out = []
    for device in devices:
        reported, received = statuses.get(device.device_id, ({}, None))
        times = [t for t in (heard.get(device.device_id), received) if t is not None]
        last = max(times) if times else None
        said = reported.get("online") if received is not None else None
        state = validator_state(last, None if said is None else bool(said), received,
                                now_ms, silent_after_s, offline_after_s)
        out.append(ValidatorState(
            device.device_id, device.vehicle_id, device.status, state, state == "online",
            last, None if last is None else round((now_ms - last) / 1000, 1), received,
            reported.get("spool_depth"), reported.get("spool_full", False),
            spool_growing_since(samples.get(device.device_id, [])),
            reported.get("denylist_version"), reported.get("software"),
            reported.get("route_id")))
    return out


class HeardReports(Protocol):
    """What the gateways heard of the validators (`tracking.store.TrackingStore`)."""

    def statuses(self) -> dict[str, tuple[dict[str, Any], int]]: ...

    def last_heard(self) -> dict[str, int]: ...

    def spool_samples(self, device_ids: Iterable[str]
                      ) -> dict[str, list[tuple[int, int]]]: ...


def validators_heard(roster: Sequence[RegisteredDevice], reports: HeardReports, now_ms: int,
                     silent_after_s: float = SILENT_AFTER_S,
                     offline_after_s: float = OFFLINE_AFTER_S) -> list[ValidatorState]:
    """Every registered validator's state at `now_ms`, from what the gateways heard."""
    return validator_states(
        roster, reports.statuses(), now_ms, offline_after_s, heard=reports.last_heard(),
        samples=reports.spool_samples(d.device_id for d in roster),
        silent_after_s=silent_after_s)


Network = dict[str, list[dict[str, Any]]]


def map_network(session: Session) -> Network:
    """Routes with their colours and shapes, and the stops: what the map draws."""
    routes = session.scalars(select(Route).order_by(Route.route_id)).all()
    shape_of: dict[str, set[str]] = {}
    for route_id, shape_id in session.execute(
            select(Trip.route_id, Trip.shape_id).where(Trip.shape_id.is_not(None))
            .distinct()).all():
        if shape_id is not None:  # filtered above; the column's type does not know it
            shape_of.setdefault(route_id, set()).add(shape_id)
    points: dict[str, list[list[float]]] = {}
    for shape_id, lat, lon in session.execute(
            select(ShapePoint.shape_id, ShapePoint.lat_e6, ShapePoint.lon_e6)
            .order_by(ShapePoint.shape_id, ShapePoint.seq)).all():
        points.setdefault(shape_id, []).append([lat / 1e6, lon / 1e6])
    stops = [{"id": s.stop_id, "name": s.name, "lat": s.lat_e6 / 1e6, "lon": s.lon_e6 / 1e6}
             for s in session.scalars(select(Stop))]
    return {
        "routes": [{"route_id": r.route_id, "agency_id": r.agency_id,
                    "short_name": r.short_name, "long_name": r.long_name,
                    "color": r.color or DEFAULT_ROUTE_COLOR,
                    "shapes": [points[s] for s in sorted(shape_of.get(r.route_id, ()))
                               if s in points]} for r in routes],
        "stops": stops}


@dataclass(frozen=True)
class NetworkMap:
    """The network the map draws, read in a short session of its own."""

    sessions: Sessions

    def __call__(self) -> Network:
        with self.sessions() as session:
            return map_network(session)
