"""Position and validator-status ingest: verify, refuse the impossible, keep the latest."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from tracking.domain import Point, derived_motion, refusal
from tracking.matching import Matcher
from tracking.network import Network
from tracking.schedule import Schedule
from tracking.store import TrackingStore, VehicleRecord
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
    """

    def __init__(self, store: TrackingStore, devices: DeviceCheck, network: Network,
                 topics: Topics, registry: CollectorRegistry,
                 window: EventWindow = DEFAULT_WINDOW, track: TrackSink | None = None,
                 schedule: Callable[[], Schedule] | None = None) -> None:
        self.store = store
        self.schedule = schedule
        self._matcher: Matcher | None = None
        self.track = track
        self.devices = devices
        self.network = network
        self.topics = topics
        self.window = window
        self.positions = Counter("transit_positions_total", "Positions received, by outcome",
                                 ["outcome"], registry=registry)
        self.statuses = Counter("transit_validator_status_total",
                                "Validator status messages, by outcome", ["outcome"],
                                registry=registry)

    def handle(self, batch: Sequence[Message]) -> dict[str, int]:
        """Ingest a batch; returns how many messages had each outcome."""
        outcomes: dict[str, int] = {}

        def count(outcome: str) -> None:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        now = int(time.time() * 1000)
        accepted: list[Position] = []
        for msg in batch:
            if msg.topic.endswith("/status"):
                self._status(msg, now)
                continue
            outcome = self._verify(msg, accepted)
            if outcome:
                count(outcome)
        accepted.sort(key=lambda p: (p.vehicle_id, p.ts))
        last = self.store.last(p.vehicle_id for p in accepted)
        matcher = self._matching() if accepted else None
        records: dict[str, VehicleRecord] = {}
        kept: list[VehicleRecord] = []
        for pos in accepted:
            prev = records.get(pos.vehicle_id) or last.get(pos.vehicle_id)
            point = Point(pos.ts, pos.lat_e6, pos.lon_e6)
            prev_point = Point(prev.ts, prev.lat_e6, prev.lon_e6) if prev else None
            why = refusal(point, prev_point, now, self.window)
            if why:
                count(why)
                continue
            speed, heading = pos.speed_cms, pos.bearing_deg
            if speed is None or heading is None:
                d_speed, d_heading = derived_motion(point, prev_point)
                speed = d_speed if speed is None else speed
                heading = d_heading if heading is None else heading
            fit = matcher.assign(pos.route_id, pos.ts, pos.lat_e6, pos.lon_e6, heading,
                                 pos.trip_id, prev, vehicle_id=pos.vehicle_id
                                 ) if matcher is not None else None
            if fit is not None:
                on = fit.next_stop
                record = VehicleRecord(
                    pos.vehicle_id, pos.device_id, pos.route_id, fit.trip_id, pos.ts,
                    pos.lat_e6, pos.lon_e6, speed, heading, on.stop_id if on else None,
                    on.name if on else None, fit.pattern_id, fit.dist_m, fit.start_date,
                    fit.trip_source, fit.progress)
            else:
                # A route without patterns, or a vehicle on none of them: the nearest
                # trip's next stop, and the device's trip as it said it.
                stop = self.network.next_stop(pos.route_id, pos.trip_id, point, heading)
                record = VehicleRecord(
                    pos.vehicle_id, pos.device_id, pos.route_id, pos.trip_id, pos.ts,
                    pos.lat_e6, pos.lon_e6, speed, heading, stop.stop_id if stop else None,
                    stop.name if stop else None)
            records[pos.vehicle_id] = record
            kept.append(record)
            count("accepted")
        # Every device whose signature held was heard now, whatever its position was
        # worth: even one dated long ago (a GPS without a fresh fix) says the validator
        # is talking. Positions are never queued for a gateway (a clean session), so
        # "received" is "sent" give or take the broker's hop.
        heard = dict.fromkeys((p.device_id for p in accepted), now)
        self.store.save(list(records.values()), heard=heard)
        if self.track is not None:
            self.track.append(kept)
        for outcome, n in outcomes.items():
            self.positions.labels(outcome).inc(n)
        return outcomes

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

    def _verify(self, msg: Message, accepted: list[Position]) -> str | None:
        try:
            pos = Position.parse(msg.payload)
        except WireError as exc:
            return exc.reason
        reason = self.devices.refusal(pos, self.topics.device_of(msg.topic))
        if reason is not None:
            return POSITION_REASONS.get(reason, reason)
        accepted.append(pos)
        return None

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
