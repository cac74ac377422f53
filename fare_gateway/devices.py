"""The registry of validators and their secrets.

Secrets at rest: with ``TRANSIT_SECRET_KEY`` (64 hex digits) set, a device secret is stored
as ``v1:<nonce hex>:<AES-256-GCM ciphertext hex>``, bound to its device id as associated
data, so a database dump does not hold it in the clear. Rows stored as plain hex (written
before the setting existed, or without it) keep working and are encrypted when the device
is rotated. Secrets are never logged.

Rotation keeps the previous key verifying until ``previous_valid_until_ms``. Receipts are
always signed with the CURRENT key, even for a tap signed with the previous one: a
validator learns its new key at rotation, and the grace period only covers taps it signed
(or spooled) before it was given the new key.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import Device
from transit.settings import SettingsError, hex_key
from transit.topics import ID_PATTERN

log = logging.getLogger(__name__)

SECRET_BYTES = 32
KEY_ENV = "TRANSIT_SECRET_KEY"
SEALED_PREFIX = "v1:"
DEFAULT_GRACE_HOURS = 24.0


class DeviceError(ValueError):
    """A device registration that cannot be done."""


class SecretKeyError(DeviceError):
    """The at-rest encryption key is malformed, missing or wrong for a stored secret."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class KnownDevice:
    device_id: str
    vehicle_id: str
    secret: bytes
    active: bool
    previous_secret: bytes | None = field(default=None, repr=False)
    previous_valid_until_ms: int | None = None

    def __repr__(self) -> str:  # never show a secret
        return (f"KnownDevice({self.device_id!r}, {self.vehicle_id!r}, active={self.active}, "
                f"previous_valid_until_ms={self.previous_valid_until_ms})")

    def keys(self, at_ms: int | None = None) -> list[bytes]:
        """The keys a message from this device may be signed with now: the current one,
        and the previous one while its grace period lasts."""
        keys = [self.secret]
        if (self.previous_secret is not None and self.previous_valid_until_ms is not None
                and (now_ms() if at_ms is None else at_ms) < self.previous_valid_until_ms):
            keys.append(self.previous_secret)
        return keys


# -- signatures ----------------------------------------------------------------------------------

class SignedMessage(Protocol):
    """A wire message signed with its device's key (a tap, a position)."""

    @property
    def device_id(self) -> str: ...

    def verify(self, secret: bytes) -> bool: ...


@dataclass(frozen=True)
class Refusal:
    """Why a signed message cannot be trusted: a stable reason code, which the quarantine
    and the metrics use, and a line for people."""

    reason: str  # topic_mismatch | unknown_device | inactive_device | bad_signature
    detail: str


def verify_signed(message: SignedMessage, topic_device: str | None,
                  lookup: Callable[[str], KnownDevice | None]) -> KnownDevice | Refusal:
    """The device that signed `message`, or why the message cannot be trusted.

    The topic must name the device the message says it comes from (checked first, so a
    message on another device's topic costs no look-up); that device must be known and
    active, and the signature must match one of its keys.
    """
    if topic_device != message.device_id:
        return Refusal("topic_mismatch", f"a message of {message.device_id} published on "
                                         f"the topic of {topic_device}")
    device = lookup(message.device_id)
    if device is None:
        return Refusal("unknown_device", f"no device {message.device_id}")
    if not device.active:
        return Refusal("inactive_device", f"device {message.device_id} is revoked")
    # The current key, or the previous one while a rotation's grace period lasts.
    if not any(message.verify(key) for key in device.keys()):
        return Refusal("bad_signature", "signature does not match the device key")
    return device


# -- encryption at rest --------------------------------------------------------------------------

def master_key(value: str) -> bytes | None:
    """The at-rest key written as hex (as ``TRANSIT_SECRET_KEY`` holds it); None if blank."""
    try:
        return hex_key(value, KEY_ENV)
    except SettingsError as exc:
        raise SecretKeyError(str(exc)) from None


def seal(secret: bytes, key: bytes | None, device_id: str) -> str:
    """The stored form of a device secret: encrypted when there is a key, else plain hex."""
    if key is None:
        return secret.hex()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, secret, device_id.encode())
    return f"{SEALED_PREFIX}{nonce.hex()}:{sealed.hex()}"


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def unseal(stored: str, key: bytes | None, device_id: str) -> bytes:
    """The device secret from its stored form; SecretKeyError if it cannot be decrypted."""
    if not is_sealed(stored):
        try:
            return bytes.fromhex(stored)
        except ValueError:
            raise SecretKeyError(f"the stored secret of device {device_id} is not "
                                 "readable") from None
    if key is None:
        raise SecretKeyError(f"the secret of device {device_id} is encrypted and {KEY_ENV} "
                             "is not set")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        nonce_hex, sealed_hex = stored[len(SEALED_PREFIX):].split(":")
        return AESGCM(key).decrypt(bytes.fromhex(nonce_hex), bytes.fromhex(sealed_hex),
                                   device_id.encode())
    except (ValueError, InvalidTag):
        raise SecretKeyError(f"cannot decrypt the secret of device {device_id}: wrong "
                             f"{KEY_ENV}, or the stored value is damaged") from None


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


def _check_ids(**ids: str) -> None:
    for name, value in ids.items():
        if not ID_PATTERN.fullmatch(value):
            raise DeviceError(f"{name.replace('_', ' ')} must be 1-64 characters of "
                              f"A-Z a-z 0-9 . _ -: {value!r}")


