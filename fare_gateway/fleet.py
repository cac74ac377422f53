"""The gateway's records of the fleet, as tracking asks for them: the registered
validators (`tracking.services.DeviceRoster`) and the taps made on a vehicle
(`tracking.services.VehicleTaps`)."""

from __future__ import annotations

from sqlalchemy import func, select

from fare_gateway.adapters.models import TapRecord
from fare_gateway.devices import DeviceInfo, list_devices
from ledger.adapters.db import Sessions


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
