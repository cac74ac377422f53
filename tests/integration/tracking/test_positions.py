"""Tracking on the real Transjakarta feed, from outside: `transit gtfs import`, positions
published over MQTT into a running `transit gateway` (real Mosquitto, Redis, PostgreSQL
and SQLite), read back through `/api/v1/vehicles`, its Server-Sent Events stream, the
GTFS-Realtime feed (parsed with gtfs-realtime-bindings), `/api/v1/validators` and
`/metrics` (issue 5, contract sections 2 and 3)."""

from __future__ import annotations

import csv
import http.client
import io
import json
import math
import queue
import re
import socket
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from geopy.distance import geodesic
from google.transit import gtfs_realtime_pb2
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from testbed.environment import REDIS_URL, transjakarta_feed
from testbed.gateway import transit
from tests.conftest import System
from tests.support.clients import MqttPeer
from tests.support.realtime_feeds import fresh_positions, fresh_positions_json
from tests.support.tj_gateway import wait_for_schedule
from transit.wire import Position

FEED_ROUTES = 155
FEED_STOPS = 5365
FEED_SHAPE_ROWS = 86_792          # rows of shapes.txt ("86,000 shape points" in the issue)
ROUTE_1_SHAPE = "shp_1_001"       # route 1, trip 1.001, Blok M -> Kota
ROUTE_1_TRIP = "1.001"
STEP_M = 100.0                    # a position every ~100 m ...
STEP_MS = 5_000                   # ... 5 s apart: 20 m/s, a bus on the busway
VEHICLE_FIELDS = {"vehicle_id", "route_id", "trip_id", "lat", "lon", "bearing", "speed_mps",
                  "ts", "age_s", "state"}
SYSTEM_VEHICLE = "SBY-0042"  # the vehicle of the `system` fixture's validator


# -- the feed, read straight from the zip (not through the code under test) -------------------

def feed_rows(name: str, path: Path | None = None) -> list[dict[str, str]]:
    with zipfile.ZipFile(path or transjakarta_feed()) as z:
        text = z.read(name).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def feed_shape(shape_id: str) -> list[tuple[float, float]]:
    rows = [r for r in feed_rows("shapes.txt") if r["shape_id"] == shape_id]
    rows.sort(key=lambda r: int(r["shape_pt_sequence"]))
    return [(float(r["shape_pt_lat"]), float(r["shape_pt_lon"])) for r in rows]


def feed_trip_stops(trip_id: str) -> list[dict[str, Any]]:
    stops = {r["stop_id"]: r for r in feed_rows("stops.txt")}
    times = sorted((r for r in feed_rows("stop_times.txt") if r["trip_id"] == trip_id),
                   key=lambda r: int(r["stop_sequence"]))
    seen, out = set(), []
    for r in times:
        if r["stop_sequence"] in seen:
            continue
        seen.add(r["stop_sequence"])
        s = stops[r["stop_id"]]
        out.append({"stop_id": s["stop_id"], "name": s["stop_name"],
                    "lat": float(s["stop_lat"]), "lon": float(s["stop_lon"])})
    return out


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(geodesic(a, b).meters)


def along(shape: list[tuple[float, float]], step_m: float) -> list[tuple[float, float]]:
    """Points every `step_m` metres along the polyline, starting at its first point."""
    out = [shape[0]]
    need = step_m
    for a, b in zip(shape, shape[1:], strict=False):
        seg = metres(a, b)
        walked = 0.0
        while seg - walked >= need:
            walked += need
            f = walked / seg
            out.append((a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f))
            need = step_m
        need -= seg - walked
    return out


def initial_bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lat2 = math.radians(a[0]), math.radians(b[0])
    dlon = math.radians(b[1] - a[1])
    x = math.sin(dlon) * math.cos(lat2)
    y = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon)
    return math.degrees(math.atan2(x, y)) % 360


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180) % 360 - 180)


def distance_along(shape: list[tuple[float, float]], p: tuple[float, float]) -> float:
    """How far along the polyline the point nearest to `p` lies (vertex resolution is
    enough: the feed's shape points are a few dozen metres apart)."""
    total, best, best_d = 0.0, 0.0, float("inf")
    for i, q in enumerate(shape):
        if i:
            total += metres(shape[i - 1], q)
        d = metres(p, q)
        if d < best_d:
            best, best_d = total, d
    return best


