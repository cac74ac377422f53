"""The signed wire messages of contract section 2: Tap, Position and Receipt.

Defined once, imported by the validator agent and by the fare gateway. Parsing is
strict: anything malformed or wrongly typed raises `WireError` with a reason that
names the field, so that a consumer can quarantine it and carry on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from transit import jsonbytes
from transit.topics import ID_PATTERN

VERSION = 1
MAX_PAYLOAD_BYTES = 4096
CARD_PATTERN = re.compile(r"[0-9A-F]{8,32}")
SIG_PATTERN = re.compile(r"[0-9a-f]{64}")
REASON_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MAX_INT = 2**63 - 1
TAP_KINDS = ("entry", "exit")
RECEIPT_STATUSES = ("charged", "duplicate", "not_charged", "unknown_card", "conflict",
                    "rejected")

Scalar = str | int | bool



class WireError(ValueError):
    """A message that is not a valid Tap, Position or Receipt; `reason` is short and stable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def canonical(msg: Mapping[str, Any]) -> bytes:
    """Canonical form: UTF-8 JSON, keys sorted, no whitespace, `sig` left out."""
    body = {k: v for k, v in msg.items() if k != "sig"}
    return jsonbytes.dumps(body, sort_keys=True)


def signature(msg: Mapping[str, Any] | bytes, secret: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the canonical form, keyed with the device secret.

    `msg` is a message, or its canonical form already made (a parsed message keeps
    its own, so that verifying it does not encode it again).
    """
    canon = msg if isinstance(msg, bytes) else canonical(msg)
    return hmac.new(secret, canon, hashlib.sha256).hexdigest()


def _is_signature(sig: object, expected: str) -> bool:
    """Whether `sig` is the expected signature, compared in constant time."""
    return isinstance(sig, str) and hmac.compare_digest(sig, expected)


def verify(msg: Mapping[str, Any], secret: bytes) -> bool:
    """True when `msg["sig"]` is the signature of the rest of the message."""
    return _is_signature(msg.get("sig"), signature(msg, secret))


def body_digest(msg: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical form: equal for the same message, whoever re-sends it."""
    return hashlib.sha256(canonical(msg)).hexdigest()


# Bytes that send a payload down the slow path: JSON whitespace (the canonical form has
# none) and the backslash (an escape, which the canonical form may spell otherwise).
_NOT_CANONICAL = re.compile(rb"[ \t\n\r\\]")


def received_canonical(payload: bytes, obj: Mapping[str, Any]) -> bytes | None:
    """The canonical form of `obj` (the message `payload` decodes to, without its `sig`),
    cut from the bytes received, or None where they may not be exactly that.

    A validator sends its message in canonical form with `sig` in its sorted place, so
    the signed bytes are the payload without its `"sig":"..."` member: found by splicing
    instead of encoding the message again (3.9 µs against 7.5; a tap parsed and verified
    in 31 µs instead of 39 on the 2-core development machine, 2026-12-02). Only when the
    payload is provably `json.dumps(obj, sort_keys=True, separators=(",", ":"))`
    with `sig` added: ASCII (`json.dumps` escapes nothing then), no whitespace byte, no
    backslash (no escape that could be spelt another way), no value null (an unset
    optional field: the canonical form of the parsed message leaves it out), no `:-0`
    (an integer the canonical form writes `0`), keys in sorted order. Numbers are then
    integers (the parsers refuse the rest) and keys unique (`decode`). Anything else
    gives None, and the caller encodes the message as the contract does; a property test
    compares the two on random and adversarial payloads.
    """
    sig = obj.get("sig")
    if (not isinstance(sig, str) or not payload.isascii()
            or _NOT_CANONICAL.search(payload) is not None or b":-0" in payload
            or None in obj.values()):
        return None
    keys = list(obj)
    if keys != sorted(keys):
        return None
    # With no backslash every `"` opens or closes a string, so `"sig":"` is the member.
    member = b'"sig":"' + sig.encode() + b'"'
    at = payload.find(member)
    if at < 1:
        return None
    end = at + len(member)
    if payload[at - 1] == 0x2C:  # `,`: a member before it; its leading comma goes
        return payload[:at - 1] + payload[end:]
    if payload[end] == 0x2C:  # the first member: the comma after it goes
        return payload[:at] + payload[end + 1:]
    return payload[:at] + payload[end:]  # the only member


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys all differ, or WireError.

    With a key given twice, the canonical form of the message would be that of whichever
    copy the parser kept (Python keeps the last, other parsers the first): the signature
    would then cover a body that another reader of the same bytes does not see. The
    check costs 1.5 µs a tap (5.3 µs to decode one without it, 15.7 to parse it whole).
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise WireError("malformed", f"key {twice[:64]!r} appears more than once")
    return obj


# One decoder for every message: `json.loads` with a hook builds a new one per call, a
# tenth of the JSON decoding time of a position.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def decode(payload: bytes) -> dict[str, Any]:
    """Bytes off the wire to a JSON object, or WireError."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise WireError("too_large", f"{len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}")
    fast = jsonbytes.loads_object(payload)
    if fast is not None:
        return fast
    try:
        obj = _DECODER.decode(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WireError("malformed", f"not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise WireError("malformed", f"not JSON: {exc.msg} at {exc.pos}") from exc
    except RecursionError:
        raise WireError("malformed", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise WireError("malformed", "not a JSON object")
    return obj


class _Fields:
    """Typed access to a decoded message's fields, raising WireError with the field name."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.obj = obj
        self.used: set[str] = set()

    def _get(self, name: str, optional: bool) -> Any:
        self.used.add(name)
        if name not in self.obj or self.obj[name] is None:
            if optional:
                return None
            raise WireError("missing_field", f"{name} is required")
        return self.obj[name]

    def integer(self, name: str, lo: int = -MAX_INT, hi: int = MAX_INT,
                optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError("wrong_type", f"{name} must be an integer")
        if not lo <= value <= hi:
            raise WireError("out_of_range", f"{name} must be in [{lo}, {hi}], got {value}")
        return value

    def boolean(self, name: str) -> bool:
        value = self._get(name, False)
        if not isinstance(value, bool):
            raise WireError("wrong_type", f"{name} must be true or false")
        return value

    def string(self, name: str, pattern: re.Pattern[str] | None = None,
               choices: tuple[str, ...] = (), optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None:
            return None
        if not isinstance(value, str):
            raise WireError("wrong_type", f"{name} must be a string")
        if pattern is not None and not pattern.fullmatch(value):
            raise WireError("bad_value", f"{name} has an invalid format: {value[:80]!r}")
        if choices and value not in choices:
            raise WireError("bad_value", f"{name} must be one of {', '.join(choices)}")
        return value

    def extras(self) -> dict[str, Scalar]:
        """Fields this version does not know: kept (they are signed) if they are scalars."""
        out: dict[str, Scalar] = {}
        for key, value in self.obj.items():
            if key in self.used:
                continue
            if not isinstance(value, (str, int, bool)) or isinstance(value, float):
                raise WireError("wrong_type", f"{key} must be a string, integer or boolean")
            out[key] = value
        return out


M = TypeVar("M", bound="Message")


@dataclass(frozen=True)
class Message:
    """Common behaviour of the signed messages."""

    KIND: ClassVar[str] = "message"

    def to_dict(self) -> dict[str, Scalar]:
        """The message as a JSON object; optional fields that are unset are left out."""
        out: dict[str, Scalar] = {}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extra)  # type: ignore[attr-defined]
        return out

    def signed(self: M, secret: bytes) -> M:
        """A copy carrying the signature made with `secret`."""
        canon = self.canonical
        return _with_sig(self, signature(canon, secret), canon)

    def verify(self, secret: bytes) -> bool:
        """True when the message's signature was made with `secret`."""
        return _is_signature(getattr(self, "sig", None), signature(self.canonical, secret))

    @cached_property
    def canonical(self) -> bytes:
        """The canonical form of the message without `sig` (what is signed)."""
        return canonical(self.to_dict())

    def encode(self) -> bytes:
        """Canonical bytes to publish (the canonical form with `sig` included)."""
        return jsonbytes.dumps(self.to_dict(), sort_keys=True)

    @cached_property
    def digest(self) -> str:
        """SHA-256 of the unsigned canonical body."""
        return hashlib.sha256(self.canonical).hexdigest()

    @classmethod
    def parse(cls: type[M], payload: bytes) -> M:
        """Decode and validate a payload; raises WireError.

        When the payload is already in canonical form, the message keeps the received
        bytes less its `sig` member as its canonical form (`received_canonical`), so that
        verifying it does not encode it again.
        """
        obj = decode(payload)
        msg = cls.from_dict(obj)
        canon = received_canonical(payload, obj)
        if canon is not None:
            msg.__dict__["canonical"] = canon  # what the cached property would compute
        return msg

    @classmethod
    def from_dict(cls: type[M], obj: Mapping[str, Any]) -> M:
        raise NotImplementedError


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """A message class's wire fields, in declaration order (computed once per class)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls) if f.name != "extra")
    return names


def _with_sig(msg: M, sig: str, canon: bytes) -> M:
    """A copy of `msg` with `sig` set; its canonical form (which leaves `sig` out) is
    the one just computed. Copied field by field: `dataclasses.replace` re-validates
    nothing here and cost more than the signature itself."""
    copy = object.__new__(type(msg))
    copy.__dict__.update(msg.__dict__)
    copy.__dict__["sig"] = sig
    copy.__dict__["canonical"] = canon  # what the cached property would compute
    return copy


def _version(f: _Fields) -> None:
    if f.integer("v", 0, 1000) != VERSION:
        raise WireError("bad_version", f"v must be {VERSION}")


@dataclass(frozen=True)
class Tap(Message):
    """One card presented at a validator; `tap_id` is its identity end to end."""

    KIND: ClassVar[str] = "tap"

    device_id: str
    seq: int
    vehicle_id: str
    route_id: str
    card: str
    kind: str
    accepted: bool
    ts: int
    lat_e6: int
    lon_e6: int
    v: int = VERSION
    trip_id: str | None = None
    reason: str | None = None
    sig: str | None = None
    extra: Mapping[str, Scalar] = field(default_factory=dict)

    @property
    def tap_id(self) -> str:
        return f"{self.device_id}:{self.seq}"

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Tap:
        f = _Fields(obj)
        _version(f)
        tap = cls(
            device_id=f.string("device_id", ID_PATTERN),
            seq=f.integer("seq", 1),
            vehicle_id=f.string("vehicle_id", ID_PATTERN),
            route_id=f.string("route_id", ID_PATTERN),
            card=f.string("card", CARD_PATTERN),
            kind=f.string("kind", choices=TAP_KINDS),
            accepted=f.boolean("accepted"),
            ts=f.integer("ts", 0),
            lat_e6=f.integer("lat_e6", -90_000_000, 90_000_000),
            lon_e6=f.integer("lon_e6", -180_000_000, 180_000_000),
            trip_id=f.string("trip_id", ID_PATTERN, optional=True),
            reason=f.string("reason", REASON_PATTERN, optional=True),
            sig=f.string("sig", SIG_PATTERN),
            extra=f.extras(),
        )
        return tap


@dataclass(frozen=True)
class Position(Message):
    """Where a vehicle is, as its validator saw it."""

    KIND: ClassVar[str] = "pos"

    device_id: str
    vehicle_id: str
    route_id: str
    ts: int
    lat_e6: int
    lon_e6: int
    v: int = VERSION
    speed_cms: int | None = None
    bearing_deg: int | None = None
    trip_id: str | None = None
    sig: str | None = None
    extra: Mapping[str, Scalar] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Position:
        f = _Fields(obj)
        _version(f)
        return cls(
            device_id=f.string("device_id", ID_PATTERN),
            vehicle_id=f.string("vehicle_id", ID_PATTERN),
            route_id=f.string("route_id", ID_PATTERN),
            ts=f.integer("ts", 0),
            lat_e6=f.integer("lat_e6", -90_000_000, 90_000_000),
            lon_e6=f.integer("lon_e6", -180_000_000, 180_000_000),
            speed_cms=f.integer("speed_cms", 0, 100_000, optional=True),
            bearing_deg=f.integer("bearing_deg", 0, 359, optional=True),
            trip_id=f.string("trip_id", ID_PATTERN, optional=True),
            sig=f.string("sig", SIG_PATTERN),
            extra=f.extras(),
        )


@dataclass(frozen=True)
class Receipt(Message):
    """The gateway's answer to one tap, signed with the device's key.

    `balance` is the card's, told only where the tap charged the card (`charged`, and
    `duplicate` of a charged tap): any validator can present any card token, and a
    receipt must not tell it whether a card exists or what it holds. `reason` names the
    rule a `rejected` tap broke (contract section 10). The gateway gives no other
    receipt a reason, but a reader accepts one (it is signed, and kept): every receipt is
    final, and a validator that refused a later gateway's receipt for an extra field
    would re-send its tap for ever.
    """

    KIND: ClassVar[str] = "receipt"

    device_id: str
    seq: int
    status: str
    fare: int
    currency: str
    balance: int | None = None
    reason: str | None = None
    v: int = VERSION
    sig: str | None = None
    extra: Mapping[str, Scalar] = field(default_factory=dict)

    @property
    def tap_id(self) -> str:
        return f"{self.device_id}:{self.seq}"

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Receipt:
        f = _Fields(obj)
        _version(f)
        receipt = cls(
            device_id=f.string("device_id", ID_PATTERN),
            seq=f.integer("seq", 1),
            status=f.string("status", choices=RECEIPT_STATUSES),
            fare=f.integer("fare"),
            currency=f.string("currency", re.compile(r"[A-Z]{3}")),
            balance=f.integer("balance", optional=True),
            reason=f.string("reason", REASON_PATTERN, optional=True),
            sig=f.string("sig", SIG_PATTERN),
            extra=f.extras(),
        )
        if receipt.status == "rejected" and receipt.reason is None:
            raise WireError("missing_field", "reason is required for a rejected receipt")
        return receipt
