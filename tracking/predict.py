"""Arrival predictions: when a vehicle on a pattern will reach each stop ahead.

`TravelTimes` is what a prediction (and a headway in seconds) asks: how long a vehicle
takes from one point of a pattern to another, starting at a time of day.
`ConstantSpeed` answers with one speed for the whole route: the baseline the learned
times are measured against (bench/predictions.py).
"""

from __future__ import annotations

from typing import Protocol

from tracking.schedule import Pattern

DEFAULT_SPEED_MPS = 5.5  # ~20 km/h: a city bus's mean speed, stops included


class TravelTimes(Protocol):
    """Seconds to travel a pattern from `from_m` to `to_m` (metres along its shape),
    leaving at `at_ms`."""

    def seconds(self, pattern: Pattern, from_m: float, to_m: float, at_ms: int) -> float:
        ...


class ConstantSpeed:
    """Travel at one speed per route (its mean, stops included), or a default."""

    def __init__(self, speeds_mps: dict[str, float] | None = None,
                 default_mps: float = DEFAULT_SPEED_MPS) -> None:
        self.speeds_mps = speeds_mps or {}
        self.default_mps = default_mps

    def seconds(self, pattern: Pattern, from_m: float, to_m: float, at_ms: int) -> float:
        speed = self.speeds_mps.get(pattern.route_id, self.default_mps)
        return max(0.0, to_m - from_m) / speed
