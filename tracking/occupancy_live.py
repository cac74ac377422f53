"""The gateway's occupancy estimator: a thread that follows the taps as they are stored,
keeps each vehicle's riders of its current trip and answers `occupancy(vehicle_id)` for
`/api/v1/vehicles` and the VehiclePositions feed (`tracking.occupancy` does the sums).

Every `interval_s` (2 s) it reads the charged taps received since its cursor (through
`TapLog`, which the wiring hands in: the taps are the gateway's), and the trip and
progress of the vehicles they were made on from the live store; every vehicle's only
every `follow_s` (10 s), and only the fields it uses (`VehicleProgress`). Hourly it
relearns, from the last day's taps, the ride-length curve and, per route, the share of
riders who tap out (applied on the routes `taps_out` names: those priced by distance).
A vehicle's riders are forgotten when its trip changes (a new trip or pattern, or its
progress going back more than a kilometre: it turned at the terminal, where everyone
left) and after `MAX_RIDE_MS`. Every gateway
runs one, over the taps every gateway stored: each answers the same.

A tick recomputes only the vehicles whose estimate may have changed: a tap on it (or a
card of it seen boarding elsewhere), a new trip, `MOVED_M` travelled, its capacity set,
riders forgotten, the curve relearned; and any estimate older than `REFRESH_MS`.
Recomputing all of them took 0.40 s a tick at 4,300 vehicles of 100 boardings each,
~22 % of a core every 2 s under the GIL the taps need. Reading every vehicle's whole
record each tick was the rest of this thread's cost (see docs/benchmarks.md, "The
gateway's background work").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from sqlalchemy import select

from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import VehicleCapacity
from tracking.occupancy import (
    DEFAULT_CAPACITY,
    Boarding,
    Exit,
    Occupancy,
    RideCurve,
    TapOutShares,
    TapSeen,
    alighting_m,
    boarding_m,
    estimate,
    occupancy_of,
    place,
    rides_of,
)
from tracking.schedule import Pattern, Schedule
from tracking.store import TrackingStore

log = logging.getLogger(__name__)

# A tick is one indexed read of the taps since the last and one pipelined read of the
# vehicles they were made on: every 2 s the map shows a boarding within a few seconds
# for little cost.
INTERVAL_S = 2.0
# Every vehicle's trip and progress is read this often: a new trip, or 50 m travelled
# (`MOVED_M`, ~5 s at busway speed), is seen within 10 s rather than 2 s. Read each tick
# it cost 0.3-0.5 s of CPU at 4,300 vehicles (whole records); 7 of their 16 fields, a
# fifth of the ticks, ~1/10 of that (docs/benchmarks.md).
FOLLOW_S = 10.0
START_BACK_MS = 3 * 3_600_000  # read at start: a restart does not empty every bus
MAX_RIDE_MS = 3 * 3_600_000  # a rider boarded longer ago is no longer counted
# Taps are stamped when received and committed a moment later, not always in that order
# between gateways (a batch waits tens of milliseconds, its commit as long again): each
# read goes back LAG_MS and skips the taps it has seen.
LAG_MS = 5_000
PAGE = 5000  # taps per read; a backlog is read page after page
CURVE_EVERY_S = 3600.0
CURVE_SPAN_MS = 86_400_000
CURVE_ROWS = 100_000  # the newest taps of the last day the curve is learned from
# Rides inferred per relearning: 2,000 take about 3 s of this thread each hour on the
# Transjakarta network (5,000: 7 s, measured), and place the curve's quantiles within a
# few per cent of those of all the day's rides.
CURVE_RIDES = 2000
CAPACITY_TTL_S = 10.0  # one row per vehicle: cheap to read, so a change shows soon
TURNED_M = 1000.0  # progress going back this far: a new trip
# A tap read at start is counted on the vehicle's current trip only if it lies on its
# pattern behind it at a pace a bus keeps (m/s): the taps of the trip before, on the
# same streets the other way, mostly do not.
PACE_MPS = (1.5, 25.0)
LIVE_SAMPLES = 2000  # rides inferred live, kept to update the curve between relearnings
# A vehicle's estimate is recomputed once it has gone this far since the last: 50 m
# changes a rider's odds of being aboard by ~1 % on the default curve (4 km mean).
MOVED_M = 50.0
# ... and at least this often, whatever happened: a curve nudged by a ride seen live,
# a route's fares starting or ending distance pricing (`taps_out`) reach every vehicle.
REFRESH_MS = 60_000
FORGET_EVERY_MS = 60_000  # riders older than a ride lasts: looked for once a minute


class TapRow(Protocol):
    """A stored tap, as the estimator reads it."""

    @property
    def tap_id(self) -> str: ...
    @property
    def received_ms(self) -> int: ...
    @property
    def vehicle_id(self) -> str: ...
    @property
    def route_id(self) -> str: ...
    @property
    def card(self) -> str: ...
    @property
    def kind(self) -> str: ...  # entry | exit
    @property
    def ts(self) -> int: ...
    @property
    def lat_e6(self) -> int: ...
    @property
    def lon_e6(self) -> int: ...


class TapLog(Protocol):
    """The charged taps (`fare_gateway.fleet.FleetRecords`)."""

    def charged_since(self, received_ms: int, limit: int) -> Sequence[TapRow]:
        """Charged taps received at or after `received_ms`, oldest first, at most `limit`."""
        ...

    def charged_recent(self, since_ms: int, limit: int) -> Sequence[TapRow]:
        """The newest `limit` charged taps received at or after `since_ms`."""
        ...

    def charged_ids(self, since_ms: int, before_ms: int) -> set[str]:
        """The ids of the charged taps received at or after `since_ms`, before
        `before_ms`."""
        ...

    def charged_taps(self, tap_ids: Collection[str]) -> Sequence[TapRow]:
        """The charged taps of these ids."""
        ...


class Capacities:
    """The capacities set with `transit vehicles capacity`, by vehicle."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def __call__(self) -> dict[str, int]:
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
            return {v: c for v, c in session.execute(
                select(VehicleCapacity.vehicle_id, VehicleCapacity.capacity))}


