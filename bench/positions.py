"""Position ingest through MQTT into Redis, beside Redis's own rate for the same commands.

    .venv/bin/python -m bench.positions [--positions 50000] [--vehicles 2000]
                                        [--publishers 4] [--qos 0] [--db sqlite]
                                        [--track on|off|compare] [--json FILE]

Measures, in one run on one machine:
  1. raw Mosquitto publish -> subscribe for the same payloads, publishers and QoS;
  2. redis-benchmark: `-t hset,lpush -P 50`, then the very commands the gateway sends for
     one position (HSET of the 11-field vehicle hash, GEOADD, LPUSH + LTRIM of the trail,
     and the HGETALL that reads the vehicle's last position), pipelined 50 deep, over 50
     connections and over one (the gateway writes through one connection);
  3. end to end: signed positions of `--vehicles` buses driving along the real Transjakarta
     route shapes (100 m every 5 s) from publisher processes -> a private Mosquitto ->
     `transit gateway` (verify, plausibility, speed/bearing, next stop, Redis) -> Redis,
     counted in `transit_positions_total` on /metrics and checked in /api/v1/vehicles;
     with the durable track (`--track on`, as deployed: every accepted position also
     written to `vehicle_positions`, counted in `transit_track_positions_total`), or
     without it (`off`: TRANSIT_TRACK_DAYS=0), or both one after the other (`compare`);
  4. with `--track compare`: the same rows, read back from the table, written again by
     the track's own table code alone (`COPY ... FROM STDIN` in batches of 10,000 on
     PostgreSQL), and the disk the track takes per bus-day (pg_total_relation_size of
     the day's partition, for a bus reporting every 5 s).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import run_processes
from bench.results import write_figures
from testbed.broker import Broker
from testbed.environment import REDIS_URL, transjakarta_feed
from testbed.gateway import Gateway, transit
from testbed.postgres import create_pg_database, drop_pg_database
from tracking.track import BATCH_ROWS
from transit.wire import Position

STEP_M = 100.0
STEP_MS = 5_000
EARTH_M = 6_371_008.8
REDIS_BENCH_DB = 9  # redis-benchmark's own keys go to a database of their own
BUS_DAY = 86_400_000 // STEP_MS  # the positions of a bus reporting every 5 s all day
GOAL_POSITIONS_S = 10_000  # the throughput issue: end to end, track and trips included ...
GOAL_RATIO = 0.30  # ... and at least this share of raw MQTT measured in the same run


# -- the network the buses drive along ------------------------------------------------------------

def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance: ample for 100 m steps, and fast enough for 50,000."""
    lat = math.radians((a[0] + b[0]) / 2)
    dx = math.radians(b[1] - a[1]) * math.cos(lat)
    dy = math.radians(b[0] - a[0])
    return EARTH_M * math.hypot(dx, dy)


def _resample(shape: list[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    out, need = [shape[0]], step
    for a, b in zip(shape, shape[1:], strict=False):
        seg, walked = _metres(a, b), 0.0
        while seg - walked >= need:
            walked += need
            f = walked / seg
            out.append((a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f))
            need = step
        need -= seg - walked
    return out


@dataclass
class Drive:
    route_id: str
    trip_id: str
    path: list[tuple[float, float]]


def drives(feed: Path, min_points: int) -> list[Drive]:
    """Trips of the feed with a shape long enough, as 100 m paths (unique trip and shape
    ids only: the feed reuses some, e.g. trip `a-b` / `shp_a-b`, across many routes)."""
    with zipfile.ZipFile(feed) as z:
        def rows(name: str) -> list[dict[str, str]]:
            return list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8-sig"),
                                                   newline="")))
        trips = rows("trips.txt")
        shapes: dict[str, list[tuple[int, float, float]]] = {}
        for r in rows("shapes.txt"):
            shapes.setdefault(r["shape_id"], []).append(
                (int(r["shape_pt_sequence"]), float(r["shape_pt_lat"]),
                 float(r["shape_pt_lon"])))
    trip_count: dict[str, int] = {}
    shape_count: dict[str, int] = {}
    for t in trips:
        trip_count[t["trip_id"]] = trip_count.get(t["trip_id"], 0) + 1
        shape_count[t["shape_id"]] = shape_count.get(t["shape_id"], 0) + 1
    out = []
    for t in trips:
        if trip_count[t["trip_id"]] > 1 or shape_count.get(t["shape_id"], 0) > 1:
            continue
        pts = sorted(shapes.get(t["shape_id"], []))
        if len(pts) < 2:
            continue
        path = _resample([(lat, lon) for _, lat, lon in pts], STEP_M)
        if len(path) >= min_points:
            out.append(Drive(t["route_id"], t["trip_id"], path))
    return out


