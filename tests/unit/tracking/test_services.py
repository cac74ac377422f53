"""The validators' state as tracking derives it from the roster and their status
messages (pure: a hand-written roster, no Redis, no database)."""

from __future__ import annotations

from dataclasses import dataclass

from tracking.services import validator_states

NOW = 1_764_313_202_123


@dataclass(frozen=True)
class Registered:
    device_id: str
    vehicle_id: str
    status: str


def test_a_validator_is_online_only_if_it_said_so_lately() -> None:
    roster = [Registered("A", "BUS-1", "active"), Registered("B", "BUS-2", "active"),
              Registered("C", "BUS-3", "revoked"), Registered("D", "BUS-4", "active")]
    statuses = {"A": ({"online": True, "spool_depth": 3, "software": "agent 0.1"},
                      NOW - 5_000),
                "B": ({"online": True, "spool_depth": 0}, NOW - 700_000),  # long silent
                "C": ({"online": False, "spool_depth": 7}, NOW - 1_000),
                "GHOST": ({"online": True}, NOW)}  # reported, but not registered
    states = {s.device_id: s for s in validator_states(roster, statuses, NOW, 600)}

    assert list(states) == ["A", "B", "C", "D"]
    a = states["A"]
    assert (a.vehicle_id, a.registration, a.online, a.spool_depth, a.software) == (
        "BUS-1", "active", True, 3, "agent 0.1")
    assert (a.last_seen_ms, a.last_seen_s, a.spool_full) == (NOW - 5_000, 5.0, False)
    assert states["B"].online is False and states["B"].last_seen_s == 700.0
    assert states["C"].online is False and states["C"].registration == "revoked"
    d = states["D"]  # registered, never heard from
    assert (d.online, d.last_seen_ms, d.last_seen_s, d.spool_depth) == (False, None, None,
                                                                        None)


def test_online_turns_silent_after_90_s_and_offline_after_600_s() -> None:
    roster = [Registered("A", "BUS-1", "active")]
    for age_ms, expected in ((89_999, "online"), (90_000, "silent"), (599_999, "silent"),
                             (600_000, "offline")):
        (state,) = validator_states(roster, {"A": ({"online": True}, NOW - age_ms)}, NOW, 600)
        assert (state.state, state.online) == (expected, expected == "online"), age_ms


def test_taps_and_positions_heard_keep_a_validator_online_its_will_takes_it_offline() -> None:
    roster = [Registered("A", "BUS-1", "active"), Registered("B", "BUS-2", "active")]
    statuses = {"A": ({"online": True, "spool_depth": 4}, NOW - 300_000),
                "B": ({"online": False}, NOW - 1_000)}  # its last will, after its last tap
    heard = {"A": NOW - 2_000, "B": NOW - 1_500}
    a, b = validator_states(roster, statuses, NOW, 600, heard=heard)
    assert (a.state, a.last_seen_ms, a.last_status_ms, a.spool_depth) == (
        "online", NOW - 2_000, NOW - 300_000, 4)
    assert b.state == "offline"
    (b_later,) = validator_states(roster[1:], statuses, NOW, 600, heard={"B": NOW - 500})
    assert b_later.state == "online"  # heard again after its will: back


def test_the_silent_threshold_is_the_deployment_s_and_a_rising_spool_is_dated() -> None:
    roster = [Registered("A", "BUS-1", "active")]
    statuses = {"A": ({"online": True, "spool_depth": 9}, NOW - 4_000)}
    # Depths sampled every 15 s, newest first: rising from 2 to 9 over 150 s.
    samples = {"A": [(NOW - 4_000 - 15_000 * i, 9 - i * 7 // 10) for i in range(11)]}
    (drill,) = validator_states(roster, statuses, NOW, 600, samples=samples,
                                silent_after_s=3)
    assert (drill.state, drill.last_seen_s, drill.spool_depth) == ("silent", 4.0, 9)
    assert drill.spool_growing_since_ms == NOW - 4_000 - 150_000
    (service,) = validator_states(roster, statuses, NOW, 600, samples={"A": samples["A"][:2]})
    assert (service.state, service.spool_growing_since_ms) == ("online", None)
