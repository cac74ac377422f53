"""A dispute's evidence, in process: the signed tap put back together from its inbox row
verifies with the device's key (and a changed column does not), the receipt tells what
the validator was told, the explanation says why the tap cost what it did, in
Indonesian and English, and the positions merge the tap points with the vehicle's trail."""

from __future__ import annotations

import json

from redis.exceptions import ConnectionError as RedisDown

from fare_gateway.adapters.models import Device, TapRecord
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.riders.evidence import (
    MergedTrack,
    TrackPoint,
    TrailTrack,
    explain_charge,
    explain_day,
    price_of_day,
    receipt_evidence,
    signed_tap,
    tap_evidence,
)
from transit.wire import Tap

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
POLICY = builtin_policy()
TS = 1_764_313_202_123  # 2025-11-28 14:00:02 WIB


def inbox_row(tap: Tap, *, status: str = "charged", fare: int = 5000) -> TapRecord:
    """The inbox row the tap path writes for `tap` (fare_gateway.taps.sql.admit)."""
    return TapRecord(tap_id=tap.tap_id, device_id=tap.device_id, seq=tap.seq,
                     digest=tap.digest, card=tap.card, kind=tap.kind, accepted=tap.accepted,
                     reason=tap.reason, ts=tap.ts, vehicle_id=tap.vehicle_id,
                     route_id=tap.route_id, trip_id=tap.trip_id, lat_e6=tap.lat_e6,
                     lon_e6=tap.lon_e6, service_date="2025-11-28", status=status, fare=fare,
                     received_ms=tap.ts + 900, sig=tap.sig,
                     extra=json.dumps(dict(tap.extra), sort_keys=True) if tap.extra else None)


def a_tap(seq: int = 3, **fields: object) -> Tap:
    base: dict[str, object] = dict(device_id="SBY-0042-A", seq=seq, vehicle_id="SBY-0042",
                                   route_id="R1", card="04AB12CD34", kind="entry",
                                   accepted=True, ts=TS, lat_e6=-7257500, lon_e6=112752100)
    base.update(fields)
    return Tap(**base).signed(SECRET)  # type: ignore[arg-type]


def device(secret: bytes = SECRET, previous: bytes | None = None) -> Device:
    return Device(device_id="SBY-0042-A", vehicle_id="SBY-0042", secret_hex=secret.hex(),
                  status="active", created_ms=TS - 86_400_000,
                  previous_secret=None if previous is None else previous.hex())


def test_the_tap_is_put_back_together_as_signed_with_its_unknown_fields() -> None:
    tap = a_tap(trip_id="T-7", extra={"firmware": "2.4.1", "hops": 3, "test": False})
    row = inbox_row(tap)
    again = signed_tap(row)
    assert again.encode() == tap.encode()
    assert again.verify(SECRET)
    shown = tap_evidence(row, device(), None)
    assert shown["message"] == json.loads(tap.encode())
    assert shown["canonical"] == tap.encode().decode()
    assert (shown["signature_valid"], shown["signed_with"]) == (True, "current")
    assert shown["received_at"] == "2025-11-28T07:00:03.023Z"


def test_the_signature_is_checked_with_the_devices_keys_and_fails_on_a_changed_row() -> None:
    tap = a_tap(reason=None)
    row = inbox_row(tap)
    assert tap_evidence(row, device(OTHER, previous=SECRET), None)["signed_with"] == "previous"
    assert tap_evidence(row, device(OTHER), None)["signature_valid"] is False
    assert tap_evidence(row, None, None)["signature_valid"] is False
    row.lat_e6 += 1  # the row no longer says what the validator signed
    assert tap_evidence(row, device(), None)["signature_valid"] is False
    # a sealed secret without the key to open it: not known here, not "invalid"
    sealed = device()
    sealed.secret_hex = "v1:00:00"
    assert tap_evidence(inbox_row(tap), sealed, None)["signature_valid"] is None