# -- payloads -------------------------------------------------------------------------------------

def make_payloads(prefix: str, devices: list[tuple[str, str, bytes]], routes: list[Drive],
                  per_vehicle: int, publishers: int) -> tuple[list[list[tuple[str, bytes]]],
                                                              dict[str, int]]:
    """Per publisher, its vehicles' positions in time order; and each vehicle's last ts.

    A vehicle belongs to one publisher, so its positions reach the gateway in order.
    Timestamps end 5 s before now: none is in the future, none is stale."""
    rnd = random.Random(5)
    t_end = int(time.time() * 1000) - 5_000
    t0 = t_end - (per_vehicle - 1) * STEP_MS
    parts: list[list[tuple[str, bytes]]] = [[] for _ in range(publishers)]
    last: dict[str, int] = {}
    plans = []
    for i, (device_id, vehicle_id, secret) in enumerate(devices):
        drive = routes[i % len(routes)]
        start = rnd.randrange(0, len(drive.path) - per_vehicle + 1)
        plans.append((i % publishers, device_id, vehicle_id, secret, drive, start))
    for k in range(per_vehicle):
        ts = t0 + k * STEP_MS
        for part, device_id, vehicle_id, secret, drive, start in plans:
            lat, lon = drive.path[start + k]
            pos = Position(device_id=device_id, vehicle_id=vehicle_id, route_id=drive.route_id,
                           trip_id=drive.trip_id, ts=ts, lat_e6=round(lat * 1e6),
                           lon_e6=round(lon * 1e6)).signed(secret)
            parts[part].append((f"{prefix}/dev/{device_id}/pos", pos.encode()))
            last[vehicle_id] = ts
    return parts, last


def _client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=60)
    return c


def publish_all(port: int, items: list[tuple[str, bytes]], qos: int) -> None:
    c = _client(port, "pospub")
    c.loop_start()
    infos = [c.publish(t, p, qos=qos) for t, p in items]
    for info in infos:
        info.wait_for_publish(timeout=600)
    c.disconnect()
    c.loop_stop()


# -- 1. raw MQTT ----------------------------------------------------------------------------------

def raw_mqtt_rate(port: int, parts: list[list[tuple[str, bytes]]], qos: int) -> tuple[float, int]:
    total = sum(len(p) for p in parts)
    got = [0]
    last = [0.0]
    done = threading.Event()
    ready = threading.Event()
    sub = _client(port, "rawsub")

    def on_message(*_a: object) -> None:
        got[0] += 1
        last[0] = time.perf_counter()
        if got[0] >= total:
            done.set()

    sub.on_message = on_message
    sub.on_subscribe = lambda *a: ready.set()
    sub.subscribe("benchraw/+/pos", qos=qos)
    sub.loop_start()
    ready.wait(10)
    raw = [[(re.sub(r"^.*/dev/([^/]+)/pos$", r"benchraw/\1/pos", t), p) for t, p in part]
           for part in parts]
    t0 = time.perf_counter()
    run_processes(publish_all, [(port, part, qos) for part in raw])
    done.wait(30)
    sub.disconnect()
    sub.loop_stop()
    return got[0] / (last[0] - t0), got[0]


# -- 2. redis-benchmark ---------------------------------------------------------------------------

def _redis_host_port() -> tuple[str, int]:
    m = re.match(r"redis://([^:/]+)(?::(\d+))?", REDIS_URL)
    return (m.group(1), int(m.group(2) or 6379)) if m else ("127.0.0.1", 6379)


