"""The registry of validators and their secrets.

Secrets at rest: with ``TRANSIT_SECRET_KEY`` (64 hex digits) set, a device secret is stored
as ``v1:<nonce hex>:<AES-256-GCM ciphertext hex>``, bound to its device id as associated
data, so a database dump does not hold it in the clear. Rows stored as plain hex (written
before the setting existed, or without it) keep working and are encrypted when the device
is rotated. Secrets are never logged. The deny list's signing key is sealed the same way
(`fare_gateway.denylist`).

Every change of a device (add, move, rotate, revoke) tells the running gateways at once:
on PostgreSQL a ``NOTIFY`` on `CHANGES_CHANNEL` in the same transaction, delivered at
commit; on SQLite a bump of the device's `change_seq`, which gateways poll (see
`fare_gateway.adapters.device_watch`). The directory's time to live is only the fallback.

A device's vehicle has a history (`DeviceVehicle`: from when it rode on which vehicle),
and a tap or a position is judged against the vehicle its device rode on at the message's
`ts`: a move takes effect at the time of the move command, and taps made on the old
vehicle before it, still in an offline bus's spool, are charged when they arrive.

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
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import Device, DeviceVehicle
from ledger.adapters.sql import one_of
from transit.settings import SettingsError, hex_key
from transit.topics import ID_PATTERN

log = logging.getLogger(__name__)
V = TypeVar("V")

SECRET_BYTES = 32
KEY_ENV = "TRANSIT_SECRET_KEY"
SEALED_PREFIX = "v1:"
DEFAULT_GRACE_HOURS = 24.0
CHANGES_CHANNEL = "transit_devices"  # PostgreSQL NOTIFY channel; the payload is a device id


class DeviceError(ValueError):
    """A device registration that cannot be done."""


class SecretKeyError(DeviceError):
    """The at-rest encryption key is malformed, missing or wrong for a stored secret."""


def _never() -> bool:
    return False


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Binding:
    """From `from_ms` (epoch ms) on, until the next binding, the device rode on
    `vehicle_id`."""

    from_ms: int
    vehicle_id: str


@dataclass(frozen=True)
class KnownDevice:
    """A registered device as the tap path needs it; `vehicle_id` is the vehicle it rides
    on now, `history` its bindings oldest first (empty: it has always ridden on
    `vehicle_id`)."""

    device_id: str
    vehicle_id: str
    secret: bytes
    active: bool
    previous_secret: bytes | None = field(default=None, repr=False)
    previous_valid_until_ms: int | None = None
    history: tuple[Binding, ...] = ()

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

    def vehicle_at(self, ts: int) -> str:
        """The vehicle the device rode on at `ts` (epoch ms): the newest binding begun by
        then. Before the first one, the first: a validator's clock may lag its
        registration, and before it the device had no vehicle to speak for."""
        for binding in reversed(self.history):  # most taps are recent: one step
            if binding.from_ms <= ts:
                return binding.vehicle_id
        return self.history[0].vehicle_id if self.history else self.vehicle_id


# -- signatures ----------------------------------------------------------------------------------

class SignedMessage(Protocol):
    """A wire message signed with its device's key, naming its vehicle and its time (a tap,
    a position)."""

    @property
    def device_id(self) -> str: ...

    @property
    def vehicle_id(self) -> str: ...

    @property
    def ts(self) -> int: ...

    def verify(self, secret: bytes) -> bool: ...


@dataclass(frozen=True)
class Refusal:
    """Why a signed message cannot be trusted: a stable reason code, which the quarantine
    and the metrics use, and a line for people.

    `signer` is set when the message is correctly signed by a known, active device and
    only breaks a rule (contract section 10): that device's key can sign the answer that
    tells it so. For every other refusal there is no key to trust, so no answer.
    """

    reason: str  # topic_mismatch | unknown_device | inactive_device | bad_signature
    #              | wrong_vehicle
    detail: str
    signer: KnownDevice | None = None


def verify_signed(message: SignedMessage, topic_device: str | None,
                  lookup: Callable[[str], KnownDevice | None]) -> KnownDevice | Refusal:
    """The device that signed `message`, or why the message cannot be trusted.

    The topic must name the device the message says it comes from (checked first, so a
    message on another device's topic costs no look-up); that device must be known and
    active, the signature must match one of its keys, and the message must name the
    vehicle the device rode on at the message's `ts`: a validator speaks for its own
    vehicle only, or one bus could make another's taps repeats and move it on the map; and
    a tap made on the old vehicle before a move is still that vehicle's.
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
    vehicle = device.vehicle_at(message.ts)
    if message.vehicle_id != vehicle:
        return Refusal("wrong_vehicle", f"device {message.device_id} rode on {vehicle} at "
                                        f"ts {message.ts}, not {message.vehicle_id}", device)
    return device


# -- encryption at rest --------------------------------------------------------------------------

def master_key(value: str) -> bytes | None:
    """The at-rest key written as hex (as ``TRANSIT_SECRET_KEY`` holds it); None if blank."""
    try:
        return hex_key(value, KEY_ENV)
    except SettingsError as exc:
        raise SecretKeyError(str(exc)) from None


def seal(secret: bytes, key: bytes | None, bound_to: str) -> str:
    """The stored form of a secret: encrypted when there is a key, else plain hex.

    `bound_to` (a device id for device secrets) is the associated data: the sealed value
    only opens under the same name, so it cannot be moved to another row.
    """
    if key is None:
        return secret.hex()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, secret, bound_to.encode())
    return f"{SEALED_PREFIX}{nonce.hex()}:{sealed.hex()}"


