"""A simulated GPS receiver (`--gps sim`): one that stands still, or one that drives
along a route shape at a bus's speed, for drills, the demo and tests without a receiver."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence

from geopy.distance import geodesic

from validator_agent.gps import Fix

Point = tuple[float, float]  # (lat, lon) in degrees


def _bearing(a: Point, b: Point) -> float:
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlon = math.radians(b[1] - a[1])
    x = math.sin(dlon) * math.cos(lat2)
    y = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return (math.degrees(math.atan2(x, y)) + 360) % 360


def drive(shape: Sequence[Point], speed_mps: float = 8.0, interval_s: float = 1.0,
          time_scale: float = 1.0, loop: bool = True, stop_every_m: float = 600.0,
          dwell_s: float = 20.0) -> Iterator[Fix]:
    """Fixes along `shape`, back and forth, pausing at a stop every `stop_every_m` metres.

    `time_scale` > 1 runs simulated time faster than the wall clock.
    """
    if len(shape) < 2:
        raise ValueError("a shape needs at least two points")
    path = list(shape)
    while True:
        since_stop = 0.0
        for a, b in zip(path, path[1:], strict=False):
            length = geodesic(a, b).meters
            bearing = _bearing(a, b)
            travelled = 0.0
            while travelled < length:
                step = min(speed_mps * interval_s, length - travelled)
                travelled += step
                since_stop += step
                f = travelled / length if length else 1.0
                lat = a[0] + (b[0] - a[0]) * f
                lon = a[1] + (b[1] - a[1]) * f
                yield Fix(int(time.time() * 1000), int(round(lat * 1e6)), int(round(lon * 1e6)),
                          int(speed_mps * 100), int(round(bearing)) % 360)
                time.sleep(interval_s / time_scale)
                if since_stop >= stop_every_m:
                    since_stop = 0.0
                    for _ in range(max(1, int(dwell_s / interval_s))):
                        yield Fix(int(time.time() * 1000), int(round(lat * 1e6)),
                                  int(round(lon * 1e6)), 0, int(round(bearing)) % 360)
                        time.sleep(interval_s / time_scale)
        if not loop:
            return
        path.reverse()


def standing(lat: float, lon: float, interval_s: float = 1.0) -> Iterator[Fix]:
    """A receiver that has a fix and does not move."""
    while True:
        yield Fix(int(time.time() * 1000), int(round(lat * 1e6)), int(round(lon * 1e6)), 0, None)
        time.sleep(interval_s)