def redis_benchmark(n: int, vehicles: int) -> dict[str, float]:
    """requests/s of each command, from redis-benchmark's CSV output."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark is not installed (apt-get install redis-tools)")
    host, port = _redis_host_port()
    base = [exe, "-h", host, "-p", str(port), "--dbnum", str(REDIS_BENCH_DB), "--csv",
            "-n", str(n), "-P", "50"]
    hash_fields = []
    for name, value in (("vehicle_id", "BUS-0001"), ("device_id", "BUS-0001-A"),
                        ("route_id", "1"), ("trip_id", "1.001"), ("ts", "1764313202123"),
                        ("lat_e6", "-6224186"), ("lon_e6", "106805794"), ("speed_cms", "2000"),
                        ("bearing_deg", "17"), ("next_stop_id", "1-5 Polda Metro Jaya"),
                        ("next_stop_name", "Polda Metro Jaya")):
        hash_fields += [name, value]
    commands = {
        "HSET vehicle hash (11 fields)": ["HSET", "posbench:v:__rand_int__", *hash_fields],
        "GEOADD": ["GEOADD", "posbench:geo", "106.805794", "-6.224186", "__rand_int__"],
        "LPUSH trail": ["LPUSH", "posbench:trail:__rand_int__", "1764313202123,-6224186,106805794"],
        "LTRIM trail": ["LTRIM", "posbench:trail:__rand_int__", "0", "49"],
        "HGETALL vehicle hash": ["HGETALL", "posbench:v:__rand_int__"],
    }
    out: dict[str, float] = {}

    def run(args: list[str]) -> dict[str, float]:
        res = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
        rates = {}
        for row in csv.reader(io.StringIO(res.stdout)):
            if len(row) >= 2 and row[0] != "test":
                rates[row[0]] = float(row[1])
        return rates

    for label, rate in run([*base, "-t", "hset,lpush"]).items():
        out[f"-t {label.lower()} (50 conns)"] = rate
    for clients in (50, 1):
        for label, cmd in commands.items():
            rates = run([*base, "-c", str(clients), "-r", str(vehicles), *cmd])
            out[f"{label} ({clients} conn{'s' if clients > 1 else ''})"] = next(
                iter(rates.values()))
    import redis

    r = redis.Redis(host=host, port=port, db=REDIS_BENCH_DB)
    keys = list(r.scan_iter(match="posbench:*", count=5000)) + ["myhash", "mylist"]
    for i in range(0, len(keys), 5000):
        r.delete(*keys[i:i + 5000])
    r.close()
    return out


def per_position(rates: dict[str, float], conns: str) -> float:
    """Positions/s if Redis did nothing but one position's commands, back to back."""
    names = ("HSET vehicle hash (11 fields)", "GEOADD", "LPUSH trail", "LTRIM trail",
             "HGETALL vehicle hash")
    return 1 / sum(1 / rates[f"{n} ({conns})"] for n in names)


# -- 3. end to end --------------------------------------------------------------------------------

def metrics_positions(base_url: str) -> dict[str, float]:
    return metric_total(base_url, "transit_positions_total")


def metric_total(base_url: str, family: str) -> dict[str, float]:
    """The samples of the counter `family` on /metrics, by outcome."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        rf'^{family}\{{outcome="([^"]+)"\}} ([0-9.e+]+)$', text, re.M)}


def api_vehicles(base_url: str, token: str) -> list[dict[str, object]]:
    req = urllib.request.Request(f"{base_url}/api/v1/vehicles",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return list(json.loads(resp.read())["vehicles"])


@dataclass
class EndToEnd:
    """One end-to-end run's figures."""

    ingested: float
    accepted: float
    seconds: float  # from the first publish to the last position counted
    publish_s: float
    counts: dict[str, float]
    vehicles: int
    current: int  # vehicles at their last position
    states: list[str]
    track_written: float = 0.0
    track_dropped: float = 0.0
    track_seconds: float = float("inf")  # from the first publish to the last written

    @property
    def rate(self) -> float:
        return self.ingested / self.seconds

    @property
    def track_rate(self) -> float:
        return self.track_written / self.track_seconds