def is_sealed(stored: str) -> bool:
    return stored.startswith(SEALED_PREFIX)


def unseal(stored: str, key: bytes | None, bound_to: str, what: str | None = None) -> bytes:
    """The secret from its stored form; SecretKeyError if it cannot be decrypted.

    `what` names the secret in errors (default: the secret of device `bound_to`).
    """
    what = what or f"the secret of device {bound_to}"
    if not is_sealed(stored):
        try:
            return bytes.fromhex(stored)
        except ValueError:
            raise SecretKeyError(f"the stored {what.removeprefix('the ')} is not "
                                 "readable") from None
    if key is None:
        raise SecretKeyError(f"{what} is encrypted and {KEY_ENV} is not set")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        nonce_hex, sealed_hex = stored[len(SEALED_PREFIX):].split(":")
        return AESGCM(key).decrypt(bytes.fromhex(nonce_hex), bytes.fromhex(sealed_hex),
                                   bound_to.encode())
    except (ValueError, InvalidTag):
        raise SecretKeyError(f"cannot decrypt {what}: wrong {KEY_ENV}, or the stored value "
                             "is damaged") from None


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
    session.add(DeviceVehicle(device_id=device_id, from_ms=created, vehicle_id=vehicle_id))
    _announce(session, device_id)  # a gateway may have cached the id as unknown
    row.plain_secret = secret  # type: ignore[attr-defined]
    return row, generated


def _device(session: Session, device_id: str, *, lock: bool = False) -> Device:
    row = session.get(Device, device_id, with_for_update=lock)
    if row is None:
        raise DeviceError(f"no device {device_id}")
    return row


def _announce(session: Session, device_id: str) -> None:
    """Tell every running gateway, when this transaction commits, that the device changed.

    PostgreSQL delivers the NOTIFY at commit (and drops it on rollback). On SQLite the
    device takes the next `change_seq`: writers hold the database's one write lock from
    BEGIN IMMEDIATE to commit, so the numbers commit in order and a poller that has seen
    number n has seen every change up to n.
    """
    session.flush()
    newest = select(func.coalesce(func.max(Device.change_seq), 0) + 1).scalar_subquery()
    session.execute(update(Device).where(Device.device_id == device_id)
                    .values(change_seq=newest).execution_options(synchronize_session=False))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CHANGES_CHANNEL, device_id)))


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
    _announce(session, device_id)
    return new, generated


def revoke_device(session: Session, device_id: str) -> bool:
    """Revoke a device: once the transaction commits, every running gateway refuses its
    taps and positions within a second. Its keys are dropped. Returns whether it was
    active until now (False: it was revoked already)."""
    row = _device(session, device_id)
    was_active = row.status == "active"
    row.status = "revoked"
    row.previous_secret = None
    row.previous_valid_until_ms = None
    _announce(session, device_id)
    return was_active


