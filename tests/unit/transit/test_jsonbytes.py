"""`transit.jsonbytes` writes and reads exactly what the standard library does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transit import jsonbytes

# Text that reaches every branch: printable ASCII, the two escaped ASCII characters,
# control characters, DEL, and characters beyond ASCII (surrogates included).
TEXT = st.text(alphabet=st.one_of(
    st.sampled_from('"\\\x00\x1f\x7f\t\n/'), st.characters(min_codepoint=0x20, max_codepoint=0x7e),
    st.characters()), max_size=12)
SCALARS = st.one_of(
    st.none(), st.booleans(), TEXT,
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.tuples(inner, inner),
    st.dictionaries(TEXT, inner, max_size=5)), max_leaves=20)


def standard(value: Any, sort_keys: bool) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()


@settings(max_examples=2000, deadline=None)
@given(value=VALUES, sort_keys=st.booleans())
def test_dumps_is_the_standard_librarys_bytes(value: Any, sort_keys: bool) -> None:
    assert jsonbytes.dumps(value, sort_keys=sort_keys) == standard(value, sort_keys)


@pytest.mark.parametrize("value", [
    ["taps", "BENCH-0001:5", 5, True, None, -7257500, "2025-11-28"],  # orjson's path
    {"b": 1, "a": [1, 2]},
    ["\x7f"], ["é"], ['"'], ["\\"], [1.0], [1e16], [2**64], [-(2**63) - 1], [float("nan")],
    ("tuple", 1),
])
def test_dumps_on_what_the_fast_path_must_refuse(value: Any) -> None:
    for sort_keys in (False, True):
        assert jsonbytes.dumps(value, sort_keys=sort_keys) == standard(value, sort_keys)


def test_dumps_raises_as_the_standard_library_does() -> None:
    with pytest.raises(TypeError):
        jsonbytes.dumps([b"bytes"])


def standard_object(payload: bytes) -> dict[str, Any] | None:
    """What the wire's own reading gives: a dict whose keys all differ, or None."""
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise ValueError("twice")
        return obj
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=unique)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


MEMBERS = st.lists(st.tuples(TEXT, VALUES), max_size=6)


@settings(max_examples=2000, deadline=None)
@given(members=MEMBERS, spacing=st.sampled_from(["", " ", "\n"]))
def test_loads_object_reads_what_the_standard_library_reads(
        members: list[tuple[str, Any]], spacing: str) -> None:
    # Written by hand so that a key may come twice.
    body = ("," + spacing).join(f"{json.dumps(k)}:{spacing}{json.dumps(v)}" for k, v in members)
    payload = ("{" + spacing + body + "}").encode()
    fast = jsonbytes.loads_object(payload)
    if fast is not None:
        assert fast == standard_object(payload)
        assert [type(v) for v in fast.values()] == [
            type(v) for v in standard_object(payload).values()]
        assert json.dumps(fast, sort_keys=True) == json.dumps(standard_object(payload),
                                                              sort_keys=True)


@pytest.mark.parametrize("payload", [
    b'{"a":1,"a":2}', b'{"a":{"b":1,"b":2}}', b'{"a":"\\u0061"}', b'[1]', b'{"a":NaN}',
    b'{"a":1', b"\xff", b'{"a":123456789012345678901234567890}', b'{"a" :1}',
    b'{"a":1.5}', b'{"a":[1]}', b'{"a":{}}',
])
def test_loads_object_leaves_the_doubtful_to_the_standard_library(payload: bytes) -> None:
    assert jsonbytes.loads_object(payload) is None


def test_loads_object_reads_a_canonical_message() -> None:
    payload = b'{"accepted":true,"card":"04C000000001","seq":5,"lat_e6":-7257500,"x":null}'
    assert jsonbytes.loads_object(payload) == json.loads(payload)