def end_to_end(env: dict[str, str], workdir: Path, broker_port: int,
               parts: list[list[tuple[str, bytes]]], last: dict[str, int], total: int,
               qos: int, with_track: bool) -> EndToEnd:
    """Publish every position into a gateway of its own and count what it ingests (and,
    with the track, what it writes to `vehicle_positions`)."""
    env = dict(env, TRANSIT_TRACK_DAYS="30" if with_track else "0")
    log = workdir / f"gateway-track-{'on' if with_track else 'off'}.log"
    gateway = Gateway(env, log).start()
    try:
        token = transit("tokens", "create", "--role", "ops", env=env).stdout.strip()
        t0 = time.perf_counter()
        pubs = threading.Thread(target=run_processes, args=(
            publish_all, [(broker_port, part, qos) for part in parts]))
        pubs.start()
        seen, t_last, t_pub = 0.0, t0, None
        counts: dict[str, float] = {}
        while True:
            time.sleep(0.1)
            if t_pub is None and not pubs.is_alive():
                t_pub = time.perf_counter()
            counts = metrics_positions(gateway.base_url)
            n = sum(counts.values())
            if n > seen:
                seen, t_last = n, time.perf_counter()
            if n >= total or time.perf_counter() - t_last > 15:
                break
        pubs.join()
        run = EndToEnd(seen, counts.get("accepted", 0), t_last - t0, (t_pub or t_last) - t0,
                       counts, 0, 0, [])
        if with_track:
            t_written = time.perf_counter()
            while True:
                track = metric_total(gateway.base_url, "transit_track_positions_total")
                done = track.get("written", 0) + track.get("dropped", 0)
                if done > run.track_written + run.track_dropped:
                    t_written = time.perf_counter()
                run.track_written, run.track_dropped = track.get("written", 0), track.get(
                    "dropped", 0)
                if done >= run.accepted or time.perf_counter() - t_written > 15:
                    break
                time.sleep(0.05)
            run.track_seconds = t_written - t0
        vehicles = api_vehicles(gateway.base_url, token)
        run.vehicles = len(vehicles)
        run.current = sum(1 for v in vehicles if v["ts"] == last.get(str(v["vehicle_id"])))
        run.states = sorted({str(v["state"]) for v in vehicles})
        return run
    finally:
        gateway.stop()


def copy_alone(db_url: str) -> tuple[float, int, float]:
    """The track's disk (bytes of its partitions, indexes included), then the same rows
    written again by `SqlTrack` alone into the emptied table: (bytes, rows, seconds)."""
    from sqlalchemy import select

    from ledger.adapters.db import make_engine, session_factory
    from tracking.adapters.models import vehicle_positions
    from tracking.adapters.track_sql import SqlTrack
    from tracking.store import VehicleRecord

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(vehicle_positions)).all()
            disk = float(conn.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                "WHERE inhparent = 'vehicle_positions'::regclass").scalar() or 0)
            conn.exec_driver_sql("TRUNCATE vehicle_positions")
            conn.commit()
        records = [VehicleRecord(r.vehicle_id, r.device_id, r.route_id, r.trip_id, r.ts,
                                 r.lat_e6, r.lon_e6, r.speed_cms, r.bearing_deg, None, None)
                   for r in rows]
        table = SqlTrack(session_factory(engine))
        t0 = time.perf_counter()
        for i in range(0, len(records), BATCH_ROWS):
            table.write(records[i:i + BATCH_ROWS])
        return disk, len(records), time.perf_counter() - t0
    finally:
        engine.dispose()


def empty_track(db_url: str) -> None:
    """Remove every position from `vehicle_positions` (its partitions stay, emptied to
    the last page: the disk figure counts no dead rows)."""
    from ledger.adapters.db import make_engine

    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE vehicle_positions" if engine.dialect.name ==
                                 "postgresql" else "DELETE FROM vehicle_positions")
    finally:
        engine.dispose()