def move_device(session: Session, device_id: str, vehicle_id: str
                ) -> tuple[str, int] | None:
    """The validator rides on `vehicle_id` from now on; returns the vehicle it was on and
    the time (epoch ms) the move takes effect, or None when it is on that vehicle already
    (nothing changes).

    The old binding stays in the history: taps dated before the move that name the old
    vehicle are still charged, those dated after it must name the new one. Every running
    gateway learns of the move within a second, as of a revocation.
    """
    _check_ids(device_id=device_id, vehicle_id=vehicle_id)
    row = _device(session, device_id, lock=True)  # two moves at once: one after the other
    if row.status != "active":
        raise DeviceError(f"device {device_id} is revoked")
    if row.vehicle_id == vehicle_id:
        return None
    latest = session.scalar(select(func.max(DeviceVehicle.from_ms))
                            .where(DeviceVehicle.device_id == device_id))
    # After the binding before it, even should this host's clock have stepped back.
    now = now_ms()
    from_ms = now if latest is None else max(now, latest + 1)
    session.add(DeviceVehicle(device_id=device_id, from_ms=from_ms, vehicle_id=vehicle_id))
    was, row.vehicle_id = row.vehicle_id, vehicle_id
    _announce(session, device_id)
    return was, from_ms


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


def warn_if_unsealed(key: bytes | None) -> None:
    """Warn once per process when there is no at-rest key (secrets then stay in the clear)."""
    global _warned
    if key is not None:
        return
    with _warn_lock:
        if _warned:
            return
        _warned = True
    log.warning("%s is not set: device secrets and the deny-list signing key are stored in "
                "the clear; set it to 64 hex digits to encrypt them at rest", KEY_ENV)