# -- talking to the system ------------------------------------------------------------------------

def now_ms() -> int:
    return int(time.time() * 1000)


def e6(x: float) -> int:
    return int(round(x * 1e6))


def pos(system: System, vehicle: str, lat: float, lon: float, ts: int, *,
        route: str = "1", secret: bytes | None = None, device: str | None = None,
        **extra: Any) -> bytes:
    return Position(device_id=device or system.device_id, vehicle_id=vehicle, route_id=route,
                    ts=ts, lat_e6=e6(lat), lon_e6=e6(lon), **extra
                    ).signed(secret or system.secret).encode()


def pos_topic(system: System, device: str | None = None) -> str:
    return f"{system.prefix}/dev/{device or system.device_id}/pos"


_BUSES: dict[tuple[str, str], bytes] = {}  # (topic prefix, vehicle) -> its validator's key


def bus(system: System, vehicle: str) -> tuple[str, bytes]:
    """The validator riding on `vehicle`: the system's own on its vehicle, else one
    registered on first use (a validator speaks for its own vehicle only)."""
    if vehicle == SYSTEM_VEHICLE:
        return system.device_id, system.secret
    if (system.prefix, vehicle) not in _BUSES:
        _BUSES[system.prefix, vehicle] = system.add_device(f"{vehicle}-V", vehicle)
    return f"{vehicle}-V", _BUSES[system.prefix, vehicle]


def sent(system: System, vehicle: str, lat: float, lon: float, ts: int, **extra: Any
         ) -> tuple[str, bytes]:
    """A position of `vehicle` as its own validator publishes it: (topic, payload)."""
    device, secret = bus(system, vehicle)
    return pos_topic(system, device), pos(system, vehicle, lat, lon, ts, device=device,
                                          secret=secret, **extra)


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r:.600}")


def vehicles(system: System, token: str) -> dict[str, dict[str, Any]]:
    status, body = system.http.get("/api/v1/vehicles", token=token)
    assert status == 200, body
    assert set(body) == {"vehicles"}, body
    return {v["vehicle_id"]: v for v in body["vehicles"]}


def vehicle_at(system: System, token: str, vehicle: str, ts: int) -> Callable[[], Any]:
    def probe() -> Any:
        v = vehicles(system, token).get(vehicle)
        return v if v is not None and v["ts"] == ts else None
    return probe


def positions_total(system: System) -> dict[str, float]:
    status, body = system.http.get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "transit_positions":
            for sample in family.samples:
                if sample.name == "transit_positions_total":
                    out[sample.labels["outcome"]] = sample.value
    return out


def gtfs_rt(system: System) -> gtfs_realtime_pb2.FeedMessage:
    return fresh_positions(system.http)


def import_feed(system: System) -> str:
    """Import the Transjakarta feed; back once the gateway has read its schedule."""
    result = system.transit("gtfs", "import", str(transjakarta_feed()))
    wait_for_schedule(system, transjakarta_feed())
    return str(result.stdout)