def clear_live_state(prefix: str) -> None:
    """Remove the benchmark's vehicles from Redis."""
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"transit:{prefix}:*", count=5000))
    for i in range(0, len(keys), 5000):
        r.delete(*keys[i:i + 5000])
    r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--positions", type=int, default=50_000)
    ap.add_argument("--vehicles", type=int, default=2_000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--qos", type=int, choices=[0, 1], default=0,
                    help="publish QoS (validators send positions at QoS 0)")
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--track", choices=["on", "off", "compare"], default="on",
                    help="the durable track: on (as deployed), off (TRANSIT_TRACK_DAYS=0), "
                         "or compare: both, then the database's COPY of the same rows alone")
    ap.add_argument("--rounds", type=int, default=1,
                    help="with --track compare: runs of each, alternating (medians shown)")
    ap.add_argument("--redis-requests", type=int, default=100_000)
    ap.add_argument("--ingest-processes", type=int, default=None, metavar="N",
                    help="TRANSIT_INGEST_PROCESSES for the gateway (default: its default; "
                         "0: positions ingested in the gateway's own process)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args()
    per_vehicle = max(2, args.positions // args.vehicles)
    total = per_vehicle * args.vehicles

    workdir = Path(tempfile.mkdtemp(prefix="transit-posbench-"))
    broker = Broker(workdir / "mosquitto").start()
    db_url = create_pg_database() if args.db == "postgresql" else f"sqlite:///{workdir}/t.db"
    prefix = f"posbench{uuid.uuid4().hex[:8]}/v1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=db_url, TRANSIT_MQTT_URL=broker.url,
               TRANSIT_TOPIC_PREFIX=prefix, TRANSIT_REDIS_URL=REDIS_URL,
               TRANSIT_LOG_LEVEL="WARNING", TRANSIT_GATEWAY_ID=f"posbench-{uuid.uuid4().hex[:6]}")
    if args.ingest_processes is not None:
        env["TRANSIT_INGEST_PROCESSES"] = str(args.ingest_processes)
    try:
        from fare_gateway.devices import add_device
        from fare_gateway.schema import upgrade
        from ledger.adapters.db import make_engine, session_factory

        feed = transjakarta_feed()
        engine = make_engine(db_url)
        upgrade(engine)
        devices = []
        with session_factory(engine).begin() as s:
            for i in range(args.vehicles):
                row, _ = add_device(s, f"BUS-{i:05d}-A", f"BUS-{i:05d}", key=None)
                devices.append((row.device_id, row.vehicle_id, row.plain_secret))
        engine.dispose()
        imported = transit("gtfs", "import", str(feed), env=env).stdout.strip()
        routes = drives(feed, per_vehicle)
        parts, last = make_payloads(prefix, devices, routes, per_vehicle, args.publishers)
        size = len(parts[0][0][1])
        print(f"{args.vehicles:,} vehicles on {len({d.route_id for d in routes})} Transjakarta "
              f"routes ({len(routes)} trips), {per_vehicle} positions each = {total:,} "
              f"positions of {size} B, 100 m / 5 s apart; {args.publishers} publisher "
              f"processes, QoS {args.qos}; database {args.db}; {imported}")

        raw, raw_n = raw_mqtt_rate(broker.port, parts, args.qos)
        print(f"1. raw Mosquitto publish -> 1 subscriber, same payloads: {raw:,.0f} msg/s"
              + ("" if raw_n == total else f" ({raw_n:,} of {total:,} arrived)"))

        rates = redis_benchmark(args.redis_requests, args.vehicles)
        print(f"2. redis-benchmark, -n {args.redis_requests:,} -P 50 (requests/s):")
        for label, rate in rates.items():
            print(f"     {label:<42} {rate:>12,.0f}")
        for conns in ("50 conns", "1 conn"):
            print(f"   one position's commands (HSET+GEOADD+LPUSH+LTRIM+HGETALL), {conns}: "
                  f"{per_position(rates, conns):,.0f} positions/s")

        runs: dict[bool, list[EndToEnd]] = {False: [], True: []}
        # compare: off, on, on, off, ... so that a machine growing busier or quieter
        # during the runs weighs on both alike
        order = {"on": [True], "off": [False],
                 "compare": [k % 4 in (1, 2) for k in range(2 * args.rounds)]}[args.track]
        for with_track in order:
            clear_live_state(prefix)  # a run's vehicles must not meet the last run's
            if with_track:  # the table holds one run's positions: those copied in 4.
                empty_track(db_url)
            run = end_to_end(env, workdir, broker.port, parts, last, total, args.qos,
                             with_track)
            runs[with_track].append(run)
            print(f"3. end to end {'with' if with_track else 'without'} the durable track, "
                  f"publishers -> Mosquitto -> gateway -> Redis"
                  f"{' (+ vehicle_positions)' if with_track else ''}: {run.ingested:,.0f} of "
                  f"{total:,} positions ingested in {run.seconds:.2f}s = {run.rate:,.0f} "
                  f"positions/s ({run.accepted / run.seconds:,.0f} accepted/s); publishing "
                  f"took {run.publish_s:.2f}s")
            print(f"   outcomes: {dict(sorted(run.counts.items()))}")
            if with_track:
                print(f"   track: {run.track_written:,.0f} of {run.accepted:,.0f} accepted "
                      f"positions written to vehicle_positions "
                      f"{run.track_seconds:.2f}s after the first publish = "
                      f"{run.track_rate:,.0f} positions/s"
                      + (f"; {run.track_dropped:,.0f} dropped" if run.track_dropped else ""))
            print(f"   /api/v1/vehicles: {run.vehicles:,} vehicles, {run.current:,} at their "
                  f"last position; states {run.states} (their timestamps were set before "
                  f"publishing, to end 5 s before it began)")
            ratio = run.rate / raw
            print(f"   end to end {run.rate:,.0f} positions/s beside raw MQTT {raw:,.0f} msg/s "
                  f"in this run: ratio {ratio:.0%} (limit >= {GOAL_RATIO:.0%}: "
                  f"{'met' if ratio >= GOAL_RATIO else 'not met'}); "
                  f"{run.rate / per_position(rates, '1 conn'):.1%} of Redis's rate for the "
                  f"same commands on one connection; goal {GOAL_POSITIONS_S:,} positions/s: "
                  f"{'met' if run.rate >= GOAL_POSITIONS_S else 'not met'}")
        track_figures: dict[str, object] = {"track": args.track}
        if args.track == "compare":
            off_rate = statistics.median(r.rate for r in runs[False])
            on_rate = statistics.median(r.rate for r in runs[True])
            written_rate = statistics.median(r.track_rate for r in runs[True])
            cost = 1 - min(on_rate, written_rate) / off_rate
            print(f"   the track costs {cost:.0%} of the rate without it (median of "
                  f"{args.rounds} run{'s' if args.rounds > 1 else ''} each: the slower of "
                  f"ingest and track, {min(on_rate, written_rate):,.0f} positions/s, against "
                  f"{off_rate:,.0f}); limit 25%: {'met' if cost <= 0.25 else 'not met'}")
            track_figures.update(
                rounds=args.rounds, track_off_positions_s=round(off_rate),
                track_on_positions_s=round(on_rate),
                track_written_positions_s=round(written_rate),
                track_written=int(min(r.track_written for r in runs[True])),
                track_cost=round(cost, 3))
            if args.db == "postgresql":
                disk, copied, copy_s = copy_alone(db_url)
                per_day = disk / copied * BUS_DAY if copied else 0.0
                print(f"4. PostgreSQL alone, the same {copied:,} rows written again by the "
                      f"track's table code (COPY FROM STDIN, binary, batches of "
                      f"{BATCH_ROWS:,}): {copy_s:.2f}s = {copied / copy_s:,.0f} rows/s")
                print(f"   disk: {disk / copied:.0f} bytes a position (table and index, "
                      f"pg_total_relation_size) = {per_day / 1e6:.1f} MB a bus-day of "
                      f"{BUS_DAY:,} positions (one each 5 s)")
                track_figures.update(copy_rows_s=round(copied / copy_s),
                                     track_bytes_per_position=round(disk / copied),
                                     track_mb_per_bus_day=round(per_day / 1e6, 2))
        main_run = runs[args.track != "off"][-1]
        seen, elapsed, accepted = main_run.ingested, main_run.seconds, main_run.accepted
        counts, current = main_run.counts, main_run.current
        vehicles = main_run.vehicles
        write_figures(args.json, "positions", {
            "vehicles": args.vehicles, "positions": total, "publishers": args.publishers,
            "qos": args.qos, "db": args.db, "payload_bytes": size,
            "raw_mqtt_msg_s": round(raw), "raw_mqtt_arrived": raw_n,
            "redis_position_s_50_conns": round(per_position(rates, "50 conns")),
            "redis_position_s_1_conn": round(per_position(rates, "1 conn")),
            "ingested": int(seen), "seconds": round(elapsed, 3),
            "end_to_end_positions_s": round(seen / elapsed),
            "accepted_positions_s": round(accepted / elapsed),
            "outcomes": {k: int(v) for k, v in sorted(counts.items())},
            "api_vehicles": vehicles, "api_vehicles_at_last_position": current,
            "ratio_to_raw_mqtt": round(seen / elapsed / raw, 3),
            "ingest_processes": args.ingest_processes,
            "goal_positions_s": GOAL_POSITIONS_S, "goal_ratio": GOAL_RATIO, **track_figures})
    finally:
        broker.stop()
        if args.db == "postgresql":
            drop_pg_database(db_url)
        clear_live_state(prefix)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
