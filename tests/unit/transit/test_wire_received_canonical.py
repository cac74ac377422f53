"""The canonical form cut from the received bytes (`wire.received_canonical`) is exactly
the one the contract's encoding gives, on random and adversarial payloads: whenever the
fast path answers, it agrees with `canonical` of the parsed message, and a signature
verifies the same way either way."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from transit import wire
from transit.wire import Tap, WireError

KEY = bytes(range(32))
BASE: dict[str, Any] = {"v": 1, "device_id": "SBY-0042-A", "seq": 1234,
                        "vehicle_id": "SBY-0042", "route_id": "R1",
                        "card": "04A1B2C3D4E5F6", "kind": "entry", "accepted": True,
                        "ts": 1764313202123, "lat_e6": -7257500, "lon_e6": 112752100}

scalars = st.one_of(st.text(max_size=12), st.integers(-2**70, 2**70), st.booleans(),
                    st.none(), st.floats(allow_nan=False, allow_infinity=False))
extra_keys = st.text(min_size=1, max_size=8).filter(lambda k: k not in BASE and k != "sig")


def _slow(payload: bytes) -> bytes:
    """The canonical form as the contract builds it, from the parsed message."""
    obj = wire.decode(payload)
    return wire.canonical(Tap.from_dict(obj).to_dict())


def _encodings(body: dict[str, Any], sort: bool, spaced: bool, ascii_only: bool
               ) -> bytes:
    return json.dumps(body, sort_keys=sort, ensure_ascii=ascii_only,
                      separators=(", ", ": ") if spaced else (",", ":")).encode()


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    body = dict(BASE)
    for key, value in draw(st.dictionaries(extra_keys, scalars, max_size=3)).items():
        body[key] = value
    if draw(st.booleans()):
        body["trip_id"] = draw(st.sampled_from(["T-1", None, "x y", "\u00e9"]))
    if draw(st.booleans()):
        body["seq"] = draw(st.sampled_from([0, -0, 1, 2**63]))
    signed = dict(body, sig=wire.signature(body, KEY))
    if draw(st.booleans()):
        signed["sig"] = draw(st.sampled_from(["0" * 64, "A" * 64, "sig", "a" * 63]))
    items = list(signed.items())
    if not draw(st.booleans()):
        items = draw(st.permutations(items))
    raw = _encodings(dict(items), sort=False, spaced=draw(st.booleans()),
                     ascii_only=draw(st.booleans()))
    tweak = draw(st.sampled_from(["none", "escape", "dup", "neg0", "space", "null"]))
    if tweak == "escape":  # the same text, spelt with an escape
        raw = raw.replace(b'"R1"', b'"\\u00521"', 1)
    elif tweak == "dup":
        raw = raw[:-1] + b',"card":"04FFFFFFFF"}'
    elif tweak == "neg0":
        raw = raw.replace(b'"lon_e6":112752100', b'"lon_e6":-0', 1)
    elif tweak == "space":
        raw = raw.replace(b",", b" ,", 1)
    elif tweak == "null":
        raw = raw[:-1] + b',"zz":null}'
    return raw


@settings(max_examples=600, deadline=None)
@given(payloads())
def test_the_fast_path_agrees_with_the_canonical_encoding(payload: bytes) -> None:
    try:
        slow = _slow(payload)
    except WireError:
        return
    obj = wire.decode(payload)
    fast = wire.received_canonical(payload, obj)
    if fast is not None:
        assert fast == slow
    tap = Tap.parse(payload)
    assert tap.canonical == slow
    assert tap.verify(KEY) == wire.verify(tap.to_dict(), KEY)


def test_a_canonical_payload_takes_the_fast_path() -> None:
    tap = Tap(device_id="SBY-0042-A", seq=7, vehicle_id="SBY-0042", route_id="R1",
              card="04A1B2C3D4E5F6", kind="entry", accepted=True, ts=5, lat_e6=-1,
              lon_e6=2, trip_id="T-9").signed(KEY)
    payload = tap.encode()
    assert wire.received_canonical(payload, wire.decode(payload)) == tap.canonical
    assert Tap.parse(payload).verify(KEY)


def test_payloads_not_in_canonical_form_take_the_slow_path() -> None:
    body = dict(BASE, sig=wire.signature(BASE, KEY))
    for payload in (json.dumps(body).encode(),                      # spaces
                    json.dumps(body, separators=(",", ":")).encode(),  # keys unsorted
                    json.dumps(dict(body, reason="caf\u00e9"), sort_keys=True,
                               ensure_ascii=False, separators=(",", ":")).encode(),
                    json.dumps(dict(body, trip_id=None), sort_keys=True,
                               separators=(",", ":")).encode()):
        assert wire.received_canonical(payload, wire.decode(payload)) is None


def test_a_signature_over_other_bytes_is_refused_either_way() -> None:
    body = dict(BASE, sig=wire.signature(dict(BASE, ts=1), KEY))
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert wire.received_canonical(payload, wire.decode(payload)) is not None
    assert not Tap.parse(payload).verify(KEY)
