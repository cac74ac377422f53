"""Position and validator-status ingest: verify, refuse the impossible, keep the latest."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from tracking.domain import Point, derived_motion, metres_e6, refusal
from tracking.matching import Matcher
from tracking.network import Network
from tracking.schedule import Schedule
from tracking.store import TRAIL, TrackingStore, VehicleRecord
from transit.topics import Topics
from transit.window import DEFAULT_WINDOW, EventWindow
from transit.wire import Position, WireError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A position or status message as it came off the broker."""

    topic: str
    payload: bytes
    retained: bool = False  # the broker's retained copy, said before we subscribed
    received_ms: int | None = None  # when it was read off the socket (epoch ms)


class Signed(Protocol):
    """A message signed with its device's key, naming its vehicle and its time."""

    @property
    def device_id(self) -> str: ...

    @property
    def vehicle_id(self) -> str: ...

    @property
    def ts(self) -> int: ...

    def verify(self, secret: bytes) -> bool: ...


class DeviceCheck(Protocol):
    """What tracking needs to know of the validators; the wiring hands in the gateway's
    device directory."""

    def refusal(self, message: Signed, topic_device: str | None) -> str | None:
        """Why a signed message received on `topic_device`'s topic cannot be trusted
        (`topic_mismatch`, `unknown_device`, `inactive_device`, `bad_signature`,
        `wrong_vehicle`: its device rode on another vehicle at its `ts`), or None."""
        ...

    def is_known(self, device_id: str) -> bool:
        """Whether a device of this id is registered."""
        ...


class TrackSink(Protocol):
    """Where every accepted position goes to be kept on disk (`tracking.track`)."""

    def append(self, records: Sequence[VehicleRecord]) -> None:
        """Take accepted positions, oldest first per vehicle; never blocks for long."""
        ...


# A revoked device's positions are counted with those of devices nobody registered: to
# the map both are strangers, and the metric's labels stay what dashboards know.
POSITION_REASONS = {"inactive_device": "unknown_device"}


