"""The operators' alerts, pure: each kind from plain inputs (vehicles' last positions,
validators' states, unanswered disputes) at the edges of its thresholds, when each
begins, what is left out, and the order they are listed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fare_gateway.ops.alerts import (
    BUNCHING,
    DISPUTE_ESCALATED,
    DISPUTE_OVERDUE,
    KINDS,
    SPOOL_GROWING,
    VALIDATOR_SILENT,
    VEHICLE_STALE,
    OpsAlert,
    Thresholds,
    decide_alerts,
    kinds_of,
)
from fare_gateway.riders.disputes import DisputeRecord
from tracking.services import validator_states

NOW = 1_764_313_202_123
S = 1000
H = 3_600_000


@dataclass(frozen=True)
class Vehicle:
    vehicle_id: str
    ts: int
    device_id: str = "DEV-A"
    route_id: str = "R1"


@dataclass(frozen=True)
class Validator:
    device_id: str
    state: str
    last_seen_ms: int | None
    registration: str = "active"
    vehicle_id: str = "SBY-0042"
    spool_depth: Any = 0
    spool_growing_since_ms: int | None = None


@dataclass(frozen=True)
class Registered:
    device_id: str
    vehicle_id: str
    status: str


def dispute(ident: int, age_ms: int, answered_ago_ms: int | None = None) -> DisputeRecord:
    return DisputeRecord(ident, 1, "04A1B2C3D4E5F6", "SBY-0042-A:7", "2025-11-28",
                         "wrong_fare", "?", NOW - age_ms,
                         None if answered_ago_ms is None else NOW - answered_ago_ms)


def kinds(alerts: list[OpsAlert]) -> list[tuple[str, str, int]]:
    return [(a.kind, a.subject, a.since) for a in alerts]


def test_a_vehicle_is_stale_from_90_s_to_10_minutes_without_a_position() -> None:
    for age_s, alerted in ((0, False), (89.999, False), (90, True), (100, True),
                           (599.999, True), (600, False), (7200, False)):
        ts = NOW - round(age_s * S)
        found = decide_alerts(NOW, [Vehicle("SBY-0042", ts)], [], [])
        assert kinds(found) == ([(VEHICLE_STALE, "SBY-0042", ts + 90 * S)] if alerted
                                else []), age_s
    (stale,) = decide_alerts(NOW, [Vehicle("SBY-0042", NOW - 100 * S)], [], [])
    assert stale.data == {"vehicle_id": "SBY-0042", "route_id": "R1", "device_id": "DEV-A",
                          "last_position_ts": NOW - 100 * S, "age_s": 100}
    assert "100 s" in stale.detail and "100 detik" in stale.detail_id


def test_a_position_from_a_clock_ahead_is_live_not_stale() -> None:
    assert decide_alerts(NOW, [Vehicle("SBY-0042", NOW + 20 * S)], [], []) == []


def test_an_active_validator_that_says_online_but_is_not_heard_is_silent() -> None:
    heard = NOW - 120 * S
    found = decide_alerts(NOW, [], [Validator("A", "silent", heard),
                                    Validator("B", "online", NOW - S),
                                    Validator("C", "offline", NOW - 700 * S),
                                    Validator("D", "silent", heard, registration="revoked"),
                                    Validator("E", "offline", None)], [])
    assert kinds(found) == [(VALIDATOR_SILENT, "A", heard + 90 * S)]
    assert found[0].data == {"device_id": "A", "vehicle_id": "SBY-0042",
                             "last_seen_ms": heard}


def test_silent_follows_the_threshold_from_the_states_to_the_alert() -> None:
    """The silent threshold judges the state (tracking.services) and dates the alert."""
    roster = [Registered("A", "SBY-0042", "active")]
    statuses = {"A": ({"online": True}, NOW - 40 * S)}
    thresholds = Thresholds(silent_after_s=30)
    states = validator_states(roster, statuses, NOW, 600, silent_after_s=30)
    assert kinds(decide_alerts(NOW, [], states, [], thresholds)) == [
        (VALIDATOR_SILENT, "A", NOW - 10 * S)]
    states = validator_states(roster, statuses, NOW, 600)  # the default 90 s
    assert decide_alerts(NOW, [], states, []) == []


def test_a_growing_spool_alerts_while_the_validator_can_still_send() -> None:
    since = NOW - 300 * S
    found = decide_alerts(NOW, [], [
        Validator("A", "online", NOW - S, spool_depth=42, spool_growing_since_ms=since),
        Validator("B", "silent", NOW - 100 * S, spool_depth=9,
                  spool_growing_since_ms=since - 1),
        Validator("C", "offline", NOW - 700 * S, spool_growing_since_ms=since),
        Validator("D", "online", NOW - S, registration="revoked",
                  spool_growing_since_ms=since),
        Validator("E", "online", NOW - S, spool_depth=500)], [])
    assert kinds(found) == [(VALIDATOR_SILENT, "B", NOW - 10 * S),
                            (SPOOL_GROWING, "A", since), (SPOOL_GROWING, "B", since - 1)]
    assert found[1].data == {"device_id": "A", "vehicle_id": "SBY-0042", "spool_depth": 42}
    assert "42 taps" in found[1].detail and "42 tap" in found[1].detail_id


def test_spool_samples_that_rise_make_the_alert_through_the_validators_state() -> None:
    roster = [Registered("A", "SBY-0042", "active")]
    samples = {"A": [(NOW - i * 15 * S, 20 - i) for i in range(10)]}  # newest first
    states = validator_states(roster, {"A": ({"online": True, "spool_depth": 20}, NOW)},
                              NOW, 600, samples=samples)
    assert kinds(decide_alerts(NOW, [], states, [])) == [
        (SPOOL_GROWING, "A", NOW - 135 * S)]


def test_disputes_escalate_at_24_hours_and_are_overdue_at_48() -> None:
    found = decide_alerts(NOW, [], [], [
        dispute(1, 23 * H), dispute(2, 24 * H), dispute(3, 47 * H), dispute(4, 48 * H),
        dispute(5, 100 * H), dispute(6, 50 * H, answered_ago_ms=H),
        dispute(7, 30 * H, answered_ago_ms=-H)])  # answered later than now: not yet
    assert kinds(found) == [
        (DISPUTE_OVERDUE, "4", NOW), (DISPUTE_ESCALATED, "2", NOW),
        (DISPUTE_ESCALATED, "7", NOW - 6 * H), (DISPUTE_ESCALATED, "3", NOW - 23 * H),
        (DISPUTE_OVERDUE, "5", NOW - 52 * H)]
    overdue = next(a for a in found if a.subject == "5")
    assert overdue.data["dispute_id"] == 5 and overdue.data["card"] == "04A1B2C3D4E5F6"
    assert overdue.data["due_at"] in overdue.detail and "segera" in overdue.detail_id


def test_newest_first_then_by_kind_with_alerts_decided_elsewhere() -> None:
    bunched = OpsAlert(BUNCHING, "SBY-0043", NOW - 60 * S, "bunched", "berdempetan")
    found = decide_alerts(NOW, [Vehicle("SBY-0042", NOW - 150 * S)],
                          [Validator("A", "silent", NOW - 150 * S)],
                          [dispute(9, 72 * H)], others=[bunched])
    # At the same instant: an overdue dispute, a silent validator, a stale vehicle, ...
    assert kinds(found) == [(VALIDATOR_SILENT, "A", NOW - 60 * S),
                            (VEHICLE_STALE, "SBY-0042", NOW - 60 * S),
                            (BUNCHING, "SBY-0043", NOW - 60 * S),
                            (DISPUTE_OVERDUE, "9", NOW - 24 * H)]
    counts = kinds_of(found)
    assert list(counts) == list(KINDS)
    assert counts == {DISPUTE_OVERDUE: 1, VALIDATOR_SILENT: 1, SPOOL_GROWING: 0,
                      VEHICLE_STALE: 1, BUNCHING: 1, DISPUTE_ESCALATED: 0}
    assert set(found[0].as_json()) == {"kind", "subject", "since", "detail", "detail_id",
                                       "data"}