def test_the_receipt_tells_what_the_validator_was_told() -> None:
    denied = inbox_row(a_tap(accepted=False, reason="denylisted"), status="unknown_card",
                       fare=0)
    receipt = receipt_evidence(denied, "IDR")
    assert (receipt["status"], receipt["recorded_status"], receipt["reason"],
            receipt["fare"], receipt["signed"]) == ("not_charged", "unknown_card",
                                                    "denylisted", 0, False)
    assert receipt_evidence(inbox_row(a_tap()), "IDR")["status"] == "charged"


def test_the_explanation_says_why_in_both_languages_and_what_the_ledger_holds() -> None:
    first, second = a_tap(1), a_tap(2, route_id="R2", ts=TS + 30 * 60_000, vehicle_id="B")
    rows = [inbox_row(first), inbox_row(second)]
    price = price_of_day(POLICY, "regular", rows)
    charged = price.charges[first.tap_id]
    assert explain_charge(rows[0], charged, 5000, "id").startswith(
        "Perjalanan baru: tarif penuh Rp5.000")
    assert explain_charge(rows[0], charged, 5000, "en").startswith(
        "New journey: the full fare of Rp5.000")
    assert "ledger" not in explain_charge(rows[0], charged, 5000, "en")
    transfer = price.charges[second.tap_id]
    assert (transfer.role, transfer.amount) == ("transfer", 0)
    # Held at a full fare though the rules make it free: said, for whoever weighs it.
    assert explain_charge(rows[1], transfer, 5000, "en").endswith(
        "The ledger holds Rp5.000 for this tap.")
    assert explain_charge(rows[1], transfer, 5000, "id").endswith(
        "Buku besar mencatat Rp5.000 untuk tap ini.")
    day = explain_day(POLICY, rows, price, {first.tap_id: 5000}, "id")
    assert day.startswith("14:00 R1: Perjalanan baru") and " 14:30 R2: Transfer" in day
    assert explain_day(POLICY, [], price, {}, "en") == "The card made no tap on that service day."
    denied = inbox_row(a_tap(4, accepted=False, reason="denylisted"), status="not_charged")
    assert explain_charge(denied, None, 0, "id").startswith("Ditolak di pembaca")
    assert explain_charge(denied, None, 0, "xx").startswith("Ditolak di pembaca")
    unissued = inbox_row(a_tap(5), status="unknown_card", fare=0)
    assert explain_charge(unissued, None, 0, "en") == \
        "The card was not issued yet at the time of this tap; not charged."


class Trail:
    """A vehicle trail as tracking keeps it: newest first."""

    def __init__(self, points: list[tuple[int, int, int]] | None) -> None:
        self.points = points

    def trail(self, vehicle_id: str) -> list[tuple[int, int, int]]:
        if self.points is None:
            raise RedisDown("redis is down")
        return self.points if vehicle_id == "SBY-0042" else []


class Taps:
    def around(self, vehicle_id: str, from_ms: int, to_ms: int) -> list[TrackPoint]:
        return [TrackPoint(t, -7_250_000, 112_750_000, "SBY-0042-A", "tap")
                for t in (TS - 60_000, TS) if from_ms <= t <= to_ms]


def test_the_positions_merge_tap_points_with_the_trail_each_saying_its_source() -> None:
    trail = Trail([(TS + 30_000, -7_250_003, 1), (TS, -7_250_002, 1), (TS - 900_000, 0, 0)])
    merged = MergedTrack([Taps(), TrailTrack(trail)]).around("SBY-0042", TS - 600_000,
                                                            TS + 600_000)
    assert [(p.ts, p.source, p.device_id) for p in merged] == [
        (TS - 60_000, "tap", "SBY-0042-A"), (TS, "tap", "SBY-0042-A"), (TS, "track", None),
        (TS + 30_000, "track", None)]
    # Redis failing leaves the tap points, not an error.
    down = MergedTrack([Taps(), TrailTrack(Trail(None))]).around("SBY-0042", 0, TS)
    assert [p.source for p in down] == ["tap", "tap"]