class PositionIngest:
    """Turns batches of position and status messages into live vehicle state.

    A position is dropped, and counted by its reason, when its device cannot be trusted,
    when it names another vehicle than its device's (one validator must not move another
    bus on the map) or when `tracking.domain.refusal` finds it cannot be true, its time
    outside `window` included. Each accepted position is assigned the trip it runs
    (`tracking.matching`) against the schedule `schedule` returns.

    With `shared`, other processes ingest positions of the same vehicles at once (a
    shared subscription hands each message to any of them, so a validator's burst of
    spooled positions is split between them): a position no newer than the stored one
    is then judged against its neighbours in the vehicle's trail, not refused as
    `out_of_order` for a newer position another process took first. It is refused only
    if the trail holds its time already (a repeat), or if it is older than the whole of
    a full trail; taken, it goes to the track and into the trail by time, and leaves
    the vehicle's live state to the newer position.
    """

    def __init__(self, store: TrackingStore, devices: DeviceCheck, network: Network,
                 topics: Topics, registry: CollectorRegistry,
                 window: EventWindow = DEFAULT_WINDOW, track: TrackSink | None = None,
                 schedule: Callable[[], Schedule] | None = None, *,
                 shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        self.schedule = schedule
        self._matcher: Matcher | None = None
        self.track = track
        self.devices = devices
        self.network = network
        self.topics = topics
        self.window = window
        # Positions are counted in Redis, in the round trip that stores them
        # (`TrackingStore.save`): every ingest process of every gateway adds to the same
        # `transit_positions_total`, which each gateway's /metrics shows.
        self.statuses = Counter("transit_validator_status_total",
                                "Validator status messages, by outcome", ["outcome"],
                                registry=registry)

    def handle(self, batch: Sequence[Message]) -> dict[str, int]:
        """Ingest a batch; returns how many messages had each outcome."""
        outcomes: dict[str, int] = {}

        def count(outcome: str) -> None:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        now = int(time.time() * 1000)
        parsed: list[tuple[Position, str | None, int]] = []
        for msg in batch:
            if msg.topic.endswith("/status"):
                self._status(msg, now)
                continue
            try:
                parsed.append((Position.parse(msg.payload), self.topics.device_of(msg.topic),
                               now if msg.received_ms is None else msg.received_ms))
            except WireError as exc:
                count(exc.reason)
        # The batch's devices in one look-up (one query for those not cached), not one
        # query each: with a fleet's devices out of the cache that was 10 % of the
        # gateway's samples.
        prefetch = getattr(self.devices, "prefetch", None)
        if prefetch is not None and parsed:
            prefetch({pos.device_id for pos, _, _ in parsed})
        accepted: list[tuple[Position, int]] = []
        for pos, topic_device, received in parsed:
            reason = self.devices.refusal(pos, topic_device)
            if reason is not None:
                count(POSITION_REASONS.get(reason, reason))
            else:
                accepted.append((pos, received))
        accepted.sort(key=lambda a: (a[0].vehicle_id, a[0].ts))
        last = self.store.previous(p.vehicle_id for p, _ in accepted) if accepted else {}
        matcher = self._matching() if accepted else None
        records: dict[str, VehicleRecord] = {}
        kept: list[VehicleRecord] = []
        trails: dict[str, list[tuple[int, int, int]]] | None = None
        for pos, received in accepted:
            prev = records.get(pos.vehicle_id) or last.get(pos.vehicle_id)
            point = Point(pos.ts, pos.lat_e6, pos.lon_e6)
            if self.shared and prev is not None and pos.ts <= prev.ts:
                if prev.received_ms is not None and prev.received_ms < received:
                    # The newer position was received before this one: out of order, as
                    # one process would judge it, whichever process stored the newer.
                    count(refusal(point, Point(prev.ts, prev.lat_e6, prev.lon_e6), now,
                                  self.window) or "out_of_order")
                    continue
                if trails is None:  # one round trip for the batch's late positions
                    trails = self.store.trails(
                        p.vehicle_id for p, _ in accepted
                        if (q := last.get(p.vehicle_id)) is not None and p.ts <= q.ts)
                trail = trails.setdefault(pos.vehicle_id, [])
                why = self._late_refusal(point, trail, now)
                if why:
                    count(why)
                    continue
                trail.append((pos.ts, pos.lat_e6, pos.lon_e6))
                # Matched afresh: the newer position's progress says nothing of this one.
                kept.append(self._record(pos, matcher, None, pos.speed_cms,
                                         pos.bearing_deg, point, received))
                count("accepted")
                continue
            prev_point = Point(prev.ts, prev.lat_e6, prev.lon_e6) if prev else None
            # One distance for the plausibility and the derived speed, not one each.
            hop = metres_e6(prev.lat_e6, prev.lon_e6, pos.lat_e6, pos.lon_e6
                            ) if prev is not None else None
            why = refusal(point, prev_point, now, self.window, hop)
            if why:
                count(why)
                continue
            speed, heading = pos.speed_cms, pos.bearing_deg
            if speed is None or heading is None:
                d_speed, d_heading = derived_motion(point, prev_point, hop)
                speed = d_speed if speed is None else speed
                heading = d_heading if heading is None else heading
            record = self._record(pos, matcher, prev, speed, heading, point, received)
            records[pos.vehicle_id] = record
            kept.append(record)
            count("accepted")
        # Every device whose signature held was heard now, whatever its position was
        # worth: even one dated long ago (a GPS without a fresh fix) says the validator
        # is talking. Positions are never queued for a gateway (a clean session), so
        # "received" is "sent" give or take the broker's hop.
        heard = dict.fromkeys((p.device_id for p, _ in accepted), now)
        # A vehicle whose newer position another ingest process stored meanwhile keeps
        # it; this batch's positions of it still go to the track (they are true, only
        # late), and are counted accepted.
        self.store.save(kept, heard=heard, counts=outcomes)
        if self.track is not None:
            self.track.append(kept)
        return outcomes

    def _record(self, pos: Position, matcher: Matcher | None, prev: VehicleRecord | None,
                speed: int | None, heading: int | None, point: Point, received: int
                ) -> VehicleRecord:
        fit = matcher.assign(pos.route_id, pos.ts, pos.lat_e6, pos.lon_e6, heading,
                             pos.trip_id, prev, vehicle_id=pos.vehicle_id
                             ) if matcher is not None else None
        if fit is not None:
            on = fit.next_stop
            return VehicleRecord(
                pos.vehicle_id, pos.device_id, pos.route_id, fit.trip_id, pos.ts,
                pos.lat_e6, pos.lon_e6, speed, heading, on.stop_id if on else None,
                on.name if on else None, fit.pattern_id, fit.dist_m, fit.start_date,
                fit.trip_source, fit.progress, received)
        # A route without patterns, or a vehicle on none of them: the nearest trip's
        # next stop, and the device's trip as it said it.
        stop = self.network.next_stop(pos.route_id, pos.trip_id, point, heading)
        return VehicleRecord(
            pos.vehicle_id, pos.device_id, pos.route_id, pos.trip_id, pos.ts,
            pos.lat_e6, pos.lon_e6, speed, heading, stop.stop_id if stop else None,
            stop.name if stop else None, received_ms=received)

    def _late_refusal(self, point: Point, trail: list[tuple[int, int, int]], now: int
                      ) -> str | None:
        """Why a position older than the vehicle's stored one cannot be taken, judged
        against its neighbours in time in `trail` (any order), or None."""
        before = after = None
        for ts, lat, lon in trail:
            if ts == point.ts:
                return "out_of_order"  # the same position again
            if ts < point.ts and (before is None or ts > before.ts):
                before = Point(ts, lat, lon)
            elif ts > point.ts and (after is None or ts < after.ts):
                after = Point(ts, lat, lon)
        if before is None and len(trail) >= TRAIL:
            return "out_of_order"  # older than all a full trail holds: too late to judge
        why = refusal(point, before, now, self.window)
        if why is None and after is not None and refusal(
                after, point, now, self.window) == "impossible_jump":
            why = "impossible_jump"
        return why

    def _matching(self) -> Matcher | None:
        """The matcher of the schedule in force (made again when it is read again)."""
        if self.schedule is None:
            return None
        try:
            schedule = self.schedule()
        except Exception:  # the database away: positions are kept, trips wait
            log.exception("schedule not read; positions stored without trips")
            return None
        if self._matcher is None or self._matcher.schedule is not schedule:
            self._matcher = Matcher(schedule)
        return self._matcher

    def _status(self, msg: Message, now: int) -> None:
        device_id = self.topics.device_of(msg.topic)
        try:
            status = json.loads(msg.payload) if len(msg.payload) <= 4096 else None
        except (ValueError, RecursionError):
            status = None
        if device_id is None or not isinstance(status, dict) or not self.devices.is_known(
                device_id):
            self.statuses.labels("refused").inc()
            return
        if msg.retained:
            # Said before this gateway subscribed: as of the device's own time of it
            # (never later than now), so a restart does not make every device look
            # heard a moment ago.
            said = status.get("ts")
            when = min(said, now) if isinstance(said, int) and not isinstance(
                said, bool) and said > 0 else 0
            self.store.save_status(device_id, status, when, retained=True)
        else:
            self.store.save_status(device_id, status, now)
        self.statuses.labels("accepted").inc()
