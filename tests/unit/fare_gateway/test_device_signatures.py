"""The one signature check that taps and positions share: the topic names the device,
the device is known and active, and one of its keys made the signature."""

from __future__ import annotations

import time

import pytest

from fare_gateway.devices import KnownDevice, Refusal, verify_signed
from transit.wire import Position, Tap

KEY = bytes(range(32))
OLD_KEY = bytes(range(32, 64))
DEVICE = KnownDevice("SBY-0042-A", "SBY-0042", KEY, True)


def a_tap(key: bytes = KEY, device_id: str = "SBY-0042-A") -> Tap:
    return Tap(device_id=device_id, seq=1, vehicle_id="SBY-0042", route_id="R1",
               card="04A1B2C3D4E5F6", kind="entry", accepted=True, ts=1764313202123,
               lat_e6=-7257500, lon_e6=112752100).signed(key)


def a_position(key: bytes = KEY) -> Position:
    return Position(device_id="SBY-0042-A", vehicle_id="SBY-0042", route_id="R1",
                    ts=1764313202123, lat_e6=-7257500, lon_e6=112752100).signed(key)


def reason(verdict: KnownDevice | Refusal) -> str | None:
    return verdict.reason if isinstance(verdict, Refusal) else None


@pytest.mark.parametrize("message", [a_tap(), a_position()])
def test_a_message_signed_by_its_device_on_its_topic_is_trusted(
        message: Tap | Position) -> None:
    assert verify_signed(message, "SBY-0042-A", {"SBY-0042-A": DEVICE}.get) == DEVICE


def test_each_reason_to_refuse_has_its_code() -> None:
    devices = {"SBY-0042-A": DEVICE,
               "SBY-0077-B": KnownDevice("SBY-0077-B", "SBY-0077", KEY, False)}
    assert reason(verify_signed(a_tap(), "SBY-0077-B", devices.get)) == "topic_mismatch"
    assert reason(verify_signed(a_tap(device_id="SBY-9999-X"), "SBY-9999-X",
                                devices.get)) == "unknown_device"
    assert reason(verify_signed(a_tap(device_id="SBY-0077-B"), "SBY-0077-B",
                                devices.get)) == "inactive_device"
    assert reason(verify_signed(a_tap(OLD_KEY), "SBY-0042-A", devices.get)) == "bad_signature"
    assert reason(verify_signed(a_position(OLD_KEY), "SBY-0042-A",
                                devices.get)) == "bad_signature"


def test_the_topic_is_checked_before_any_look_up() -> None:
    looked_up: list[str] = []

    def lookup(device_id: str) -> KnownDevice | None:
        looked_up.append(device_id)
        return DEVICE

    assert reason(verify_signed(a_tap(), None, lookup)) == "topic_mismatch"
    assert looked_up == []


def test_the_previous_key_verifies_only_during_its_grace_period() -> None:
    now = int(time.time() * 1000)
    rotated = KnownDevice("SBY-0042-A", "SBY-0042", KEY, True, OLD_KEY, now + 60_000)
    expired = KnownDevice("SBY-0042-A", "SBY-0042", KEY, True, OLD_KEY, now - 1)
    assert verify_signed(a_tap(OLD_KEY), "SBY-0042-A", lambda _d: rotated) == rotated
    assert reason(verify_signed(a_tap(OLD_KEY), "SBY-0042-A",
                                lambda _d: expired)) == "bad_signature"