@pytest.fixture
def peer(system: System) -> Iterator[MqttPeer]:
    p = system.peer()
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _clean_redis(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tracking keys live under the test's own topic prefix; remove them afterwards."""
    if "base_env" not in request.fixturenames:
        yield
        return
    prefix = request.getfixturevalue("base_env")["TRANSIT_TOPIC_PREFIX"]
    yield
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"transit:{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


# -- GTFS import ----------------------------------------------------------------------------------

def network_counts(env: dict[str, str]) -> dict[str, int]:
    from ledger.adapters.db import make_engine
    from tracking.adapters.models import Agency, Route, ShapePoint, Stop, Trip, TripStop

    engine = make_engine(env["TRANSIT_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return {name: int(conn.scalar(select(func.count()).select_from(model)) or 0)
                    for name, model in (("agencies", Agency), ("routes", Route),
                                        ("stops", Stop), ("shape_points", ShapePoint),
                                        ("trips", Trip), ("trip_stops", TripStop))}
    finally:
        engine.dispose()


def route_row(env: dict[str, str], route_id: str) -> Any:
    from ledger.adapters.db import make_engine
    from tracking.adapters.models import Route

    engine = make_engine(env["TRANSIT_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(select(Route.route_id, Route.short_name, Route.long_name,
                                       Route.color).where(Route.route_id == route_id)).first()
    finally:
        engine.dispose()


def rewrite_feed(dest: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of the real feed with each member passed through `change` (None drops it)."""
    with zipfile.ZipFile(transjakarta_feed()) as src, \
            zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            data = change(name, src.read(name))
            if data is not None:
                out.writestr(name, data)
    return dest


def drop_column(csv_bytes: bytes, column: str) -> bytes:
    rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig"), newline="")))
    i = rows[0].index(column)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([r[:i] + r[i + 1:] for r in rows])
    return buf.getvalue().encode()


def spoil_stop_lat(csv_bytes: bytes) -> bytes:
    rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig"), newline="")))
    i = rows[0].index("stop_lat")
    rows[100][i] = "six south"
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


def test_gtfs_import_real_feed_is_idempotent_and_fast(base_env: dict[str, str]) -> None:
    transit("db", "upgrade", env=base_env)
    feed = str(transjakarta_feed())

    runs = []
    for _ in range(2):
        started = time.monotonic()
        result = transit("gtfs", "import", feed, env=base_env)
        runs.append((time.monotonic() - started, result.stdout, network_counts(base_env)))
    (first_s, first_out, first), (second_s, _second_out, second) = runs

    # route 1 (Blok M - Kota) with its colour
    row = route_row(base_env, "1")
    assert row is not None, "route 1 not imported"
    assert row.short_name == "1" and row.long_name == "Blok M - Kota", row
    assert row.color.upper() == "D02027", row

    # idempotent: a re-import replaces the network, same counts, nothing doubled
    assert first == second, f"re-import changed the counts: {first} -> {second}"
    assert first["routes"] == FEED_ROUTES, first
    assert first["stops"] == FEED_STOPS, first
    assert first["agencies"] >= 1 and first["trips"] > 0 and first["trip_stops"] > 0, first
    # in seconds: the whole command, process start included
    assert first_s < 20 and second_s < 20, (first_s, second_s)
    # ~86,000 shape points (the feed's shapes.txt has 86,792 rows)
    assert abs(first["shape_points"] - FEED_SHAPE_ROWS) <= 1_000, (
        f"{first['shape_points']} shape points stored, the feed has {FEED_SHAPE_ROWS} "
        f"(the command said: {first_out.strip()!r})")
    # what the command says it imported is what the database holds
    for label, key in (("routes", "routes"), ("stops", "stops"), ("points", "shape_points"),
                       ("trips", "trips"), ("trip stops", "trip_stops")):
        said = re.search(rf"(\d+) {label}\b", first_out.replace("(", " "))
        assert said, f"no '{label}' count in {first_out!r}"
        assert int(said.group(1)) == first[key], (
            f"`transit gtfs import` reported {said.group(1)} {label} but the database holds "
            f"{first[key]}: {first_out.strip()!r}, {first}")


def test_broken_feeds_give_one_clear_line_and_change_nothing(
        base_env: dict[str, str], tmp_path: Path) -> None:
    transit("db", "upgrade", env=base_env)
    transit("gtfs", "import", str(transjakarta_feed()), env=base_env)
    before = network_counts(base_env)
    row = route_row(base_env, "1")
    assert before["routes"] == FEED_ROUTES and row is not None, before

    not_a_zip = tmp_path / "not-a-zip.zip"
    not_a_zip.write_text("route_id,route_short_name\n1,1\n")
    broken = {
        "not a zip": (not_a_zip, ("zip",)),
        "no stops.txt": (rewrite_feed(tmp_path / "no-stops.zip",
                                      lambda n, d: None if n == "stops.txt" else d),
                         ("stops.txt", "missing")),
        "no stop_lon column": (rewrite_feed(tmp_path / "no-column.zip",
                                            lambda n, d: drop_column(d, "stop_lon")
                                            if n == "stops.txt" else d),
                               ("stops.txt", "stop_lon")),
        "stop_lat not a number": (rewrite_feed(tmp_path / "bad-lat.zip",
                                               lambda n, d: spoil_stop_lat(d)
                                               if n == "stops.txt" else d),
                                  ("stops.txt", "stop_lat", "six south")),
    }
    for what, (path, words) in broken.items():
        result = transit("gtfs", "import", str(path), env=base_env, check=False)
        err = result.stderr.strip()
        assert result.returncode != 0, f"{what}: accepted: {result.stdout!r} {err!r}"
        assert "Traceback" not in err, f"{what}: traceback instead of an error:\n{err}"
        lines = [line for line in err.splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1, f"{what}: not one line:\n{err}"
        for word in words:
            assert word.lower() in lines[0].lower(), f"{what}: {word!r} not in {lines[0]!r}"
        assert network_counts(base_env) == before, f"{what}: the network changed"
        assert route_row(base_env, "1") == row, f"{what}: route 1 changed"


# -- positions along route 1 ----------------------------------------------------------------------

class SseReader:
    """Reads `/api/v1/vehicles/stream` with a streaming HTTP client in a thread."""

    def __init__(self, base_url: str, token: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.conn.request("GET", "/api/v1/vehicles/stream",
                          headers={"Authorization": f"Bearer {token}",
                                   "Accept": "text/event-stream"})
        # Kept: a response read until the server closes drops the connection's socket
        # (`conn.sock` is None then), while the response still reads from it.
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event, data = "message", ""
        try:
            while True:
                raw = self.resp.readline()
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data:
                        self.events.put((event, json.loads(data)))
                    event, data = "message", ""
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
        except Exception:  # closed by close() below, or the server went away
            return

    def next(self, kind: str, match: Callable[[Any], bool], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                event, data = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(event)
            if event == kind and match(data):
                return data
        raise AssertionError(f"no matching {kind!r} event within {timeout}s; saw {seen}")

    def close(self) -> None:
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)  # the server sees the client leave
        except OSError:
            pass
        self.resp.close()
        self.conn.close()


def test_positions_along_route_1_in_vehicles_gtfs_rt_and_stream(
        system: System, peer: MqttPeer) -> None:
    import_feed(system)
    ops = system.token("ops")
    shape = feed_shape(ROUTE_1_SHAPE)
    assert len(shape) > 100, "shp_1_001 not in the feed"
    path = along(shape, STEP_M)
    assert len(path) > 120, len(path)  # ~13.6 km from Blok M to Kota
    trip_stops = feed_trip_stops(ROUTE_1_TRIP)
    route_1_stop_ids = {s["stop_id"] for s in trip_stops}

    # Bus A: no speed or bearing sent (computed by the gateway), no trip id.
    # Bus B: trip 1.001, sends its own speed and bearing.
    n = 25
    t0 = now_ms() - (n + 1) * STEP_MS
    a_points = path[:n]
    b_points = path[40:40 + n]
    items = []
    for i in range(n):
        ts = t0 + i * STEP_MS
        items.append(sent(system, "TJ-0001", *a_points[i], ts))
        items.append(sent(system, "TJ-0002", *b_points[i], ts, trip_id=ROUTE_1_TRIP,
                          speed_cms=1250, bearing_deg=17))
    sse = SseReader(system.gateway.base_url, ops)
    try:
        snapshot = sse.next("snapshot", lambda d: True, timeout=10)
        assert snapshot == [], snapshot
        peer.publish_many(items, qos=1)
        last_ts = t0 + (n - 1) * STEP_MS
        wait_until("bus A's last position", vehicle_at(system, ops, "TJ-0001", last_ts))
        wait_until("bus B's last position", vehicle_at(system, ops, "TJ-0002", last_ts))
        # 100 m in 5 s, computed by the gateway: 20 m/s, heading along the shape
        a = vehicles(system, ops)["TJ-0001"]
        step = metres(a_points[-2], a_points[-1]) / (STEP_MS / 1000)
        assert a["speed_mps"] == pytest.approx(step, abs=0.05), (a, step)
        assert 19 < a["speed_mps"] < 21, a
        heading = initial_bearing(a_points[-2], a_points[-1])
        assert a["bearing"] is not None and angle_diff(a["bearing"], heading) <= 2, (a, heading)

        # the SSE stream delivers a `position` event after a publish
        ts = now_ms() - 1000
        nxt = path[n]
        peer.publish(*sent(system, "TJ-0001", *nxt, ts), qos=1)
        event = sse.next("position", lambda d: d.get("vehicle_id") == "TJ-0001"
                         and d.get("ts") == ts, timeout=10)
        assert VEHICLE_FIELDS <= set(event), event
        assert event["route_id"] == "1" and event["state"] == "live", event
        assert abs(event["lat"] - nxt[0]) < 2e-6 and abs(event["lon"] - nxt[1]) < 2e-6, event
    finally:
        sse.close()

    wait_until("bus A's newest position", vehicle_at(system, ops, "TJ-0001", ts))
    got = vehicles(system, ops)
    assert set(got) == {"TJ-0001", "TJ-0002"}, got
    for v in got.values():
        assert VEHICLE_FIELDS <= set(v), v
        assert v["route_id"] == "1" and v["state"] == "live", v
        assert isinstance(v["ts"], int) and 0 <= v["age_s"] < 60, v
        assert isinstance(v["lat"], float) and isinstance(v["lon"], float), v

    a = got["TJ-0001"]
    assert abs(a["lat"] - nxt[0]) < 2e-6 and abs(a["lon"] - nxt[1]) < 2e-6, a
    # It named no trip: trip assignment gave it one of route 1's (tracking.matching).
    assert a["trip_id"] is not None and a["trip_source"] == "matched", a
    # speed and bearing computed from the previous position when the device sent none
    prev, prev_ts = a_points[-1], last_ts
    expected_speed = metres(prev, nxt) / ((ts - prev_ts) / 1000)
    assert a["speed_mps"] == pytest.approx(expected_speed, abs=0.05), (a, expected_speed)
    assert a["bearing"] is not None, a
    assert angle_diff(a["bearing"], initial_bearing(prev, nxt)) <= 2, (
        a, initial_bearing(prev, nxt))

    b = got["TJ-0002"]
    assert b["trip_id"] == ROUTE_1_TRIP, b
    assert b["speed_mps"] == pytest.approx(12.5), b
    assert b["bearing"] == 17, b
    assert abs(b["lat"] - b_points[-1][0]) < 2e-6, b

    # next stop on route 1, ahead of the bus along trip 1.001
    for v, here in ((a, nxt), (b, b_points[-1])):
        assert v.get("next_stop_id") in route_1_stop_ids, (
            f"{v['vehicle_id']}: next stop {v.get('next_stop_id')!r} "
            f"({v.get('next_stop_name')!r}) is not a stop of route 1 trip {ROUTE_1_TRIP}")
        bus_at = distance_along(shape, here)
        stop_at = {s["stop_id"]: distance_along(shape, (s["lat"], s["lon"]))
                   for s in trip_stops}
        ahead = sorted((d, sid) for sid, d in stop_at.items() if d >= bus_at - 30)
        assert v["next_stop_id"] in [sid for _, sid in ahead[:2]], (
            f"{v['vehicle_id']} at {bus_at:.0f} m along route 1: next stop "
            f"{v['next_stop_id']} at {stop_at[v['next_stop_id']]:.0f} m; the stops ahead "
            f"are {ahead[:3]}")

    # GTFS-Realtime, protobuf
    feed = gtfs_rt(system)
    assert feed.header.gtfs_realtime_version == "2.0"
    assert feed.header.incrementality == gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    header_ts = feed.header.timestamp
    assert abs(header_ts - time.time()) < 60, f"header timestamp not POSIX seconds: {header_ts}"
    ids = [e.id for e in feed.entity]
    assert len(ids) == len(set(ids)) == 2, ids
    by_vehicle = {}
    for entity in feed.entity:
        assert entity.HasField("vehicle"), entity
        vp = entity.vehicle
        assert vp.vehicle.id, entity
        by_vehicle[vp.vehicle.id] = vp
        assert vp.trip.route_id == "1", entity
        assert 0 < vp.timestamp <= header_ts, (vp.timestamp, header_ts)
        assert abs(vp.timestamp - time.time()) < 600, vp.timestamp
        assert vp.position.HasField("bearing") and 0 <= vp.position.bearing < 360, entity
        assert vp.position.HasField("speed"), entity
    assert set(by_vehicle) == {"TJ-0001", "TJ-0002"}, by_vehicle.keys()
    assert len({vp.vehicle.id for vp in by_vehicle.values()}) == 2
    fa, fb = by_vehicle["TJ-0001"], by_vehicle["TJ-0002"]
    assert fa.position.latitude == pytest.approx(nxt[0], abs=2e-6)
    assert fa.position.longitude == pytest.approx(nxt[1], abs=2e-6)
    assert fa.position.speed == pytest.approx(a["speed_mps"], abs=0.01)  # m/s
    assert fa.timestamp == ts // 1000
    assert fb.trip.trip_id == ROUTE_1_TRIP
    assert fb.position.speed == pytest.approx(12.5)
    assert fb.position.bearing == pytest.approx(17)
    # stable ids: the same entity ids on the next fetch
    assert [e.id for e in gtfs_rt(system).entity] == ids

    # GTFS-Realtime, JSON for people
    doc = fresh_positions_json(system.http)
    assert doc["header"]["gtfsRealtimeVersion"] == "2.0", doc["header"]
    assert doc["header"]["incrementality"] in ("FULL_DATASET", 0), doc["header"]
    assert abs(int(doc["header"]["timestamp"]) - time.time()) < 60, doc["header"]
    json_ids = sorted(e["id"] for e in doc["entity"])
    assert json_ids == sorted(ids), doc
    for e in doc["entity"]:
        assert e["vehicle"]["trip"]["routeId"] == "1", e
        assert 0 <= e["vehicle"]["position"]["bearing"] < 360, e


# -- refused positions ----------------------------------------------------------------------------

def test_bad_positions_are_refused_and_counted(system: System, peer: MqttPeer) -> None:
    ops = system.token("ops")
    path = along(feed_shape(ROUTE_1_SHAPE), STEP_M)
    vid = SYSTEM_VEHICLE
    here = path[10]
    t_last = now_ms() - 60_000
    peer.publish(pos_topic(system), pos(system, vid, *here, t_last))
    wait_until("the first position", vehicle_at(system, ops, vid, t_last))
    # The batch is counted once it is stored: the count may follow the vehicle by a moment.
    wait_until("the first position counted",
               lambda: positions_total(system).get("accepted", 0) >= 1)
    assert positions_total(system).get("accepted") == 1, positions_total(system)

    far = (here[0] + 0.09, here[1])  # 10 km north
    assert metres(here, far) > 9_000
    ghost_secret = bytes(range(32))
    other_device, other_secret = bus(system, "TJ-0101")
    bad = {
        "bad_signature": (pos_topic(system),
                          pos(system, vid, *path[11], t_last + 5000, secret=b"\x01" * 32)),
        "unknown_device": (pos_topic(system, "GHOST-0001-A"),
                           pos(system, vid, *path[11], t_last + 5000, device="GHOST-0001-A",
                               secret=ghost_secret)),
        "no_fix": (pos_topic(system), pos(system, vid, 0.0, 0.0, t_last + 5000)),
        "future": (pos_topic(system), pos(system, vid, *path[11], now_ms() + 120_000)),
        # outside the window every tap is held to (contract section 10)
        "ts_out_of_range": (pos_topic(system), pos(system, vid, *path[11], 0)),
        # another bus's validator, correctly signed, naming this vehicle
        "wrong_vehicle": (pos_topic(system, other_device),
                          pos(system, vid, *path[11], t_last + 5000, device=other_device,
                              secret=other_secret)),
        "out_of_order": (pos_topic(system), pos(system, vid, *path[9], t_last - 5000)),
        "impossible_jump": (pos_topic(system), pos(system, vid, *far, t_last + 5000)),
        "malformed": (pos_topic(system), b'{"v": 1, "device_id": "SBY-0042-A", "lat_e6": '),
    }
    for outcome, (topic, payload) in bad.items():
        peer.publish(topic, payload, qos=1)
        def counted(o: str = outcome) -> bool:
            return positions_total(system).get(o, 0) >= 1

        wait_until(f"{outcome} counted in /metrics", counted)
        v = vehicles(system, ops)[vid]
        assert v["ts"] == t_last and v["lat"] == pytest.approx(here[0], abs=2e-6), (
            f"{outcome}: the refused position replaced the vehicle's: {v}")
    counts = positions_total(system)
    for outcome in bad:
        assert counts.get(outcome) == 1, (outcome, counts)
    assert counts.get("accepted") == 1, counts
    assert set(vehicles(system, ops)) == {vid}, "a refused position created a vehicle"

    # and the vehicle's next plausible position is taken
    t_next = t_last + 5000
    peer.publish(pos_topic(system), pos(system, vid, *path[11], t_next))
    wait_until("the next good position", vehicle_at(system, ops, vid, t_next))
    wait_until("the next good position counted",
               lambda: positions_total(system).get("accepted", 0) >= 2)
    assert positions_total(system).get("accepted") == 2, positions_total(system)


# -- vehicle state ---------------------------------------------------------------------------------

def test_vehicle_that_stops_reporting_turns_stale_then_offline(
        system: System, peer: MqttPeer) -> None:
    ops = system.token("ops")
    path = along(feed_shape(ROUTE_1_SHAPE), STEP_M)
    now = now_ms()
    positions = {"TJ-LIVE": (path[5], now - 5_000),
                 "TJ-STALE": (path[20], now - 100_000),
                 "TJ-OFF": (path[30], now - 700_000)}
    peer.publish_many([sent(system, vid, *p, ts) for vid, (p, ts) in positions.items()])
    got = wait_until("three vehicles", lambda: (lambda v: v if len(v) == 3 else None)(
        vehicles(system, ops)))
    expected = {"TJ-LIVE": ("live", 5), "TJ-STALE": ("stale", 100), "TJ-OFF": ("offline", 700)}
    for vid, (state, age) in expected.items():
        v = got[vid]
        assert v["state"] == state, v
        assert age <= v["age_s"] < age + 30, v
        assert v["ts"] == positions[vid][1], v

    # a stale bus is not repainted as live by time passing, and a fresher position revives it
    fresh = now_ms() - 1000
    peer.publish(*sent(system, "TJ-STALE", *path[21], fresh))
    v = wait_until("TJ-STALE's fresh position", vehicle_at(system, ops, "TJ-STALE", fresh))
    assert v["state"] == "live", v


# -- validators ------------------------------------------------------------------------------------

def test_validators_show_online_state_and_spool_depth_from_retained_status(
        system: System, peer: MqttPeer) -> None:
    ops = system.token("ops")
    quiet = "SBY-0043-A"
    system.transit("devices", "add", quiet, "--vehicle", "SBY-0043")

    status_topic = f"{system.prefix}/dev/{system.device_id}/status"
    peer.publish(status_topic, json.dumps({"online": True, "spool_depth": 3,
                                           "software": "agent 0.1"}).encode(),
                 qos=1, retain=True)

    def listed() -> Any:
        status, body = system.http.get("/api/v1/validators", token=ops)
        assert status == 200, body
        rows = {d["device_id"]: d for d in body["validators"]}
        return rows if rows.get(system.device_id, {}).get("spool_depth") == 3 else None

    rows = wait_until("the status in /api/v1/validators", listed)
    assert set(rows) == {system.device_id, quiet}, rows
    main = rows[system.device_id]
    assert main["online"] is True, main
    assert main["spool_depth"] == 3, main
    assert main.get("vehicle_id") == "SBY-0042", main
    assert main.get("last_seen_s") is not None and main["last_seen_s"] < 30, main
    other = rows[quiet]
    assert other["online"] is False, other          # registered, never heard from
    assert other["spool_depth"] is None, other

    # A retained status is what a gateway that starts later reads: publish the quiet
    # device's going-offline status (its last will) while no gateway runs, then start one.
    system.gateway.stop()
    peer.publish(f"{system.prefix}/dev/{quiet}/status",
                 json.dumps({"online": False, "spool_depth": 7}).encode(), qos=1, retain=True)
    system.gateway.start()
    status_rows = wait_until(
        "the retained status of the quiet device",
        lambda: (lambda r: r if r[quiet]["spool_depth"] == 7 else None)(
            {d["device_id"]: d for d in system.http.get(
                "/api/v1/validators", token=ops)[1]["validators"]}))
    assert status_rows[quiet]["online"] is False, status_rows[quiet]
    assert status_rows[system.device_id]["online"] is True, status_rows

    # clear the retained messages (the broker is shared by the session)
    for device in (system.device_id, quiet):
        peer.publish(f"{system.prefix}/dev/{device}/status", b"", qos=1, retain=True)


# -- roles -----------------------------------------------------------------------------------------

def stream_status(system: System, token: str | None) -> int:
    host, port = system.gateway.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/api/v1/vehicles/stream",
                     headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        if resp.status == 200:
            assert resp.getheader("Content-Type", "").startswith("text/event-stream")
        else:
            body = json.loads(resp.read())
            assert set(body) == {"error"} and body["error"]["code"], body
        return resp.status
    finally:
        conn.close()


def test_streams_share_one_subscription_and_each_gets_every_position(
        system: System, peer: MqttPeer) -> None:
    """However many streams are open, the gateway reads the position events once (one
    Redis subscription) and hands every stream each event, in order."""
    ops = system.token("ops")
    client = redis.Redis.from_url(REDIS_URL)
    channel = f"transit:{system.prefix}:events"

    def subscribers() -> int:
        return int(dict(client.pubsub_numsub(channel))[channel.encode()])

    path = along(feed_shape(ROUTE_1_SHAPE), STEP_M)
    t0 = now_ms() - 30 * STEP_MS
    sent_ts = [t0 + i * STEP_MS for i in range(8)]
    items = [sent(system, "TJ-0007", *path[i], ts) for i, ts in enumerate(sent_ts)]
    readers = [SseReader(system.gateway.base_url, ops) for _ in range(4)]
    try:
        for reader in readers:
            reader.next("snapshot", lambda d: True, timeout=10)
        assert subscribers() == 1
        # One at a time, each its own event (a batch sends each bus's newest only).
        for item, ts in zip(items[:-1], sent_ts, strict=False):
            peer.publish(*item, qos=1)
            for reader in readers:
                got = reader.next("position", lambda d: d.get("vehicle_id") == "TJ-0007",
                                  timeout=10)
                assert got["ts"] == ts, (got, ts)
        assert subscribers() == 1
        for reader in readers[1:]:
            reader.close()
        peer.publish(*items[-1], qos=1)
        readers[0].next("position", lambda d: d.get("ts") == sent_ts[-1], timeout=10)
    finally:
        for reader in readers:
            reader.close()
    # No stream left: the subscription ends with the last (the hub checks every second).
    wait_until("no subscription once every stream is closed", lambda: subscribers() == 0,
               timeout=30)
    client.close()


def test_roles_ops_may_see_the_fleet_finance_may_not_gtfs_rt_is_public(system: System) -> None:
    ops, finance, admin = (system.token(r) for r in ("ops", "finance", "admin"))
    for path in ("/api/v1/vehicles", "/api/v1/validators"):
        assert system.http.get(path, token=ops)[0] == 200, path
        assert system.http.get(path, token=admin)[0] == 200, path
        status, body = system.http.get(path, token=finance)
        assert status == 403 and body["error"]["code"], (path, status, body)
        status, body = system.http.get(path)
        assert status == 401 and body["error"]["code"], (path, status, body)
        assert system.http.get(path, token="not-a-token")[0] == 401, path
    # ops reading the stream (200, text/event-stream, events) is shown by the route 1 test;
    # an open stream holds the gateway's shutdown for ~10 s, so it is not opened again here
    assert stream_status(system, finance) == 403
    assert stream_status(system, None) == 401
    for path in ("/gtfs-rt/vehicle-positions", "/gtfs-rt/vehicle-positions?format=json"):
        status, _ = system.http.get(path)
        assert status == 200, path
    feed = gtfs_rt(system)
    assert feed.header.gtfs_realtime_version == "2.0" and len(feed.entity) == 0
