"""Position and status ingest with hand-written stand-ins for the device check, the live
store and the network: which messages are trusted, and the reason codes of the others."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry

from tracking.ingest import Message, PositionIngest, Signed
from tracking.store import VehicleRecord
from transit.topics import Topics
from transit.window import DEFAULT_WINDOW, EventWindow
from transit.wire import Position

KEY = bytes(range(32))


class Devices:
    """A device check that knows one device, revoked or not, and its key."""

    def __init__(self, device_id: str, active: bool = True) -> None:
        self.device_id = device_id
        self.active = active
        self.asked: list[tuple[str, str | None]] = []

    def refusal(self, message: Signed, topic_device: str | None) -> str | None:
        self.asked.append((message.device_id, topic_device))
        if topic_device != message.device_id:
            return "topic_mismatch"
        if message.device_id != self.device_id:
            return "unknown_device"
        if not self.active:
            return "inactive_device"
        return None if message.verify(KEY) else "bad_signature"

    def is_known(self, device_id: str) -> bool:
        return device_id == self.device_id


class Store:
    def __init__(self) -> None:
        self.saved: list[VehicleRecord] = []
        self.statuses: list[tuple[str, dict[str, object]]] = []
        self.heard: dict[str, int] = {}
        self.status_times: list[tuple[int, bool]] = []

    def previous(self, vehicle_ids: Iterable[str]) -> dict[str, VehicleRecord]:
        list(vehicle_ids)
        return {}

    def save(self, records: list[VehicleRecord], heard: Mapping[str, int] | None = None,
             counts: Mapping[str, int] | None = None) -> int:
        self.saved.extend(records)
        self.heard.update(heard or {})
        return 0

    def save_status(self, device_id: str, status: dict[str, object], now: int, *,
                    retained: bool = False) -> None:
        self.statuses.append((device_id, status))
        self.status_times.append((now, retained))


class Network:
    def next_stop(self, *_args: object) -> None:
        return None


def position(device_id: str = "SBY-0042-A", key: bytes = KEY, age_ms: int = 1000) -> bytes:
    return Position(device_id=device_id, vehicle_id="SBY-0042", route_id="R1",
                    ts=int(time.time() * 1000) - age_ms, lat_e6=-7_257_500,
                    lon_e6=112_752_100, speed_cms=500, bearing_deg=90).signed(key).encode()


def ingest(devices: Devices, window: EventWindow = DEFAULT_WINDOW
           ) -> tuple[PositionIngest, Store]:
    store = Store()
    return PositionIngest(store, devices, Network(), Topics(),  # type: ignore[arg-type]
                          CollectorRegistry(), window), store


def test_a_signed_position_from_its_own_topic_is_kept() -> None:
    devices = Devices("SBY-0042-A")
    service, store = ingest(devices)
    assert service.handle([Message("transit/v1/dev/SBY-0042-A/pos", position())]) == {
        "accepted": 1}
    assert [r.vehicle_id for r in store.saved] == ["SBY-0042"]
    assert devices.asked == [("SBY-0042-A", "SBY-0042-A")]


def test_untrusted_positions_get_the_position_reason_codes() -> None:
    service, store = ingest(Devices("SBY-0042-A"))
    batch = [Message("transit/v1/dev/SBY-0077-B/pos", position()),          # other topic
             Message("transit/v1/dev/SBY-0042-A/pos", position(key=b"x" * 32)),
             Message("transit/v1/dev/SBY-9999-X/pos", position("SBY-9999-X")),
             Message("transit/v1/dev/SBY-0042-A/pos", b"{")]
    assert service.handle(batch) == {"topic_mismatch": 1, "bad_signature": 1,
                                     "unknown_device": 1, "malformed": 1}
    assert store.saved == []


def test_a_revoked_devices_positions_count_as_from_an_unknown_device() -> None:
    service, store = ingest(Devices("SBY-0042-A", active=False))
    assert service.handle([Message("transit/v1/dev/SBY-0042-A/pos", position())]) == {
        "unknown_device": 1}
    assert store.saved == []


def test_a_position_outside_the_window_is_dropped_and_counted() -> None:
    day = 86_400_000
    service, store = ingest(Devices("SBY-0042-A"), EventWindow(max_age_days=2))
    topic = "transit/v1/dev/SBY-0042-A/pos"
    batch = [Message(topic, position(age_ms=2 * day + 60_000)),
             Message(topic, position(age_ms=-10 * 60_000)),
             Message(topic, position(age_ms=2 * day - 60_000))]
    assert service.handle(batch) == {"ts_out_of_range": 2, "accepted": 1}
    assert len(store.saved) == 1


def test_status_is_kept_only_for_a_registered_device() -> None:
    service, store = ingest(Devices("SBY-0042-A"))
    service.handle([Message("transit/v1/dev/SBY-0042-A/status", b'{"online": true}'),
                    Message("transit/v1/dev/SBY-9999-X/status", b'{"online": true}')])
    assert store.statuses == [("SBY-0042-A", {"online": True})]


def test_a_retained_status_is_kept_as_of_when_it_was_said() -> None:
    """A gateway that (re)connects receives every device's retained status: that is not
    the device heard now, or a silent validator would look online after each restart."""
    service, store = ingest(Devices("SBY-0042-A"))
    said = int(time.time() * 1000) - 300_000
    topic = "transit/v1/dev/SBY-0042-A/status"
    service.handle([Message(topic, f'{{"online": true, "ts": {said}}}'.encode(), True),
                    Message(topic, b'{"online": true, "ts": 99999999999999}', True)])
    now = int(time.time() * 1000)
    (first, retained), (future, _) = store.status_times
    assert (first, retained) == (said, True)
    assert now - 5_000 <= future <= now  # a clock ahead is never believed past now


def test_positions_are_given_their_trip_from_the_schedule() -> None:
    from tests.unit.tracking.test_matching import LAT, SCHEDULE, lon_at

    store = Store()
    service = PositionIngest(store, Devices("SBY-0042-A"), Network(), Topics(),  # type: ignore[arg-type]
                             CollectorRegistry(), schedule=lambda: SCHEDULE)
    now = int(time.time() * 1000)
    batch = [Message("transit/v1/dev/SBY-0042-A/pos", Position(
        device_id="SBY-0042-A", vehicle_id="SBY-0042", route_id="R2", ts=now - 20_000 + i * 10_000,
        lat_e6=LAT + 5, lon_e6=lon_at(300 + 100 * i)).signed(KEY).encode()) for i in range(2)]
    assert service.handle(batch) == {"accepted": 2}
    last = store.saved[-1]
    assert (last.trip_id, last.pattern_id, last.trip_source) == ("P1", "P1", "matched")
    assert last.next_stop_id == "M" and last.dist_m is not None and 380 < last.dist_m < 420
    assert len(last.progress.split()) == 2  # the second started from the first
