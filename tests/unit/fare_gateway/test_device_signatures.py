"""The one signature check that taps and positions share: the topic names the device,
the device is known and active, one of its keys made the signature, and the message
names the vehicle the device rode on at the message's time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from fare_gateway.devices import Binding, KnownDevice, Refusal, verify_signed
from transit.wire import Position, Tap

KEY = bytes(range(32))
OLD_KEY = bytes(range(32, 64))
DEVICE = KnownDevice("SBY-0042-A", "SBY-0042", KEY, True)
TS = 1764313202123


def a_tap(key: bytes = KEY, device_id: str = "SBY-0042-A", vehicle_id: str = "SBY-0042",
          ts: int = TS) -> Tap:
    return Tap(device_id=device_id, seq=1, vehicle_id=vehicle_id, route_id="R1",
               card="04A1B2C3D4E5F6", kind="entry", accepted=True, ts=ts,
               lat_e6=-7257500, lon_e6=112752100).signed(key)


def a_position(key: bytes = KEY, vehicle_id: str = "SBY-0042", ts: int = TS) -> Position:
    return Position(device_id="SBY-0042-A", vehicle_id=vehicle_id, route_id="R1",
                    ts=ts, lat_e6=-7257500, lon_e6=112752100).signed(key)


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


@pytest.mark.parametrize("message", [a_tap(vehicle_id="SBY-0077"),
                                     a_position(vehicle_id="SBY-0077")])
def test_a_message_naming_another_vehicle_is_refused_but_its_signer_is_known(
        message: Tap | Position) -> None:
    verdict = verify_signed(message, "SBY-0042-A", {"SBY-0042-A": DEVICE}.get)
    assert isinstance(verdict, Refusal) and verdict.reason == "wrong_vehicle"
    assert "SBY-0042" in verdict.detail and "SBY-0077" in verdict.detail
    # Correctly signed by a known device: its key may sign the answer.
    assert verdict.signer == DEVICE


def test_only_a_wrong_vehicle_refusal_names_a_signer() -> None:
    devices = {"SBY-0042-A": DEVICE}
    # A forger naming another vehicle, without the key, is a bad signature like any other.
    forged = verify_signed(a_tap(OLD_KEY, vehicle_id="SBY-0077"), "SBY-0042-A", devices.get)
    assert isinstance(forged, Refusal) and (forged.reason, forged.signer) == (
        "bad_signature", None)
    for topic in (None, "SBY-0077-B"):
        verdict = verify_signed(a_tap(vehicle_id="SBY-0077"), topic, devices.get)
        assert isinstance(verdict, Refusal) and verdict.signer is None


# -- a device's vehicles over time ----------------------------------------------------------

REGISTERED, MOVED, BACK = TS - 86_400_000, TS, TS + 3_600_000
MOVED_DEVICE = KnownDevice("SBY-0042-A", "SBY-0077", KEY, True, history=(
    Binding(REGISTERED, "SBY-0042"), Binding(MOVED, "SBY-0077")))


@pytest.mark.parametrize("make", [a_tap, a_position])
def test_a_moved_device_is_judged_by_the_vehicle_it_rode_on_at_the_messages_time(
        make: Callable[..., Tap | Position]) -> None:
    def verdict(vehicle_id: str, ts: int) -> str | None:
        return reason(verify_signed(make(vehicle_id=vehicle_id, ts=ts), "SBY-0042-A",
                                    lambda _d: MOVED_DEVICE))

    # Made on the old vehicle before the move (an offline bus's spool): still its own.
    assert verdict("SBY-0042", MOVED - 1) is None
    assert verdict("SBY-0042", REGISTERED) is None
    # From the move on, only the new vehicle.
    assert verdict("SBY-0042", MOVED) == "wrong_vehicle"
    assert verdict("SBY-0077", MOVED) is None
    assert verdict("SBY-0077", MOVED + 86_400_000) is None
    # The new vehicle before the move was not this device's to speak for.
    assert verdict("SBY-0077", MOVED - 1) == "wrong_vehicle"
    assert verdict("SBY-0077", REGISTERED - 1) == "wrong_vehicle"


def test_the_refusal_names_the_vehicle_of_the_messages_time() -> None:
    verdict = verify_signed(a_tap(vehicle_id="SBY-0077", ts=MOVED - 1), "SBY-0042-A",
                            lambda _d: MOVED_DEVICE)
    assert isinstance(verdict, Refusal) and verdict.signer == MOVED_DEVICE
    assert "rode on SBY-0042" in verdict.detail and "not SBY-0077" in verdict.detail


def test_the_vehicle_at_a_time_follows_every_move() -> None:
    back = KnownDevice("SBY-0042-A", "SBY-0042", KEY, True, history=(
        *MOVED_DEVICE.history, Binding(BACK, "SBY-0042")))
    assert [back.vehicle_at(ts) for ts in (
        REGISTERED - 1, REGISTERED, MOVED - 1, MOVED, BACK - 1, BACK, BACK + 1)] == [
        "SBY-0042", "SBY-0042", "SBY-0042", "SBY-0077", "SBY-0077", "SBY-0042", "SBY-0042"]
    # No history given: the device has always ridden on its vehicle.
    assert DEVICE.vehicle_at(0) == DEVICE.vehicle_at(TS) == "SBY-0042"