class Placed(Protocol):
    """What the estimator reads of a live vehicle (a `tracking.store.VehicleRecord` is
    one)."""

    @property
    def vehicle_id(self) -> str: ...
    @property
    def route_id(self) -> str: ...
    @property
    def trip_id(self) -> str | None: ...
    @property
    def pattern_id(self) -> str | None: ...
    @property
    def start_date(self) -> str | None: ...
    @property
    def ts(self) -> int: ...
    @property
    def dist_m(self) -> int | None: ...


class Vehicles(Protocol):
    """The live vehicles (`VehicleProgress` over the live store)."""

    def vehicles(self) -> Sequence[Placed]:
        """Every live vehicle."""
        ...

    def of(self, vehicle_ids: Collection[str]) -> Sequence[Placed]:
        """Those of `vehicle_ids` the store has."""
        ...


@dataclass(frozen=True, slots=True)
class Progress:
    """A live vehicle's trip and how far along it is: the fields of its record the
    estimator uses."""

    vehicle_id: str
    route_id: str
    trip_id: str | None
    pattern_id: str | None
    start_date: str | None
    ts: int
    dist_m: int | None


_FIELDS = ("vehicle_id", "route_id", "trip_id", "pattern_id", "start_date", "ts", "dist_m")
CHUNK = 1000  # vehicles per pipelined read: Redis answers others between the chunks


class VehicleProgress:
    """The live vehicles' `Progress`, read with HMGET of its fields only, `CHUNK` vehicles
    a round trip, from the keys `tracking.store` writes (`{ns}:geo`, `{ns}:v:{id}`)."""

    def __init__(self, store: TrackingStore) -> None:
        self.store = store

    def vehicles(self) -> list[Progress]:
        """Every live vehicle's."""
        members = cast(list[bytes], self.store.redis.zrange(f"{self.store.ns}:geo", 0, -1))
        return self.of([_s(v) for v in members])

    def of(self, vehicle_ids: Collection[str]) -> list[Progress]:
        """Those of `vehicle_ids` the store has."""
        ids = list(vehicle_ids)
        out: list[Progress] = []
        for k in range(0, len(ids), CHUNK):
            pipe = self.store.redis.pipeline(transaction=False)
            for wanted in ids[k:k + CHUNK]:
                pipe.hmget(f"{self.store.ns}:v:{wanted}", _FIELDS)
            for row in pipe.execute():
                vid, route, trip, pattern, start, ts, dist = (
                    "" if v is None else _s(v) for v in row)
                if not vid or not route or not ts:
                    continue  # gone meanwhile
                out.append(Progress(vid, route, trip or None, pattern or None,
                                    start or None, int(ts), int(dist) if dist else None))
        return out


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class _Trip:
    """A vehicle's current trip and its riders."""

    key: tuple[str | None, str | None, str | None]  # trip, pattern, start date
    since_ms: int  # taps made before are of the trip before
    furthest_m: float = -1.0
    boardings: dict[str, Boarding] = field(default_factory=dict)
    exits: list[Exit] = field(default_factory=list)


