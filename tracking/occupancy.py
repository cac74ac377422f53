"""How full a bus is, from its fare taps: the riders aboard estimated from who boarded,
who tapped out and how far riders usually ride.

Pure: no I/O, no clock. The live estimator (`tracking.occupancy_live`) feeds it the taps
of each vehicle's current trip; the accuracy benchmark feeds it simulated taps and
compares with the true load. Its entry point is

    estimate(boardings, exits, at_m, curve, capacity, *, tap_out_share=0.0) -> Occupancy

- `boardings`: the charged entries made on the vehicle since its trip began, each a
  `Boarding(card, dist_m, ts)`, `dist_m` the metres along the trip's pattern where the
  tap was made (`Shape.locate` of its position) or None where it cannot be placed;
- `exits`: the tap-outs on the vehicle (`Exit(card, ts)`): a rider who tapped out after
  boarding is no longer aboard;
- `at_m`: how far along the pattern the vehicle is now (None: not known);
- `curve`: how long rides are (`RideCurve`; `RideCurve.default()` without history);
- `capacity`: riders the vehicle carries (`DEFAULT_CAPACITY` when not set);
- `tap_out_share`: the share of the route's riders who tap out (`TapOutShares`, learned
  from the last day's taps) where it is priced by distance; 0 where riders do not tap out.

A rider without a tap-out is aboard with the probability that a ride is longer than the
distance travelled since they boarded (the curve's survival S) given that they have not
tapped out: where a share r of riders tap out, one not seen tapping out either still
rides (S) or left without tapping out ((1 - r)(1 - S)), so is aboard with
S / (S + (1 - r)(1 - S)) (`aboard_probability`). With r = 0 that is the curve; with
r = 1 only the tap-outs remove riders. The curve is learned from
history by next-boarding inference (`inferred_ride_m`): a card's next boarding names the
stop where it most likely left its previous bus. A card seen boarding another vehicle
has certainly left this one: the live estimator drops it before calling `estimate`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from tracking.domain import approx_metres
from tracking.schedule import Pattern

DEFAULT_CAPACITY = 80  # contract section 8: a vehicle without `transit vehicles capacity`
MAX_CAPACITY = 500
# Without history, rides are taken as exponential with a 4 km mean: the order of an
# urban bus ride (a few stops to a third of a 15-25 km corridor), and an exponential
# assumes nothing more than that mean. The learned curve replaces it as samples come:
# each sample weighs as much as one of the PRIOR_WEIGHT pseudo-samples of the default.
DEFAULT_MEAN_RIDE_M = 4000.0
PRIOR_WEIGHT = 20
# Until a route's taps say otherwise, 90 % of its riders are taken to tap out where it is
# priced by distance (most do: a missed tap-out is charged the maximum); the learned
# share replaces it as boardings come, each weighing as one of SHARE_PRIOR_WEIGHT
# pseudo-boardings. On the accuracy benchmark (a tenth of riders never tapping out)
# counting everyone not tapped out as aboard misses by 5.0 riders; with the share, 2.0.
DEFAULT_TAP_OUT_SHARE = 0.9
SHARE_PRIOR_WEIGHT = 20
MAX_SAMPLES = 5000  # a curve keeps at most this many ride lengths (evenly thinned)

# Next-boarding inference: the next boarding must come after the first, within MAX_GAP_MS
# (a later one is another outing: home, work, then out again), and lie within NEAR_M of
# a stop beyond the boarding point (else the rider went on by other means).
MAX_GAP_MS = 3 * 3_600_000
NEAR_M = 1000.0
ON_PATTERN_M = 200.0  # a boarding further than this off every pattern of its route: unplaced

# What a share of the capacity feels like. A city bus of 80 places seats about 30-35
# (Suroboyo Bus: 12 m, low floor); SEATED is that share.
SEATED = 0.4
STATUSES = ("EMPTY", "MANY_SEATS_AVAILABLE", "FEW_SEATS_AVAILABLE", "STANDING_ROOM_ONLY",
            "CRUSHED_STANDING_ROOM_ONLY", "FULL")
# Upper bounds (exclusive, in per cent of capacity) of the first five statuses:
#   EMPTY               under 5 %: none or a handful aboard;
#   MANY_SEATS          under half the seats taken (20 %);
#   FEW_SEATS           until every seat is taken (40 %);
#   STANDING_ROOM       standing, room to move (until 80 %);
#   CRUSHED_STANDING    standing packed (until 100 %); FULL at capacity and beyond.
THRESHOLDS = (5, int(SEATED * 50), int(SEATED * 100), 80, 100)


@dataclass(frozen=True)
class Boarding:
    """A charged entry on the vehicle: the card, where along the trip's pattern (m, None:
    not placed) and when (ms)."""

    card: str
    dist_m: float | None
    ts: int = 0


@dataclass(frozen=True)
class Exit:
    """A tap-out on the vehicle."""

    card: str
    ts: int = 0


@dataclass(frozen=True)
class Occupancy:
    """The estimate: riders aboard (rounded), the vehicle's capacity, the share of it in
    per cent (may exceed 100) and the GTFS-Realtime `OccupancyStatus` name."""

    riders: int
    capacity: int
    percentage: int
    status: str

    def as_json(self) -> dict[str, object]:
        return {"occupancy_status": self.status, "occupancy_percentage": self.percentage,
                "riders": self.riders, "capacity": self.capacity}


@dataclass(frozen=True)
class RideCurve:
    """How far riders ride: the ride lengths seen (m, sorted), blended with the default
    exponential curve by `PRIOR_WEIGHT` pseudo-samples."""

    lengths: tuple[float, ...] = ()
    mean_m: float = DEFAULT_MEAN_RIDE_M

    @classmethod
    def default(cls) -> RideCurve:
        """No history: exponential with a `DEFAULT_MEAN_RIDE_M` mean."""
        return cls()

    @classmethod
    def learned(cls, lengths: Iterable[float]) -> RideCurve:
        """The curve of these ride lengths (at most `MAX_SAMPLES` are kept)."""
        kept = sorted(x for x in lengths if x >= 0 and math.isfinite(x))
        if len(kept) > MAX_SAMPLES:
            step = len(kept) / MAX_SAMPLES
            kept = [kept[int(i * step)] for i in range(MAX_SAMPLES)]
        return cls(tuple(kept))

    @property
    def samples(self) -> int:
        return len(self.lengths)

    def survival(self, travelled_m: float) -> float:
        """The probability that a ride is longer than `travelled_m`."""
        if travelled_m <= 0:
            return 1.0
        prior = math.exp(-travelled_m / self.mean_m)
        n = len(self.lengths)
        if n == 0:
            return prior
        longer = n - bisect.bisect_right(self.lengths, travelled_m)
        return (longer + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def status_of(percentage: int) -> str:
    """The GTFS-Realtime occupancy status of a share of the capacity (`THRESHOLDS`)."""
    for name, bound in zip(STATUSES, THRESHOLDS, strict=False):
        if percentage < bound:
            return name
    return STATUSES[-1]


def occupancy_of(riders: float, capacity: int) -> Occupancy:
    """The occupancy of `riders` aboard a vehicle of `capacity`."""
    capacity = max(1, capacity)
    aboard = max(0.0, riders)
    percentage = int(round(100 * aboard / capacity))
    return Occupancy(int(round(aboard)), capacity, percentage, status_of(percentage))


def aboard_probability(survival: float, tap_out_share: float) -> float:
    """The probability that a rider not seen tapping out is still aboard, given the
    curve's `survival` at the distance since they boarded and the route's
    `tap_out_share`: S / (S + (1 - r)(1 - S))."""
    s = min(1.0, max(0.0, survival))
    r = min(1.0, max(0.0, tap_out_share))
    if r >= 1.0:
        return 1.0  # everyone taps out: one who has not is aboard
    return s / (s + (1.0 - r) * (1.0 - s))


def riders_aboard(boardings: Sequence[Boarding], exits: Sequence[Exit], at_m: float | None,
                  curve: RideCurve, *, tap_out_share: float = 0.0) -> float:
    """The expected riders aboard (see the module's description).

    A card boarding twice counts once, from its latest boarding (a repeat tap, or back on
    after a tap-out); an exit removes a boarding made before it. An exit whose boarding
    is not among `boardings` removes nobody: that rider was never counted.
    """
    latest: dict[str, Boarding] = {}
    for b in boardings:
        if b.card not in latest or b.ts >= latest[b.card].ts:
            latest[b.card] = b
    for e in exits:
        boarded = latest.get(e.card)
        if boarded is not None and e.ts >= boarded.ts:
            del latest[e.card]
    total = 0.0
    for b in latest.values():
        if b.dist_m is None or at_m is None:
            total += 1.0
        else:
            total += aboard_probability(curve.survival(at_m - b.dist_m), tap_out_share)
    return total


def estimate(boardings: Sequence[Boarding], exits: Sequence[Exit], at_m: float | None,
             curve: RideCurve, capacity: int, *, tap_out_share: float = 0.0) -> Occupancy:
    """The vehicle's occupancy now, from the taps of its current trip."""
    return occupancy_of(riders_aboard(boardings, exits, at_m, curve,
                                      tap_out_share=tap_out_share), capacity)


@dataclass(frozen=True)
class TapOutShares:
    """The share of each route's riders who tap out: riders who tapped out over riders
    who boarded, blended with `DEFAULT_TAP_OUT_SHARE` by `SHARE_PRIOR_WEIGHT`
    pseudo-boardings, within 0..1."""

    counts: tuple[tuple[str, int, int], ...] = ()  # (route, boarded, tapped out), sorted

    @classmethod
    def learned(cls, taps: Iterable[TapSeen]) -> TapOutShares:
        """The shares of a span of taps (the last day's)."""
        boarded: dict[str, int] = {}
        left: dict[str, int] = {}
        for t in taps:
            if t.kind == "entry":
                boarded[t.route_id] = boarded.get(t.route_id, 0) + 1
            elif t.kind == "exit":
                left[t.route_id] = left.get(t.route_id, 0) + 1
        routes = sorted(set(boarded) | set(left))
        return cls(tuple((r, boarded.get(r, 0), left.get(r, 0)) for r in routes))

    def share(self, route_id: str) -> float:
        """The route's tap-out share (the default for a route without taps)."""
        i = bisect.bisect_left(self.counts, (route_id,))
        if i == len(self.counts) or self.counts[i][0] != route_id:
            return DEFAULT_TAP_OUT_SHARE
        _, boarded, left = self.counts[i]
        # A span cut at its start may hold exits of boardings before it: never above 1.
        left = min(left, boarded)
        return (left + SHARE_PRIOR_WEIGHT * DEFAULT_TAP_OUT_SHARE) / (
            boarded + SHARE_PRIOR_WEIGHT)


# -- learning the curve ----------------------------------------------------------------------

def place(pattern: Pattern, lat_e6: int, lon_e6: int, near_m: float | None = None
          ) -> float | None:
    """Where a tap made at (lat, lon) lies along `pattern` (m), None if off it."""
    where = pattern.shape.locate(lat_e6, lon_e6, near_m=near_m)
    return where.dist_m if where.offset_m <= ON_PATTERN_M else None


# A boarding without a fix (a reader's GPS not ready: lat/lon 0) is placed where the
# vehicle was, if its position is this close in time to the tap (at 10 m/s, within
# 300 m); else at the pattern's start.
VEHICLE_FIX_MS = 30_000


def boarding_m(placed: float | None, tap_ts: int, vehicle_m: float | None,
               vehicle_ts: int) -> float:
    """Where along the pattern a boarding counts from: where its tap was `placed`; for
    one not placed (no fix, or off the pattern) the vehicle's `vehicle_m` when that
    position is within `VEHICLE_FIX_MS` of the tap, else 0 (the trip's start). Counted
    as a full rider until the trip changed, such a boarding made every bus look fuller
    for hours; from the start, the ride-length curve applies to it as to the others."""
    if placed is not None:
        return placed
    if vehicle_m is not None and abs(tap_ts - vehicle_ts) <= VEHICLE_FIX_MS:
        return vehicle_m
    return 0.0


def alighting_m(pattern: Pattern, board_m: float, lat_e6: int, lon_e6: int
                ) -> tuple[float, float] | None:
    """Where along `pattern` a rider who boarded at `board_m` most likely left, given
    their next boarding at (lat, lon): the stop beyond the boarding nearest to it, if
    within `NEAR_M`, as (metres from the next boarding, metres along the pattern)."""
    best: tuple[float, float] | None = None
    for stop in pattern.stops:
        if stop.dist_m <= board_m:
            continue
        d = approx_metres(stop.lat_e6, stop.lon_e6, lat_e6, lon_e6)
        if d <= NEAR_M and (best is None or d < best[0]):
            best = (d, stop.dist_m)
    return best


def inferred_ride_m(patterns: Sequence[Pattern], first: tuple[int, int, int],
                    second: tuple[int, int, int]) -> float | None:
    """The length of a ride (m) from where its card boarded next.

    `first` is the boarding (ts, lat_e6, lon_e6), `second` the card's next boarding;
    `patterns` those the first vehicle may have been running (its own, or its route's:
    the one along which the boarding and the stop left at lie nearest to the two taps:
    the other direction of a two-way street usually reaches no stop as near).
    None when the next boarding says nothing: too late, not later, or far from every
    stop ahead.
    """
    gap = second[0] - first[0]
    if gap <= 0 or gap > MAX_GAP_MS:
        return None
    best: tuple[float, float] | None = None
    for pattern in patterns:
        where = pattern.shape.locate(first[1], first[2])
        if where.offset_m > ON_PATTERN_M:
            continue
        left = alighting_m(pattern, where.dist_m, second[1], second[2])
        if left is None:
            continue
        miss = where.offset_m + left[0]
        if best is None or miss < best[0]:
            best = (miss, left[1] - where.dist_m)
    return None if best is None else best[1]


@dataclass(frozen=True)
class TapSeen:
    """A charged tap as the curve's learning reads it."""

    card: str
    kind: str  # entry | exit
    ts: int
    vehicle_id: str
    route_id: str
    lat_e6: int
    lon_e6: int


def rides_of(taps: Iterable[TapSeen], patterns_of: Callable[[str], Sequence[Pattern]],
             limit: int = MAX_SAMPLES) -> list[float]:
    """Ride lengths (m) in a span of taps: each entry's tap-out on the same vehicle where
    there is one, else the card's next boarding (`inferred_ride_m`); at most `limit`,
    taken evenly through the span. `patterns_of(route_id)` names a route's patterns."""
    by_card: dict[str, list[TapSeen]] = {}
    for t in taps:
        by_card.setdefault(t.card, []).append(t)
    pairs: list[tuple[TapSeen, TapSeen]] = []
    for seen in by_card.values():
        seen.sort(key=lambda t: t.ts)
        for i, tap in enumerate(seen[:-1]):
            if tap.kind != "entry":
                continue
            after = seen[i + 1]
            if after.kind == "exit" and after.vehicle_id != tap.vehicle_id:
                continue  # an exit from another vehicle: this entry's own exit was missed
            pairs.append((tap, after))
    if len(pairs) > limit:
        step = len(pairs) / limit
        pairs = [pairs[int(i * step)] for i in range(limit)]
    out: list[float] = []
    for board, then in pairs:
        patterns = patterns_of(board.route_id)
        if then.kind == "exit":
            ride = _tapped_ride_m(patterns, board, then)
        else:
            ride = inferred_ride_m(patterns, (board.ts, board.lat_e6, board.lon_e6),
                                   (then.ts, then.lat_e6, then.lon_e6))
        if ride is not None:
            out.append(ride)
    return out


def _tapped_ride_m(patterns: Sequence[Pattern], entry: TapSeen, exit_: TapSeen
                   ) -> float | None:
    """A ride from its entry to its tap-out, along the pattern both lie on that runs
    from one to the other."""
    best: tuple[float, float] | None = None
    for pattern in patterns:
        a = pattern.shape.locate(entry.lat_e6, entry.lon_e6)
        if a.offset_m > ON_PATTERN_M:
            continue
        b = pattern.shape.locate(exit_.lat_e6, exit_.lon_e6, near_m=a.dist_m + 20_000,
                                 window_m=20_000)
        if b.offset_m > ON_PATTERN_M or b.dist_m < a.dist_m:
            continue
        miss = a.offset_m + b.offset_m
        if best is None or miss < best[0]:
            best = (miss, b.dist_m - a.dist_m)
    return None if best is None else best[1]
