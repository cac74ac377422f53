"""What the demo tells its user: the validators as the panel shows them, the map's
tiles, and the drill with the silent threshold it runs with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hardware_sim.demo import (
    DEMO_SILENT_S,
    _child_env,
    _run_settings,
    drill_line,
    tiles_line,
    validators_summary,
)
from transit.settings import Settings


def row(vehicle: str, state: str, depth: Any = 0, seen_s: float | None = 1.0
        ) -> dict[str, Any]:
    return {"device_id": f"{vehicle}-A", "vehicle_id": vehicle, "state": state,
            "online": state == "online", "spool_depth": depth, "last_seen_s": seen_s}


def test_the_validators_are_counted_by_state_and_the_quiet_ones_told() -> None:
    panel = [row("SBY-BUS-01", "online"), row("SBY-BUS-02", "online", depth=3),
             row("SBY-BUS-03", "silent", depth=12, seen_s=75.4),
             row("SBY-BUS-04", "offline", depth=1, seen_s=700.0),
             row("SBY-BUS-05", "offline", depth=None, seen_s=None)]  # never heard from
    assert validators_summary(panel) == (
        "validators 2 online, 1 silent (SBY-BUS-03: 12 taps spooled at its last report, "
        "heard 75 s ago), 2 offline (SBY-BUS-04: 1 tap spooled at its last report, heard "
        "700 s ago)")
    assert validators_summary([row("SBY-BUS-01", "online")]) == (
        "validators 1 online, 0 silent, 0 offline")
    assert validators_summary([]) == "validators 0 online, 0 silent, 0 offline"
    # Heard (a tap, a position) but no status yet: no spool to tell.
    assert validators_summary([row("SBY-BUS-06", "silent", depth=None, seen_s=95.0)]) == (
        "validators 0 online, 1 silent (SBY-BUS-06: no spool reported, heard 95 s ago), "
        "0 offline")


def test_the_start_up_says_what_the_map_draws_on() -> None:
    hint = tiles_line("")
    assert hint.startswith("map tiles: none, ")
    assert "TRANSIT_MAP_TILES=https://tile.example.org/{z}/{x}/{y}.png" in hint
    assert tiles_line("https://t.example/{z}/{x}/{y}.png") == (
        "map tiles: https://t.example/{z}/{x}/{y}.png (TRANSIT_MAP_TILES)")


def test_the_demo_calls_a_drilled_bus_silent_within_its_tunnel(tmp_path: Path) -> None:
    run = _run_settings(Settings.from_env({}), tmp_path)
    assert run.validator_silent_s == DEMO_SILENT_S < 60  # the drill's minute off the broker
    assert Settings.from_env(_child_env(run)).validator_silent_s == DEMO_SILENT_S
    mine = _run_settings(Settings.from_env({"TRANSIT_VALIDATOR_SILENT_S": "90"}), tmp_path)
    assert mine.validator_silent_s == 90
    assert drill_line(30.0) == (
        "drill: now and then a bus drives into a tunnel for 60 s (SIGUSR1 to its agent); a "
        "validator unheard for 30 s is silent (TRANSIT_VALIDATOR_SILENT_S, 90 in service)")
