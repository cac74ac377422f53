"""The registry of validators and their secrets."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import Device
from transit.topics import ID_PATTERN

SECRET_BYTES = 32


class DeviceError(ValueError):
    """A device registration that cannot be done."""


@dataclass(frozen=True)
class KnownDevice:
    device_id: str
    vehicle_id: str
    secret: bytes
    active: bool


def parse_secret(secret_hex: str) -> bytes:
    """A device secret given as hex: exactly 32 bytes."""
    try:
        raw = bytes.fromhex(secret_hex.strip())
    except ValueError:
        raise DeviceError("the secret must be hexadecimal") from None
    if len(raw) != SECRET_BYTES:
        raise DeviceError(
            f"the secret must be {SECRET_BYTES} bytes ({2 * SECRET_BYTES} hex digits)")
    return raw


def add_device(session: Session, device_id: str, vehicle_id: str,
               secret_hex: str | None = None) -> tuple[Device, bool]:
    """Register a validator; returns the row and whether its secret was generated here."""
    for name, value in (("device id", device_id), ("vehicle id", vehicle_id)):
        if not ID_PATTERN.fullmatch(value):
            raise DeviceError(f"{name} must be 1-64 characters of A-Z a-z 0-9 . _ -: {value!r}")
    generated = secret_hex is None
    secret = secrets.token_bytes(SECRET_BYTES) if generated else parse_secret(secret_hex or "")
    if session.get(Device, device_id) is not None:
        raise DeviceError(f"device {device_id} is already registered")
    row = Device(device_id=device_id, vehicle_id=vehicle_id, secret_hex=secret.hex(),
                 status="active", created_ms=int(time.time() * 1000))
    session.add(row)
    session.flush()
    return row, generated


class DeviceDirectory:
    """Read-through cache of devices for the tap path; unknown ids are re-checked after a while."""

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 5.0) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, KnownDevice | None]] = {}
        self._lock = threading.Lock()

    def get(self, device_id: str) -> KnownDevice | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(device_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        with self.sessions() as session:
            row = session.execute(select(Device).where(Device.device_id == device_id)).scalar()
            known = None if row is None else KnownDevice(
                row.device_id, row.vehicle_id, bytes.fromhex(row.secret_hex),
                row.status == "active")
        with self._lock:
            self._cache[device_id] = (now, known)
        return known
