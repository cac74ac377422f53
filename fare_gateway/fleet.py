"""The gateway's records of the fleet, as tracking asks for them: the registered
validators (`tracking.services.DeviceRoster`), the taps made on a vehicle
(`tracking.services.VehicleTaps`) and the charged taps occupancy follows
(`tracking.occupancy_live.TapLog`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import func, select

from fare_gateway.adapters.models import TapRecord
from fare_gateway.devices import DeviceInfo, list_devices
from ledger.adapters.db import Sessions
from ledger.adapters.sql import one_of, parts


class FleetRecords:
    """Reads of the device registry and the tap inbox, one short session each."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def registered(self) -> list[DeviceInfo]:
        """Every registered validator, in device order, without secrets."""
        with self.sessions() as session:
            return list_devices(session)

    def count(self, vehicle_id: str, service_date: str) -> int:
        """Taps received from a vehicle for a service day (charged or not); a rejected
        tap does not count: it may name a vehicle it was not made on."""
        with self.sessions() as session:
            return int(session.scalar(
                select(func.count()).select_from(TapRecord).where(
                    TapRecord.vehicle_id == vehicle_id,
                    TapRecord.service_date == service_date,
                    TapRecord.status != "rejected")) or 0)

    def charged_since(self, received_ms: int, limit: int) -> list[ChargedTap]:
        """Charged taps received at or after `received_ms`, oldest first, at most `limit`
        (`tracking.occupancy_live.TapLog`; ix_taps_received_ms)."""
        # On the connection, not the session: the ORM's row handling cost as much as
        # the read itself, and occupancy reads each tap several times (`LAG_MS`).
        with self.sessions() as session:
            rows = session.connection().execute(
                select(*_CHARGED).where(TapRecord.received_ms >= received_ms,
                                        TapRecord.status == "charged")
                .order_by(TapRecord.received_ms, TapRecord.tap_id).limit(limit))
            return list(map(ChargedTap._make, rows))

    def charged_ids(self, since_ms: int, before_ms: int) -> set[str]:
        """The ids of the charged taps received at or after `since_ms`, before
        `before_ms`."""
        with self.sessions() as session:
            return set(session.connection().execute(
                select(TapRecord.tap_id).where(TapRecord.received_ms >= since_ms,
                                               TapRecord.received_ms < before_ms,
                                               TapRecord.status == "charged")).scalars())

    def charged_taps(self, tap_ids: Collection[str]) -> list[ChargedTap]:
        """The charged taps of these ids."""
        found: list[ChargedTap] = []
        with self.sessions() as session:
            conn = session.connection()
            for part in parts(conn, list(tap_ids)):
                found.extend(map(ChargedTap._make, conn.execute(
                    select(*_CHARGED).where(one_of(conn, TapRecord.tap_id, part),
                                            TapRecord.status == "charged"))))
        return found

    def charged_recent(self, since_ms: int, limit: int) -> list[ChargedTap]:
        """The newest `limit` charged taps received at or after `since_ms`."""
        with self.sessions() as session:
            rows = session.connection().execute(
                select(*_CHARGED).where(TapRecord.received_ms >= since_ms,
                                        TapRecord.status == "charged")
                .order_by(TapRecord.received_ms.desc()).limit(limit))
            return list(map(ChargedTap._make, rows))


class ChargedTap(NamedTuple):
    """A charged tap, as occupancy reads it."""

    tap_id: str
    received_ms: int
    vehicle_id: str
    route_id: str
    card: str
    kind: str
    ts: int
    lat_e6: int
    lon_e6: int


_CHARGED = (TapRecord.tap_id, TapRecord.received_ms, TapRecord.vehicle_id,
            TapRecord.route_id, TapRecord.card, TapRecord.kind, TapRecord.ts,
            TapRecord.lat_e6, TapRecord.lon_e6)