@dataclass(frozen=True)
class _Last:
    """Where a card last boarded: what its next boarding elsewhere tells about."""

    vehicle_id: str
    ts: int


def _key(r: Placed) -> tuple[str | None, str | None, str | None]:
    return (r.trip_id, r.pattern_id, r.start_date)


class LiveOccupancy:
    """Each vehicle's occupancy, kept current from the stored taps."""

    def __init__(self, taps: TapLog, vehicles: Vehicles,
                 capacities: Callable[[], Mapping[str, int]],
                 schedule: Callable[[], Schedule], *,
                 taps_out: Callable[[str, int], bool] = lambda route_id, ts: False,
                 interval_s: float = INTERVAL_S, follow_s: float = FOLLOW_S,
                 clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.taps = taps
        self.vehicles = vehicles
        self.capacities = capacities
        self.schedule = schedule
        self.taps_out = taps_out
        self.interval_s = interval_s
        self.follow_s = follow_s
        self.clock = clock
        self.curve = RideCurve.default()
        self.shares = TapOutShares()  # per route, relearned with the curve
        self._trips: dict[str, _Trip] = {}
        self._last: dict[str, _Last] = {}
        self._seen: dict[str, int] = {}  # tap_id -> received_ms, within LAG_MS of the cursor
        self._cursor: int | None = None
        self._records: dict[str, Placed] = {}  # each vehicle's, as last read
        self._followed_ms = -(1 << 62)  # when every vehicle was last read
        self._snapshot: dict[str, Occupancy] = {}
        self._ready = False
        self._live_rides: deque[float] = deque(maxlen=LIVE_SAMPLES)
        self._live_new = False  # rides seen live since the curve was last made
        self._estimated: dict[str, tuple[float | None, int]] = {}  # (at_m, when) of each
        self._dirty: set[str] = set()  # vehicles to recompute, whatever else
        self._forgot_ms = -(1 << 62)
        self.estimated = 0  # vehicles the last tick recomputed
        self._learned: list[float] = []
        self._curve_at = -1e18
        self._capacities: dict[str, int] = {}
        self._capacities_at = -1e18
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="occupancy", daemon=True)

    # -- what the HTTP layer and the feed ask ------------------------------------------

    def occupancy(self, vehicle_id: str) -> Occupancy | None:
        """The vehicle's occupancy as of the last read (None before the first)."""
        with self._lock:
            if not self._ready:
                return None
            found = self._snapshot.get(vehicle_id)
            if found is not None:
                return found
            return occupancy_of(0, self._capacities.get(vehicle_id, DEFAULT_CAPACITY))

    # -- the thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                self.tick()
                if self._failing:
                    log.info("occupancy: reading the taps again")
                self._failing = False
            except Exception as exc:  # a database or Redis away: try again next time
                if not self._failing:
                    log.warning("occupancy: cannot read the taps or the vehicles (%s): the "
                                "estimates are kept as they were until it works again", exc)
                self._failing = True
            if self._stop.wait(self.interval_s):
                return

    def tick(self) -> None:
        """Read what came since the last tick and recompute the estimates that changed."""
        now = self.clock()
        mono = time.monotonic()
        if mono - self._capacities_at > CAPACITY_TTL_S:
            before = self._capacities
            self._capacities = dict(self.capacities())
            self._capacities_at = mono
            self._dirty.update(v for v in before.keys() | self._capacities.keys()
                               if before.get(v) != self._capacities.get(v))
        schedule = self.schedule()
        starting = self._cursor is None
        taps = self._read_new(now)
        every = now - self._followed_ms >= self.follow_s * 1000
        if every:
            fresh = {r.vehicle_id: r for r in self.vehicles.vehicles()}
            self._followed_ms = now
        else:
            # The vehicles of the new taps (and those their cards boarded before) are read
            # now: a tap is counted on the trip its vehicle runs now.
            wanted = {t.vehicle_id for t in taps}
            wanted.update(self._last[t.card].vehicle_id for t in taps if t.card in self._last)
            fresh = {r.vehicle_id: r for r in self.vehicles.of(sorted(wanted))} \
                if wanted else {}
        self._follow_trips(fresh, now)
        records = fresh if every else {**self._records, **fresh}
        for tap in taps:
            self._take(tap, records, schedule, restarting=starting, now=now)
        if mono - self._curve_at > CURVE_EVERY_S:
            self._learn(schedule, now)
            self._curve_at = mono
            self._dirty.update(self._trips)  # another curve and shares: every estimate
        elif self._live_new:
            # Made once a tick, not once a ride seen (a sort of up to 4,000 lengths);
            # each estimate takes it at its next recomputing.
            self.curve = RideCurve.learned([*self._learned, *self._live_rides])
        self._live_new = False
        if now - self._forgot_ms >= FORGET_EVERY_MS:
            self._forget(now)
            self._forgot_ms = now
        changed: dict[str, Occupancy] = {}
        for vehicle_id, trip in self._trips.items():
            r = records.get(vehicle_id)
            at_m = None if r is None or r.dist_m is None else float(r.dist_m)
            last = self._estimated.get(vehicle_id)
            if (vehicle_id not in self._dirty and last is not None
                    and now - last[1] < REFRESH_MS and _near(last[0], at_m)):
                continue
            share = self.shares.share(r.route_id) if r is not None and self.taps_out(
                r.route_id, now) else 0.0
            changed[vehicle_id] = estimate(
                list(trip.boardings.values()), trip.exits, at_m, self.curve,
                self._capacities.get(vehicle_id, DEFAULT_CAPACITY), tap_out_share=share)
            self._estimated[vehicle_id] = (at_m, now)
        gone = [v for v in self._estimated if v not in self._trips]
        for vehicle_id in gone:
            del self._estimated[vehicle_id]
        self._dirty.clear()
        self.estimated = len(changed)
        with self._lock:
            self._records = records
            self._snapshot.update(changed)
            for vehicle_id in gone:
                self._snapshot.pop(vehicle_id, None)
            self._ready = True

    # -- steps ---------------------------------------------------------------------------

    def _read_new(self, now: int) -> list[TapRow]:
        out: list[TapRow] = []
        if self._cursor is None:
            start = now - START_BACK_MS
        else:
            # Taps received before the cursor and committed since the last read: the ids
            # of the last LAG_MS, and the rows of those not seen. (Reading those rows
            # whole again each time cost the gateway ~10 us of CPU a tap in a burst.)
            late = self.taps.charged_ids(self._cursor - LAG_MS, self._cursor)
            late.difference_update(self._seen)
            if late:
                out.extend(self.taps.charged_taps(sorted(late)))
                for t in out:
                    self._seen[t.tap_id] = t.received_ms
            start = self._cursor
        while True:
            page = self.taps.charged_since(start, PAGE)
            fresh = [t for t in page if t.tap_id not in self._seen]
            for t in fresh:
                self._seen[t.tap_id] = t.received_ms
            out.extend(fresh)
            if len(page) < PAGE:
                break
            if page[-1].received_ms == start:  # a whole page in one millisecond
                break
            start = page[-1].received_ms
        top = max([t.received_ms for t in out], default=self._cursor or now - START_BACK_MS)
        self._cursor = max(self._cursor or 0, top)
        floor = self._cursor - 2 * LAG_MS
        self._seen = {k: v for k, v in self._seen.items() if v >= floor}
        out.sort(key=lambda t: (t.ts, t.tap_id))
        return out

    def _follow_trips(self, records: Mapping[str, Placed], now: int) -> None:
        """Start a vehicle's trip afresh when it began another since it was last read
        (`records`: those read now)."""
        for vehicle_id, trip in list(self._trips.items()):
            r = records.get(vehicle_id)
            if r is None:
                continue
            turned = (r.dist_m is not None and trip.furthest_m >= 0
                      and r.dist_m < trip.furthest_m - TURNED_M)
            if _key(r) != trip.key or turned:
                # It began between the position seen last tick and this one.
                before = self._records.get(vehicle_id)
                since = r.ts if before is None else min(r.ts, before.ts)
                self._trips[vehicle_id] = _Trip(_key(r), since, -1.0 if r.dist_m is None
                                                else float(r.dist_m))
                self._dirty.add(vehicle_id)
            elif r.dist_m is not None:
                trip.furthest_m = max(trip.furthest_m, float(r.dist_m))

    def _trip_of(self, record: Placed | None, vehicle_id: str, ts: int) -> _Trip:
        trip = self._trips.get(vehicle_id)
        if trip is None:
            key = (None, None, None) if record is None else _key(record)
            furthest = -1.0 if record is None or record.dist_m is None else float(
                record.dist_m)
            trip = self._trips[vehicle_id] = _Trip(key, ts - MAX_RIDE_MS, furthest)
        return trip

    def _take(self, tap: TapRow, records: Mapping[str, Placed], schedule: Schedule,
              *, restarting: bool, now: int) -> None:
        r = records.get(tap.vehicle_id)
        trip = self._trip_of(r, tap.vehicle_id, tap.ts)
        self._dirty.add(tap.vehicle_id)
        if tap.kind == "exit":
            trip.exits.append(Exit(tap.card, tap.ts))
            return
        if tap.kind != "entry":
            return
        self._left_elsewhere(tap, schedule, records)
        self._last[tap.card] = _Last(tap.vehicle_id, tap.ts)
        if tap.ts < trip.since_ms:
            return  # made on the trip before, received late
        pattern = None if r is None or r.pattern_id is None else schedule.patterns.get(
            r.pattern_id)
        dist = None
        if pattern is not None:
            near = None if r is None or r.dist_m is None else float(r.dist_m)
            placed = place(pattern, tap.lat_e6, tap.lon_e6, near_m=None if restarting
                           else near)
            if restarting and not _paced(placed, near, tap.ts, now):
                return
            dist = boarding_m(placed, tap.ts, near, r.ts if r is not None else 0)
        trip.boardings[tap.card] = Boarding(tap.card, dist, tap.ts)

    def _left_elsewhere(self, tap: TapRow, schedule: Schedule,
                        records: Mapping[str, Placed]) -> None:
        """A card boarding another vehicle has left the one it was on: it is no longer
        counted there, and where it most likely left is a ride of the curve."""
        last = self._last.get(tap.card)
        if last is None or last.vehicle_id == tap.vehicle_id or tap.ts <= last.ts:
            return
        trip = self._trips.get(last.vehicle_id)
        if trip is None:
            return
        boarding = trip.boardings.pop(tap.card, None)
        if boarding is None:
            return
        self._dirty.add(last.vehicle_id)
        if boarding.dist_m is None:
            return
        r = records.get(last.vehicle_id)
        pattern = None if r is None or r.pattern_id is None else schedule.patterns.get(
            r.pattern_id)
        if pattern is not None and tap.ts - last.ts <= MAX_RIDE_MS:
            left = alighting_m(pattern, boarding.dist_m, tap.lat_e6, tap.lon_e6)
            if left is not None:
                self._live_rides.append(left[1] - boarding.dist_m)
                self._live_new = True

    def _learn(self, schedule: Schedule, now: int) -> None:
        """Relearn the ride-length curve and the routes' tap-out shares from the last
        day's taps."""
        rows = self.taps.charged_recent(now - CURVE_SPAN_MS, CURVE_ROWS)
        seen = [TapSeen(t.card, t.kind, t.ts, t.vehicle_id, t.route_id, t.lat_e6,
                        t.lon_e6) for t in rows]
        cache: dict[str, list[Pattern]] = {}

        def patterns_of(route_id: str) -> list[Pattern]:
            if route_id not in cache:
                cache[route_id] = schedule.patterns_of(route_id)
            return cache[route_id]

        self._learned = rides_of(seen, patterns_of, limit=CURVE_RIDES)
        self._live_rides.clear()  # the day's taps hold them now
        self.curve = RideCurve.learned(self._learned)
        self.shares = TapOutShares.learned(seen)
        log.info("occupancy: ride lengths learned from %d rides of the last day, tap-out "
                 "shares of %d routes", len(self._learned), len(self.shares.counts))

    def _forget(self, now: int) -> None:
        """Bounded memory: riders, cards and vehicles older than a ride can last."""
        floor = now - MAX_RIDE_MS
        for vehicle_id, trip in list(self._trips.items()):
            riders = len(trip.boardings) + len(trip.exits)
            trip.boardings = {c: b for c, b in trip.boardings.items() if b.ts >= floor}
            trip.exits = [e for e in trip.exits if e.ts >= floor]
            if len(trip.boardings) + len(trip.exits) != riders:
                self._dirty.add(vehicle_id)
            if not trip.boardings and not trip.exits and trip.since_ms < floor:
                del self._trips[vehicle_id]
        self._last = {c: v for c, v in self._last.items() if v.ts >= floor}


def _near(before: float | None, now: float | None) -> bool:
    """Whether a vehicle is where its last estimate had it, within `MOVED_M`."""
    if before is None or now is None:
        return before is None and now is None
    return abs(now - before) < MOVED_M


def _paced(dist: float | None, at_m: float | None, ts: int, now: int) -> bool:
    """Whether a tap read at start, placed at `dist`, can be of the trip the vehicle now
    at `at_m` is running: behind it, at a pace a bus keeps."""
    if dist is None or at_m is None:
        return True
    behind = at_m - dist
    if behind < -200:
        return False
    seconds = max(1.0, (now - ts) / 1000)
    return behind / seconds <= PACE_MPS[1] and (behind >= PACE_MPS[0] * seconds
                                                or behind < 500)
