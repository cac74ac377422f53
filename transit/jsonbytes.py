"""Compact JSON as the standard library writes it, made by orjson where that is the same.

What is signed and fingerprinted is defined as the bytes of Python's `json` module with
`separators=(",", ":")` (and `sort_keys=True` for messages): ASCII, every character
outside printable ASCII escaped, `"` and `\\` escaped. orjson writes those same bytes,
in half the time with the checks (orjson alone takes a tenth), for a flat value: a list,
tuple or string-keyed dict of strings of printable ASCII without `"` or `\\`, integers
within 64 bits, booleans and None (a message, a receipt, most fingerprinted rows).
Anything else (a float, a big integer, a nested value, a character that is escaped,
which the two libraries escape differently or not at all) is written by `json`: `dumps`
checks the types before and the bytes after, and never gives bytes that `json` would
not. A property test compares the two on random values.

`loads_object` reads a message the same way in reverse: orjson for a flat object of
scalars with no backslash in it (no escape to spell two ways) whose members are counted
(a key given twice, which orjson would keep silently, sends it to `json`, and so does a
float: orjson reads an integer beyond 64 bits as one), `json` with the caller's checks
for everything else.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_PLAIN = json.JSONEncoder(separators=(",", ":"))
_SORTED = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_SCALARS = (str, int, bool, type(None))
# What a flat value may hold for orjson to write it as `json` does: no float (the two
# spell some differently, 1e+16 and 1e16), and what a flat object read by orjson may hold
# (orjson reads an integer beyond 64 bits as a float; `json` keeps it an integer).
_FLAT = frozenset(_SCALARS)
_STR = frozenset((str,))


def _flat(value: object) -> bool:
    """Whether `value` is a list, tuple or string-keyed dict of strings, integers,
    booleans and None, or one of those: what `dumps` gives to orjson."""
    kind = type(value)
    if kind is list or kind is tuple:
        return _FLAT.issuperset(map(type, value))  # type: ignore[call-overload]
    if kind is dict:
        return (_STR.issuperset(map(type, value))  # type: ignore[call-overload]
                and _FLAT.issuperset(map(type, value.values())))  # type: ignore[attr-defined]
    return kind in _FLAT


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """`json.dumps(value, separators=(",", ":"), sort_keys=sort_keys).encode()`."""
    if _flat(value):
        try:
            out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        except orjson.JSONEncodeError:  # an integer beyond 64 bits
            pass
        else:
            # No escape, nothing beyond printable ASCII (DEL included, which `json`
            # escapes and orjson does not): three scans in C, quicker than one regex.
            if out.isascii() and b"\\" not in out and b"\x7f" not in out:
                return out
    return (_SORTED if sort_keys else _PLAIN).encode(value).encode()


def loads_object(payload: bytes) -> dict[str, Any] | None:
    """The JSON object `payload` holds, read by orjson, when that is certainly what
    `json` reads with every key once; None when the caller must read it with `json`
    (its own checks then say what is wrong, if anything is).

    With no backslash every `"` opens or closes a string, so `":` ends each key and
    nothing else: counted, the members of a flat object are as many as its keys.
    """
    if b"\\" in payload:
        return None
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if (type(obj) is not dict or payload.count(b'":') != len(obj)
            or not _FLAT.issuperset(map(type, obj.values()))):
        return None
    return obj
