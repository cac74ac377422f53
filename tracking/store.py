"""Live vehicle positions and validator status in Redis.

Keys, under a namespace per topic prefix:
  {ns}:geo             GEO set of vehicle positions (GEOSEARCH for "buses near here")
  {ns}:v:{vehicle}     hash: the latest position and what was derived from it
  {ns}:r:{vehicle}     string: the same record as one JSON array of strings (what the
                       position ingest reads back: one MGET a batch)
  {ns}:trail:{vehicle} list: the last TRAIL positions, newest first
  {ns}:dev:{device}    hash: the validator's last status message and when it came
  {ns}:heard           hash: device -> when anything of it (tap, position, status) was
                       last received by any gateway (ms)
  {ns}:spool:{device}  list: its reported spool depths, "received_ms,depth", newest first,
                       one per SPOOL_SAMPLE_EVERY_S at most (tracking.domain)
  {ns}:events          pub/sub channel of position changes (feeds every gateway's SSE)
  {ns}:counts:{family} hash: outcome -> count, added by every ingest process sharing this
                       Redis and prefix (`transit_positions_total`,
                       `transit_track_positions_total` on every gateway's /metrics)
  {ns}:schedule:{gateway}:{process}  string: the `gtfs_feed` stamp of the schedule that
                       process serves ("" for none), set at each check (every 2 s) and
                       gone SCHEDULE_SEEN_TTL_S after its last (tracking.schedule_load)

A batch of positions is written by one script (`SAVE_SCRIPT`), atomic in Redis: a
vehicle's hash, record, GEO entry and trail take a position only if it is newer than
the one stored, so that two ingest processes handling positions of one vehicle at once
(a shared subscription hands them to either) never put an older position over a newer
one; such a late position is merged into the trail by time instead of topping it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

import orjson
import redis

from tracking.domain import SPOOL_SAMPLE_EVERY_S, SPOOL_SAMPLES
from transit import jsonbytes

TRAIL = 50
SCHEDULE_SEEN_TTL_S = 10  # five missed checks: the process is gone

# KEYS: none (every key is under ARGV[1], the namespace). ARGV: namespace, trail length,
# then the number of heard pairs and of count pairs, those pairs, then per vehicle its
# record (a JSON array of strings, `VehicleRecord.pack`), its trail entries oldest first
# ("ts,lat,lon" joined by ";") and its event (JSON). Returns how many vehicles' positions
# were older than the stored one (not written).
SAVE_SCRIPT = """
local ns = ARGV[1]
local trail = tonumber(ARGV[2])
local n_heard = tonumber(ARGV[3])
local n_counts = tonumber(ARGV[4])
local i = 5
if n_heard > 0 then
  local h = {}
  for j = i, i + 2 * n_heard - 1 do h[#h + 1] = ARGV[j] end
  redis.call('HSET', ns .. ':heard', unpack(h))
  i = i + 2 * n_heard
end
for j = i, i + 2 * n_counts - 1, 2 do
  redis.call('HINCRBY', ns .. ':counts:positions', ARGV[j], ARGV[j + 1])
end
i = i + 2 * n_counts
local fields = {FIELDS}
local events = {}
local stale = 0
while i <= #ARGV do
  local rec = cjson.decode(ARGV[i])
  local vid = rec[1]
  local ts = tonumber(rec[5])
  local key = ns .. ':v:' .. vid
  local stored = redis.call('HGET', key, 'ts')
  local since = stored and tonumber(stored) or -1
  if since < ts then
    local h = {}
    for j, f in ipairs(fields) do h[#h + 1] = f; h[#h + 1] = rec[j] end
    redis.call('HSET', key, unpack(h))
    redis.call('SET', ns .. ':r:' .. vid, ARGV[i])
    redis.call('GEOADD', ns .. ':geo', tonumber(rec[7]) / 1e6, tonumber(rec[6]) / 1e6, vid)
    events[#events + 1] = ARGV[i + 2]
  else
    stale = stale + 1
  end
  -- The trail: entries newer than the stored position on top; older ones (late: taken
  -- by another ingest process after a newer one of the vehicle) merged in by time.
  local tkey = ns .. ':trail:' .. vid
  local late = {}
  for item in string.gmatch(ARGV[i + 1], '[^;]+') do
    if tonumber(string.match(item, '^[^,]+')) > since then
      redis.call('LPUSH', tkey, item)
    else
      late[#late + 1] = item
    end
  end
  if #late > 0 then
    local have = redis.call('LRANGE', tkey, 0, -1)
    local seen = {}
    for _, item in ipairs(have) do seen[string.match(item, '^[^,]+')] = true end
    for _, item in ipairs(late) do
      local t = string.match(item, '^[^,]+')
      if not seen[t] then have[#have + 1] = item; seen[t] = true end
    end
    table.sort(have, function(a, b)
      return tonumber(string.match(a, '^[^,]+')) > tonumber(string.match(b, '^[^,]+'))
    end)
    redis.call('DEL', tkey)
    redis.call('RPUSH', tkey, unpack(have, 1, math.min(#have, trail)))
  end
  redis.call('LTRIM', tkey, 0, trail - 1)
  i = i + 3
end
if #events > 0 then
  redis.call('PUBLISH', ns .. ':events', '[' .. table.concat(events, ',') .. ']')
end
return stale
"""


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
    # When the ingest received the position (epoch ms, its socket read): with several
    # ingest processes, an older position received after this one is out of order; one
    # received before it was only handled later, by another process (tracking.ingest).
    received_ms: int | None = None

    def to_hash(self) -> dict[str, str]:
        return dict(zip(FIELDS, self.strings(), strict=True))

    def strings(self) -> list[str]:
        """The fields in order, as the hash keeps them ("" for None)."""
        return ["" if v is None else str(v) for v in (
            self.vehicle_id, self.device_id, self.route_id, self.trip_id, self.ts,
            self.lat_e6, self.lon_e6, self.speed_cms, self.bearing_deg, self.next_stop_id,
            self.next_stop_name, self.pattern_id, self.dist_m, self.start_date,
            self.trip_source, self.progress, self.received_ms)]

    def pack(self) -> str:
        """The record as one JSON array of strings (`{ns}:r:{vehicle}`)."""
        return jsonbytes.dumps(self.strings()).decode()

    @classmethod
    def unpack(cls, packed: str | bytes) -> VehicleRecord:
        """The record of `pack` (one packed before `received_ms` was kept has none)."""
        return cls.from_hash(dict(zip(FIELDS, orjson.loads(packed), strict=False)))

    def event(self) -> dict[str, Any]:
        """The record as the events channel carries it (its fields by name, but
        `received_ms`: the streams do not show it)."""
        return dict(zip(EVENT_FIELDS, (
            self.vehicle_id, self.device_id, self.route_id, self.trip_id, self.ts,
            self.lat_e6, self.lon_e6, self.speed_cms, self.bearing_deg, self.next_stop_id,
            self.next_stop_name, self.pattern_id, self.dist_m, self.start_date,
            self.trip_source, self.progress), strict=True))

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> VehicleRecord:
        def opt_int(key: str) -> int | None:
            return int(h[key]) if h.get(key) else None

        return cls(h["vehicle_id"], h["device_id"], h["route_id"], h.get("trip_id") or None,
                   int(h["ts"]), int(h["lat_e6"]), int(h["lon_e6"]), opt_int("speed_cms"),
                   opt_int("bearing_deg"), h.get("next_stop_id") or None,
                   h.get("next_stop_name") or None, h.get("pattern_id") or None,
                   opt_int("dist_m"), h.get("start_date") or None,
                   h.get("trip_source") or None, h.get("progress") or "",
                   opt_int("received_ms"))


FIELDS = tuple(f.name for f in fields(VehicleRecord))
EVENT_FIELDS = tuple(f for f in FIELDS if f != "received_ms")  # what `event` carries
SAVE_SCRIPT = SAVE_SCRIPT.replace("{FIELDS}",
                                  "{" + ", ".join(f"'{f}'" for f in FIELDS) + "}")


class TrackingStore:
    """Reads and writes of live state; a batch of positions costs two Redis round
    trips: one MGET of the vehicles' last records, one script that writes them."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = f"transit:{namespace}"
        self._save = client.register_script(SAVE_SCRIPT)

    def previous(self, vehicle_ids: Iterable[str]) -> dict[str, VehicleRecord]:
        """The vehicles' last records (for the position ingest, the feeds, the streams'
        snapshots): one MGET (a vehicle stored before its record was kept packed is read
        from its hash)."""
        ids = list(dict.fromkeys(vehicle_ids))
        if not ids:
            return {}
        out: dict[str, VehicleRecord] = {}
        missing = []
        for vid, packed in zip(ids, self.redis.mget([f"{self.ns}:r:{v}" for v in ids]),
                               strict=True):
            if packed is None:
                missing.append(vid)
            else:
                out[vid] = VehicleRecord.unpack(packed)
        if missing:
            out.update(self.last(missing))
        return out

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

    def save(self, records: list[VehicleRecord], heard: Mapping[str, int] | None = None,
             counts: Mapping[str, int] | None = None) -> int:
        """Store accepted positions (oldest first per vehicle): the trail gets each, the
        vehicle's hash and GEO entry its newest, unless a newer one is stored (by
        another ingest process); and, in the same round trip, when the devices `heard`
        were heard from and the batch's `counts` by outcome. Returns how many vehicles'
        positions were older than the stored one and not written."""
        if not records and not heard and not counts:
            return 0
        latest: dict[str, VehicleRecord] = {}
        trails: dict[str, list[str]] = {}
        for r in records:
            latest[r.vehicle_id] = r
            trails.setdefault(r.vehicle_id, []).append(f"{r.ts},{r.lat_e6},{r.lon_e6}")
        args: list[str | int | bytes] = [self.ns, TRAIL, len(heard or {}), len(counts or {})]
        for device_id, ms in (heard or {}).items():
            args += (device_id, ms)
        for outcome, n in (counts or {}).items():
            args += (outcome, n)
        dumps = jsonbytes.dumps
        for vid, r in latest.items():
            args += (r.pack(), ";".join(trails[vid]), dumps(r.event()))
        return int(self._save(args=args))

    def counts(self, family: str) -> dict[str, int]:
        """The counts by outcome every ingest process added (`{ns}:counts:{family}`)."""
        raw = self.redis.hgetall(f"{self.ns}:counts:{family}")
        return {_s(k): int(v) for k, v in raw.items()}

    def add_counts(self, family: str, counts: Mapping[str, int]) -> None:
        """Add to the shared counts of `family` (one round trip)."""
        if counts:
            pipe = self.redis.pipeline(transaction=False)
            for outcome, n in counts.items():
                pipe.hincrby(f"{self.ns}:counts:{family}", outcome, n)
            pipe.execute()

    def vehicles(self) -> list[VehicleRecord]:
        """Every vehicle's last record, by vehicle id: one MGET of the packed records
        (the hashes' HGETALL, one each, took most of a feed's time for a fleet)."""
        ids = [_s(v) for v in self.redis.zrange(f"{self.ns}:geo", 0, -1)]
        return sorted(self.previous(ids).values(), key=lambda r: r.vehicle_id)

    def trail(self, vehicle_id: str) -> list[tuple[int, int, int]]:
        out = []
        for item in self.redis.lrange(f"{self.ns}:trail:{vehicle_id}", 0, -1):
            ts, lat, lon = _s(item).split(",")
            out.append((int(ts), int(lat), int(lon)))
        return out

    def schedule_seen(self, gateway_id: str, process: str, stamp: str | None) -> None:
        """Say which imported feed's schedule `process` of `gateway_id` serves."""
        self.redis.set(f"{self.ns}:schedule:{gateway_id}:{process}", stamp or "",
                       ex=SCHEDULE_SEEN_TTL_S)

    def schedule_stamps(self, gateway_id: str) -> dict[str, str | None]:
        """Process -> the stamp of the schedule it serves, for the live processes of
        `gateway_id` (None: no feed)."""
        pattern = f"{self.ns}:schedule:{gateway_id}:*"
        keys = list(self.redis.scan_iter(match=pattern, count=1000))
        cut = len(pattern) - 1
        return {_s(k)[cut:]: (_s(v) or None) for k, v in
                zip(keys, self.redis.mget(keys) if keys else [], strict=True)
                if v is not None}

    def trails(self, vehicle_ids: Iterable[str]) -> dict[str, list[tuple[int, int, int]]]:
        """The vehicles' trails, (ts, lat_e6, lon_e6) newest first: one round trip."""
        ids = list(dict.fromkeys(vehicle_ids))
        pipe = self.redis.pipeline(transaction=False)
        for vid in ids:
            pipe.lrange(f"{self.ns}:trail:{vid}", 0, -1)
        out: dict[str, list[tuple[int, int, int]]] = {}
        for vid, items in zip(ids, pipe.execute() if ids else [], strict=True):
            entries = []
            for item in items:
                ts, lat, lon = _s(item).split(",")
                entries.append((int(ts), int(lat), int(lon)))
            out[vid] = entries
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