def add_device(session: Session, device_id: str, vehicle_id: str,
               secret_hex: str | None = None, *, key: bytes | None
               ) -> tuple[Device, bool]:
    """Register a validator; returns the row and whether its secret was generated here.

    `key` is the at-rest key (`Settings.secret_key`; None stores the secret in the clear).
    The plain secret is available as ``row.plain_secret`` on the returned row (not a column).
    """
    _check_ids(device_id=device_id, vehicle_id=vehicle_id)
    generated = secret_hex is None
    secret = secrets.token_bytes(SECRET_BYTES) if generated else parse_secret(secret_hex or "")
    if session.get(Device, device_id) is not None:
        raise DeviceError(f"device {device_id} is already registered")
    created = now_ms()
    row = Device(device_id=device_id, vehicle_id=vehicle_id,
                 secret_hex=seal(secret, key, device_id), status="active", created_ms=created,
                 key_created_ms=created, previous_secret=None, previous_valid_until_ms=None)
    session.add(row)
    session.flush()
    row.plain_secret = secret  # type: ignore[attr-defined]
    return row, generated


def _device(session: Session, device_id: str) -> Device:
    row = session.get(Device, device_id)
    if row is None:
        raise DeviceError(f"no device {device_id}")
    return row


def rotate_device(session: Session, device_id: str, secret_hex: str | None = None,
                  grace_hours: float = DEFAULT_GRACE_HOURS, *, key: bytes | None
                  ) -> tuple[bytes, bool]:
    """Give a device a new secret; the old one keeps verifying for `grace_hours`.

    Returns the new secret and whether it was generated here. The new and the previous
    secret are both stored encrypted when there is a `key` (the at-rest key, None for
    none; a plain row becomes encrypted).
    """
    if grace_hours < 0:
        raise DeviceError("the grace period cannot be negative")
    row = _device(session, device_id)
    if row.status != "active":
        raise DeviceError(f"device {device_id} is revoked")
    old = unseal(row.secret_hex, key, device_id)
    generated = secret_hex is None
    new = secrets.token_bytes(SECRET_BYTES) if generated else parse_secret(secret_hex or "")
    if new == old:
        raise DeviceError("the new secret must differ from the current one")
    now = now_ms()
    row.previous_secret = seal(old, key, device_id)
    row.previous_valid_until_ms = now + int(grace_hours * 3_600_000)
    row.secret_hex = seal(new, key, device_id)
    row.key_created_ms = now
    session.flush()
    return new, generated


def revoke_device(session: Session, device_id: str) -> None:
    """Revoke a device: its taps and positions are refused from now on (within the
    directory's cache time). Its keys are dropped."""
    row = _device(session, device_id)
    row.status = "revoked"
    row.previous_secret = None
    row.previous_valid_until_ms = None
    session.flush()


@dataclass(frozen=True)
class DeviceInfo:
    device_id: str
    vehicle_id: str
    status: str
    key_created_ms: int
    previous_in_grace: bool
    previous_valid_until_ms: int | None
    encrypted: bool


def list_devices(session: Session) -> list[DeviceInfo]:
    """Every device, without secrets."""
    now = now_ms()
    out = []
    for row in session.scalars(select(Device).order_by(Device.device_id)):
        grace = (row.previous_secret is not None and row.previous_valid_until_ms is not None
                 and now < row.previous_valid_until_ms)
        out.append(DeviceInfo(row.device_id, row.vehicle_id, row.status,
                              row.key_created_ms or row.created_ms, grace,
                              row.previous_valid_until_ms if grace else None,
                              is_sealed(row.secret_hex)))
    return out


_warned = False
_warn_lock = threading.Lock()


def _warn_plaintext_once() -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    log.warning("%s is not set: device secrets are stored in the clear; set it to 64 hex "
                "digits to encrypt them at rest", KEY_ENV)


class DeviceDirectory:
    """Read-through cache of devices for the tap path; unknown ids are re-checked after a while.

    An entry lives `ttl_s` seconds (5): a revocation or rotation takes effect within that.
    `key` is the at-rest key the secrets are sealed with (`Settings.secret_key`; None when
    they are stored in the clear).
    """

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 5.0, *,
                 key: bytes | None) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.key = key
        if self.key is None:
            _warn_plaintext_once()
        self._cache: dict[str, tuple[float, KnownDevice | None]] = {}
        self._lock = threading.Lock()

    def verify(self, message: SignedMessage, topic_device: str | None
               ) -> KnownDevice | Refusal:
        """The device that signed a message received on `topic_device`'s topic, or why
        the message cannot be trusted (`verify_signed`)."""
        return verify_signed(message, topic_device, self.get)

    def refusal(self, message: SignedMessage, topic_device: str | None) -> str | None:
        """The reason code for refusing a signed message, or None when it is trusted."""
        verdict = self.verify(message, topic_device)
        return verdict.reason if isinstance(verdict, Refusal) else None

    def is_known(self, device_id: str) -> bool:
        """Whether a device of this id is registered (active or revoked)."""
        return self.get(device_id) is not None

    def get(self, device_id: str) -> KnownDevice | None:
        """The device of this id, from the cache while it is fresh."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(device_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        with self.sessions() as session:
            row = session.execute(select(Device).where(Device.device_id == device_id)).scalar()
            known = None if row is None else self._known(row)
        with self._lock:
            self._cache[device_id] = (now, known)
        return known

    def _known(self, row: Device) -> KnownDevice:
        try:
            secret = unseal(row.secret_hex, self.key, row.device_id)
            previous = None if row.previous_secret is None else unseal(
                row.previous_secret, self.key, row.device_id)
        except SecretKeyError as exc:
            log.error("%s", exc)
            raise
        return KnownDevice(row.device_id, row.vehicle_id, secret, row.status == "active",
                           previous, row.previous_valid_until_ms)
