"""Device secrets at rest: AES-256-GCM sealing, plain rows from before, clear key errors,
and which keys verify during a rotation's grace period."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import sessionmaker

from fare_gateway.devices import (
    DeviceDirectory,
    KnownDevice,
    SecretKeyError,
    is_sealed,
    master_key,
    seal,
    unseal,
)
from transit.settings import Settings

KEY = bytes(range(32))
SECRET = bytes.fromhex("ab" * 32)


def test_sealed_secret_is_not_in_the_clear_and_round_trips() -> None:
    stored = seal(SECRET, KEY, "DEV-1")
    assert stored.startswith("v1:") and is_sealed(stored)
    assert SECRET.hex() not in stored
    assert len(stored) <= 128  # fits the column
    assert unseal(stored, KEY, "DEV-1") == SECRET
    assert seal(SECRET, KEY, "DEV-1") != stored  # a fresh nonce every time


def test_without_a_key_the_secret_is_stored_plain_and_plain_rows_still_read() -> None:
    assert seal(SECRET, None, "DEV-1") == SECRET.hex()
    assert unseal(SECRET.hex(), None, "DEV-1") == SECRET
    assert unseal(SECRET.hex(), KEY, "DEV-1") == SECRET  # written before the key existed


def test_wrong_or_missing_key_is_a_clear_error() -> None:
    stored = seal(SECRET, KEY, "DEV-1")
    with pytest.raises(SecretKeyError, match="TRANSIT_SECRET_KEY is not set"):
        unseal(stored, None, "DEV-1")
    with pytest.raises(SecretKeyError, match="wrong TRANSIT_SECRET_KEY"):
        unseal(stored, bytes(32), "DEV-1")


def test_a_sealed_secret_is_bound_to_its_device() -> None:
    stored = seal(SECRET, KEY, "DEV-1")
    with pytest.raises(SecretKeyError):
        unseal(stored, KEY, "DEV-2")
    damaged = stored[:-2] + ("00" if not stored.endswith("00") else "11")
    with pytest.raises(SecretKeyError):
        unseal(damaged, KEY, "DEV-1")


def test_master_key_setting() -> None:
    assert master_key("") is None
    assert master_key(KEY.hex()) == KEY
    assert master_key(f" {KEY.hex().upper()}\n") == KEY
    for bad in ("zz" * 32, "ab" * 16, "ab" * 33):
        with pytest.raises(SecretKeyError, match="64 hex digits"):
            master_key(bad)


def test_master_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The settings read it; the registry is handed it by the wiring and reads nothing.
    monkeypatch.delenv("TRANSIT_SECRET_KEY", raising=False)
    assert Settings.from_env().secret_key is None
    monkeypatch.setenv("TRANSIT_SECRET_KEY", KEY.hex())
    assert Settings.from_env().secret_key == KEY
    assert DeviceDirectory(sessionmaker(), key=None).key is None
    with pytest.raises(TypeError):
        DeviceDirectory(sessionmaker())  # type: ignore[call-arg]  # the key must be given


def test_previous_key_verifies_only_within_grace() -> None:
    old, new = b"o" * 32, b"n" * 32
    dev = KnownDevice("D", "V", new, True, old, 1_000)
    assert dev.keys(at_ms=999) == [new, old]
    assert dev.keys(at_ms=1_000) == [new]
    assert KnownDevice("D", "V", new, True).keys() == [new]
    assert old.hex() not in repr(dev) and new.hex() not in repr(dev)
    assert "o" * 32 not in repr(dev)