class _Lru(Generic[V]):
    """A bounded map from device id to (when cached, value), least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, device_id: str, now: float, ttl_s: float) -> V | None:
        """The cached value while it is younger than `ttl_s`."""
        hit = self._items.get(device_id)
        if hit is None or now - hit[0] >= ttl_s:
            return None
        self._items.move_to_end(device_id)
        return hit[1]

    def put(self, device_id: str, now: float, value: V) -> None:
        self._items[device_id] = (now, value)
        self._items.move_to_end(device_id)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def pop(self, device_id: str) -> None:
        self._items.pop(device_id, None)

    def clear(self) -> None:
        self._items.clear()


class DeviceDirectory:
    """Read-through cache of devices for the tap path, told of every change at once.

    A device's entry is dropped as soon as its change is announced (`forget`, called by
    the watcher of `fare_gateway.adapters.device_watch`), so a revocation or a move takes
    effect within a second. While changes are heard (`changes_heard`, set by the wiring
    to the watcher's state) an entry lives `heard_ttl_s` (300): longer than any
    validator's position cadence, so the fleet stays cached (with 5 s, a fleet of 2,000
    buses reporting every 5 s missed the cache on nearly every position, and position
    ingest fell to a quarter of its rate on database look-ups). While they are not heard,
    `ttl_s` (5) is what bounds how long a revocation can go unnoticed. Ids that are not
    registered are remembered apart, briefly (`unknown_ttl_s`) and at most
    `unknown_capacity` of them: a flood of made-up ids (measured: +22 MB per 50,000 when
    they were kept without bound) only churns that small table and never pushes the
    fleet's own devices out. Both tables drop their least recently used entry when full,
    never everything at once.

    `key` is the at-rest key the secrets are sealed with (`Settings.secret_key`; None when
    they are stored in the clear).
    """

    def __init__(self, sessions: sessionmaker[Session], ttl_s: float = 5.0, *,
                 key: bytes | None, capacity: int = 20_000, unknown_capacity: int = 2_048,
                 unknown_ttl_s: float = 2.0, heard_ttl_s: float = 300.0) -> None:
        self.sessions = sessions
        self.ttl_s = ttl_s
        self.heard_ttl_s = max(heard_ttl_s, ttl_s)
        # Whether every device change is being heard as it commits (the watcher's
        # `hearing`); until the wiring says so, changes are not assumed heard.
        self.changes_heard: Callable[[], bool] = _never
        self.unknown_ttl_s = min(unknown_ttl_s, ttl_s)
        self.key = key
        warn_if_unsealed(key)
        self._known: _Lru[KnownDevice] = _Lru(capacity)
        self._unknown: _Lru[bool] = _Lru(unknown_capacity)  # ids found not registered
        # Bumped by every forget/clear: a look-up that read the database before one of
        # them does not put what it read (perhaps from before the change) in the cache.
        self._epoch = 0
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
        ttl_s = self.heard_ttl_s if self.changes_heard() else self.ttl_s
        with self._lock:
            known = self._known.get(device_id, now, ttl_s)
            unknown = known is None and self._unknown.get(device_id, now, self.unknown_ttl_s)
            epoch = self._epoch
        if known is not None or unknown:
            return known
        with self.sessions() as session:
            # The device and its history in one query: a look-up costs one round trip.
            rows = session.execute(
                select(Device, DeviceVehicle.from_ms, DeviceVehicle.vehicle_id)
                .outerjoin(DeviceVehicle, DeviceVehicle.device_id == Device.device_id)
                .where(Device.device_id == device_id).order_by(DeviceVehicle.from_ms)).all()
            known = None if not rows else self._known_device(
                rows[0][0], tuple(Binding(f, v) for _d, f, v in rows if f is not None))
        with self._lock:
            if self._epoch == epoch:
                if known is None:
                    self._unknown.put(device_id, now, True)
                else:
                    self._known.put(device_id, now, known)
        return known

    def get_many(self, device_ids: Iterable[str]) -> dict[str, KnownDevice | None]:
        """The devices of these ids (None: not registered): the cached ones as `get`
        gives them, all the others in one query."""
        now = time.monotonic()
        ttl_s = self.heard_ttl_s if self.changes_heard() else self.ttl_s
        out: dict[str, KnownDevice | None] = {}
        missing: list[str] = []
        with self._lock:
            for device_id in dict.fromkeys(device_ids):
                known = self._known.get(device_id, now, ttl_s)
                if known is not None or self._unknown.get(device_id, now,
                                                          self.unknown_ttl_s):
                    out[device_id] = known
                else:
                    missing.append(device_id)
            epoch = self._epoch
        if not missing:
            return out
        found: dict[str, KnownDevice] = {}
        with self.sessions() as session:
            # Chunks well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
            for i in range(0, len(missing), 2048):
                chunk = missing[i:i + 2048]
                # Padded to a power of two (the last id again): an IN list's text
                # changes with its length, and every text is a statement the driver
                # keeps prepared (SQLite: 128 a connection, each of up to 2,000
                # parameters; 5 MB more after a flood of made-up ids). Twelve texts
                # at most; PostgreSQL gets one array whatever the length.
                chunk += [chunk[-1]] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
                rows = session.execute(
                    select(Device, DeviceVehicle.from_ms, DeviceVehicle.vehicle_id)
                    .outerjoin(DeviceVehicle, DeviceVehicle.device_id == Device.device_id)
                    .where(one_of(session, Device.device_id, chunk))
                    .order_by(Device.device_id, DeviceVehicle.from_ms)).all()
                by_device: dict[str, tuple[Device, list[Binding]]] = {}
                for row, from_ms, vehicle_id in rows:
                    entry = by_device.setdefault(row.device_id, (row, []))
                    if from_ms is not None:
                        entry[1].append(Binding(from_ms, vehicle_id))
                for device_id, (row, history) in by_device.items():
                    found[device_id] = self._known_device(row, tuple(history))
        with self._lock:
            keep = self._epoch == epoch
            for device_id in missing:
                known = found.get(device_id)
                out[device_id] = known
                if not keep:
                    continue
                if known is None:
                    self._unknown.put(device_id, now, True)
                else:
                    self._known.put(device_id, now, known)
        return out

    def prefetch(self, device_ids: Iterable[str]) -> None:
        """Cache the devices of a batch at once (`get_many`), so that verifying each
        message of the batch finds its device in the cache."""
        self.get_many(device_ids)

    def forget(self, device_id: str) -> None:
        """Drop what is cached of one device (it changed): the next look-up reads it."""
        with self._lock:
            self._epoch += 1
            self._known.pop(device_id)
            self._unknown.pop(device_id)

    def clear(self) -> None:
        """Drop everything cached (changes may have been missed)."""
        with self._lock:
            self._epoch += 1
            self._known.clear()
            self._unknown.clear()

    def cached(self) -> tuple[int, int]:
        """How many (registered, unknown) ids are cached now."""
        with self._lock:
            return len(self._known), len(self._unknown)

    def _known_device(self, row: Device, history: tuple[Binding, ...]) -> KnownDevice:
        try:
            secret = unseal(row.secret_hex, self.key, row.device_id)
            previous = None if row.previous_secret is None else unseal(
                row.previous_secret, self.key, row.device_id)
        except SecretKeyError as exc:
            log.error("%s", exc)
            raise
        return KnownDevice(row.device_id, row.vehicle_id, secret, row.status == "active",
                           previous, row.previous_valid_until_ms, history)
