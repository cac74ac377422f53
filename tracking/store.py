"""Live vehicle positions and validator status in Redis.

Keys, under a namespace per topic prefix:
  {ns}:geo             GEO set of vehicle positions (GEOSEARCH for "buses near here")
  {ns}:v:{vehicle}     hash: the latest position and what was derived from it
  {ns}:trail:{vehicle} list: the last TRAIL positions, newest first
  {ns}:dev:{device}    hash: the validator's last status message and when it came
  {ns}:heard           hash: device -> when anything of it (tap, position, status) was
                       last received by any gateway (ms)
  {ns}:spool:{device}  list: its reported spool depths, "received_ms,depth", newest first,
                       one per SPOOL_SAMPLE_EVERY_S at most (tracking.domain)
  {ns}:events          pub/sub channel of position changes (feeds every gateway's SSE)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis

from tracking.domain import SPOOL_SAMPLE_EVERY_S, SPOOL_SAMPLES

TRAIL = 50


class Stop(Protocol):
    """What ends a wait: a `threading.Event`, or anything that says when it is set."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class VehicleRecord:
    vehicle_id: str
    device_id: str
    route_id: str
    trip_id: str | None
    ts: int
    lat_e6: int
    lon_e6: int
    speed_cms: int | None
    bearing_deg: int | None
    next_stop_id: str | None
    next_stop_name: str | None
    # What trip assignment (tracking.matching) made of the position: the pattern it
    # runs, how far along its shape (m), the service date of its trip (YYYYMMDD), where
    # the trip came from (`device` or `matched`), and its recent progress as
    # "ts:dist_m" pairs, newest last (what the next assignment starts from).
    pattern_id: str | None = None
    dist_m: int | None = None
    start_date: str | None = None
    trip_source: str | None = None
    progress: str = ""

    def to_hash(self) -> dict[str, str]:
        return {k: ("" if v is None else str(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> VehicleRecord:
        def opt_int(key: str) -> int | None:
            return int(h[key]) if h.get(key) else None

        return cls(h["vehicle_id"], h["device_id"], h["route_id"], h.get("trip_id") or None,
                   int(h["ts"]), int(h["lat_e6"]), int(h["lon_e6"]), opt_int("speed_cms"),
                   opt_int("bearing_deg"), h.get("next_stop_id") or None,
                   h.get("next_stop_name") or None, h.get("pattern_id") or None,
                   opt_int("dist_m"), h.get("start_date") or None,
                   h.get("trip_source") or None, h.get("progress") or "")


class TrackingStore:
    """Reads and writes of live state; one Redis round trip per batch of positions."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = f"transit:{namespace}"

    def last(self, vehicle_ids: Iterable[str]) -> dict[str, VehicleRecord]:
        ids = list(dict.fromkeys(vehicle_ids))
        if not ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for vid in ids:
            pipe.hgetall(f"{self.ns}:v:{vid}")
        out = {}
        for vid, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                out[vid] = VehicleRecord.from_hash(_decode(raw))
        return out

    def save(self, records: list[VehicleRecord], heard: Mapping[str, int] | None = None
             ) -> None:
        """Store accepted positions (oldest first): the trail gets each, the vehicle's
        hash and GEO entry its newest; and when the devices `heard` were heard from, in
        the same round trip."""
        heard_map = {d: str(ms) for d, ms in (heard or {}).items()}
        if not records and not heard_map:
            return
        latest: dict[str, VehicleRecord] = {}
        pipe = self.redis.pipeline(transaction=False)
        if heard_map:
            pipe.hset(f"{self.ns}:heard", mapping=heard_map)
        for r in records:
            latest[r.vehicle_id] = r
            pipe.lpush(f"{self.ns}:trail:{r.vehicle_id}", f"{r.ts},{r.lat_e6},{r.lon_e6}")
        for r in latest.values():
            pipe.hset(f"{self.ns}:v:{r.vehicle_id}", mapping=r.to_hash())
            pipe.geoadd(f"{self.ns}:geo", (r.lon_e6 / 1e6, r.lat_e6 / 1e6, r.vehicle_id))
            pipe.ltrim(f"{self.ns}:trail:{r.vehicle_id}", 0, TRAIL - 1)
        if latest:
            pipe.publish(f"{self.ns}:events",
                         json.dumps([asdict(r) for r in latest.values()]))
        pipe.execute()

    def vehicles(self) -> list[VehicleRecord]:
        ids = [_s(v) for v in self.redis.zrange(f"{self.ns}:geo", 0, -1)]
        return sorted(self.last(ids).values(), key=lambda r: r.vehicle_id)

    def trail(self, vehicle_id: str) -> list[tuple[int, int, int]]:
        out = []
        for item in self.redis.lrange(f"{self.ns}:trail:{vehicle_id}", 0, -1):
            ts, lat, lon = _s(item).split(",")
            out.append((int(ts), int(lat), int(lon)))
        return out

    def heard(self, when: Mapping[str, int]) -> None:
        """Record when these devices were heard from (one round trip)."""
        if when:
            self.redis.hset(f"{self.ns}:heard",
                            mapping={d: str(ms) for d, ms in when.items()})

    def last_heard(self) -> dict[str, int]:
        """When each device was last heard from, by any gateway (ms)."""
        return {_s(k): int(v) for k, v in self.redis.hgetall(f"{self.ns}:heard").items()}

    def save_status(self, device_id: str, status: dict[str, Any], received_ms: int, *,
                    retained: bool = False) -> None:
        """Keep a validator's status message; it was heard now, and its spool depth joins
        its samples when the last one is old enough.

        A `retained` status is the broker's copy of one said earlier (a gateway that
        connects receives every device's): it is kept as of `received_ms`, the time it
        was said, only if nothing newer is, and it does not count as heard now.
        """
        key = f"{self.ns}:dev:{device_id}"
        sampled, known = self.redis.hmget(key, ["sampled_ms", "received_ms"])
        if retained and known is not None and int(known) >= received_ms:
            return
        pipe = self.redis.pipeline(transaction=False)
        mapping = {"status": json.dumps(status), "received_ms": str(received_ms)}
        depth = status.get("spool_depth")
        if not retained and isinstance(depth, int) and not isinstance(depth, bool) and (
                sampled is None
                or received_ms - int(sampled) >= SPOOL_SAMPLE_EVERY_S * 1000):
            mapping["sampled_ms"] = str(received_ms)
            samples = f"{self.ns}:spool:{device_id}"
            pipe.lpush(samples, f"{received_ms},{depth}")
            pipe.ltrim(samples, 0, SPOOL_SAMPLES - 1)
            # Gone ten minutes after the last: a validator back after hours starts
            # afresh, not "growing since yesterday".
            pipe.expire(samples, SPOOL_SAMPLES * SPOOL_SAMPLE_EVERY_S)
        pipe.hset(key, mapping=mapping)
        pipe.sadd(f"{self.ns}:devices", device_id)
        if not retained:
            pipe.hset(f"{self.ns}:heard", device_id, str(received_ms))
        pipe.execute()

    def statuses(self) -> dict[str, tuple[dict[str, Any], int]]:
        ids = sorted(_s(d) for d in self.redis.smembers(f"{self.ns}:devices"))
        pipe = self.redis.pipeline(transaction=False)
        for d in ids:
            pipe.hgetall(f"{self.ns}:dev:{d}")
        out = {}
        for d, raw in zip(ids, pipe.execute(), strict=True):
            h = _decode(raw)
            if h:
                out[d] = (json.loads(h["status"]), int(h["received_ms"]))
        return out

    def spool_samples(self, device_ids: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
        """Each device's sampled spool depths, `(received_ms, depth)` newest first."""
        ids = list(device_ids)
        pipe = self.redis.pipeline(transaction=False)
        for d in ids:
            pipe.lrange(f"{self.ns}:spool:{d}", 0, -1)
        out: dict[str, list[tuple[int, int]]] = {}
        for d, raw in zip(ids, pipe.execute(), strict=True):
            pairs = [_s(item).split(",") for item in raw]
            out[d] = [(int(ms), int(depth)) for ms, depth in pairs]
        return out

    def events(self, stop: Stop, quiet_s: float = 15.0
               ) -> Iterator[list[dict[str, Any]] | None]:
        """Position changes as they are saved (by any gateway); None after each quiet
        spell of `quiet_s`. Ends soon after `stop` is set."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(f"{self.ns}:events")
        quiet_since = time.monotonic()
        try:
            while not stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    if time.monotonic() - quiet_since >= quiet_s:
                        quiet_since = time.monotonic()
                        yield None
                    continue
                quiet_since = time.monotonic()
                if message.get("type") == "message":
                    yield json.loads(message["data"])
        finally:
            pubsub.close()


def redis_client(url: str) -> redis.Redis:
    """A Redis client for `TRANSIT_REDIS_URL` (connects lazily, on first use)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                health_check_interval=30)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in raw.items()}
