"""Taps, positions, map streams and readers at once: tap -> receipt latency, losses,
memory and CPU of the gateway under the mixed load of a working day.

    .venv/bin/python -m bench.mixed [--minutes 3] [--tap-rate 1000] [--position-rate 2000]
                                    [--streams 10] [--gateways 1] [--vehicles 2000]
                                    [--json FILE]

One (or two) `transit gateway` on a fresh PostgreSQL database, a private Mosquitto with
the project's broker policy, Redis, the Transjakarta network imported (TRANSIT_GTFS_FEED),
`--vehicles` buses each with its validator, and funded cards. For the whole run, at once:

  * signed taps at a steady `--tap-rate` (QoS 1) from `--tap-devices` validators, one C
    `mosquitto_pub -l` per validator fed by this process (as bench/tap_throughput.py
    does: the generator is not the limit), each for a card drawn at random, stamped now,
    at the bus's position; a C `mosquitto_sub` stamps every receipt on arrival;
  * signed positions at `--position-rate` (QoS 0, as validators send them) from every
    bus driving back and forth along a real route shape, from a process of its own;
  * `--streams` open `/api/v1/vehicles/stream` clients reading every event;
  * statement readers (`GET /api/v1/cards/{card}/taps` and `.../statement`, in turn,
    `--reads-per-s`) and the three GTFS-Realtime feeds polled every `--feed-every`
    seconds, as a control room would (a process of its own).

Measured: tap -> receipt latency (from each tap's write into its publisher's pipe to its
receipt's arrival at the subscriber) p50/p99/max per minute and overall; that none is
lost (every tap receipted once, its inbox row and at most one fare entry in the ledger,
the cards' balances moved by exactly the receipts' fares plus any corrections; every
position counted by the gateways' /metrics); the resident memory of each gateway with
its child processes, every `--interval` seconds, and its least-squares slope over the
second half of the run; CPU seconds of every process taking part. The limit, in the same
run and before the mixed load: raw Mosquitto publish -> subscribe latency at the same
tap rate, same publishers, payloads and subscriber, on a topic nobody processes.

"Flat" memory: the second half's slope, carried over ten minutes, under
FLAT_MIB_PER_10_MIN (2 MiB) or under 1 % of the mean RSS, whichever is larger; judged on
runs of JUDGE_MINUTES (10) or more, the goal's run being `--minutes 30` (shorter runs
print the slope and say it is not judged).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import Stack, fund_cards_batched, percentile
from bench.memory import Track, along, gtfs_tracks, rss_kib, slope_per_min
from bench.positions import clear_live_state, metric_total
from bench.results import write_figures
from bench.tap_throughput import PROBE, Publishers, wait_for_probe
from testbed.environment import REDIS_URL
from testbed.gateway import Gateway, transit
from transit.wire import Position, Tap

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event

GOAL_P99_MS = 50.0
GOAL_TAP_RATE = 1000
GOAL_POSITION_RATE = 2000
GOAL_MINUTES = 30
FLAT_MIB_PER_10_MIN = 2.0
FLAT_SHARE = 0.01
DRAIN_S = 600.0  # the longest wait for receipts after the last tap was written
# Receipts may pause that long while the gateway still works through its backlog: an
# overloaded gateway was seen to send none for 30 s, then thousands.
QUIET_S = 90.0
JUDGE_MINUTES = 10.0  # under this the second half is too short to tell a step from growth
SPEED_MPS = 8.0  # a city bus between stops, averaged
AGE_EVERY_S = 0.1  # a stream's position age is sampled at most this often
STREAM_ID = re.compile(rb"\nid: [^\n]*:(\d+)\n")
CLK_TCK = os.sysconf("SC_CLK_TCK")
FEEDS = ("/gtfs-rt/vehicle-positions", "/gtfs-rt/trip-updates", "/gtfs-rt/alerts")


# -- the fleet: where each bus is at a moment (taps and positions agree) --------------------------

@dataclass(frozen=True)
class Fleet:
    """Each bus's validator, route and starting point; every bus drives at SPEED_MPS."""

    devices: list[tuple[str, str, str]]  # device_id, vehicle_id, secret (hex)
    tracks: list[Track]  # per bus
    starts_m: list[float]  # per bus: metres along its track at t0

    def where(self, k: int, elapsed_s: float) -> tuple[int, int]:
        """Bus k's position (e6 degrees) `elapsed_s` after the start."""
        return along(self.tracks[k], self.starts_m[k] + SPEED_MPS * elapsed_s)


def make_fleet(stack: Stack, tracks: list[Track], seed: int = 11) -> Fleet:
    rnd = random.Random(seed)
    devices = [(d, f"BUS-{d[-4:]}", secret.hex()) for d, secret in stack.devices.items()]
    mine = [tracks[k % len(tracks)] for k in range(len(devices))]
    starts = [rnd.uniform(0, 100 * len(t.points)) for t in mine]
    return Fleet(devices, mine, starts)


# -- positions (a process of its own) -------------------------------------------------------------
# The first version built a `Position` and published it with paho: 137 us of CPU a
# position, 27 % of a core at 2,000/s taken from the gateway on this 2-core machine.
# The same signed bytes are made here from a dict (checked against transit.wire at the
# start) and written as MQTT 3.1.1 QoS 0 PUBLISH packets on a plain socket.

class PositionSigner:
    """Signed position payloads, byte for byte what `Position(...).signed().encode()`
    gives (`check` proves it for a bus before the run)."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.secrets = [bytes.fromhex(s) for _, _, s in fleet.devices]
        self.fixed = []
        for (device_id, vehicle_id, _), track in zip(fleet.devices, fleet.tracks,
                                                     strict=True):
            base: dict[str, Any] = {"device_id": device_id, "vehicle_id": vehicle_id,
                                    "route_id": track.route_id, "v": 1}
            if track.trip_id is not None:
                base["trip_id"] = track.trip_id
            self.fixed.append(base)

    def payload(self, k: int, ts: int, lat_e6: int, lon_e6: int) -> bytes:
        msg = dict(self.fixed[k], ts=ts, lat_e6=lat_e6, lon_e6=lon_e6)
        canon = json.dumps(msg, sort_keys=True, separators=(",", ":")).encode()
        msg["sig"] = hmac.new(self.secrets[k], canon, hashlib.sha256).hexdigest()
        return json.dumps(msg, sort_keys=True, separators=(",", ":")).encode()

    def check(self, k: int) -> None:
        """Raise unless bus k's payload is the wire module's own."""
        device_id, vehicle_id, _ = self.fleet.devices[k]
        track = self.fleet.tracks[k]
        ours = self.payload(k, 1764313202123, -7257500, 112752100)
        wire = Position(device_id=device_id, vehicle_id=vehicle_id, route_id=track.route_id,
                        trip_id=track.trip_id, ts=1764313202123, lat_e6=-7257500,
                        lon_e6=112752100).signed(self.secrets[k]).encode()
        if ours != wire:
            raise RuntimeError(f"position payloads differ from transit.wire's: {ours!r}")


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    n, length = len(body), bytearray()
    while True:
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            return bytes([kind]) + bytes(length) + body


def _mqtt_str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def publish_positions(port: int, prefix: str, fleet: Fleet, rate: float, seconds: float,
                      go: Event, t0: Synchronized[float], sent: Synchronized[int]) -> None:
    """Publish signed positions (QoS 0), each bus in turn, at `rate` for `seconds`."""
    signer = PositionSigner(fleet)
    signer.check(0)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # CONNECT, MQTT 3.1.1, clean session, no keep-alive (the run sends all the time).
    sock.sendall(_mqtt_packet(0x10, _mqtt_str("MQTT") + bytes([4, 0x02, 0, 0])
                              + _mqtt_str(f"mixpos-{uuid.uuid4().hex[:6]}")))
    if sock.recv(4) != b"\x20\x02\x00\x00":
        raise RuntimeError("the broker refused the positions' connection")
    topics = [_mqtt_str(f"{prefix}/dev/{d}/pos") for d, _, _ in fleet.devices]
    n = len(fleet.devices)
    last_ts = [0] * n
    go.wait()
    start = time.monotonic() - (time.time() - t0.value)
    count = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        now_ms = int(time.time() * 1000)
        packets = []
        while count < int(elapsed * rate):
            k = count % n
            lat, lon = fleet.where(k, elapsed)
            ts = max(now_ms, last_ts[k] + 1)
            last_ts[k] = ts
            packets.append(_mqtt_packet(0x30, topics[k] + signer.payload(k, ts, lat, lon)))
            count += 1
        if packets:
            sock.sendall(b"".join(packets))
        sent.value = count
        time.sleep(0.005)
    sent.value = count
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


# -- map streams, statement readers, feeds (a process of its own) ---------------------------------

@dataclass(frozen=True)
class Readers:
    """What the HTTP clients do: streams and readers spread over the gateways."""

    base_urls: list[str]
    token: str
    streams: int
    cards: list[str]
    reads_per_s: float
    feed_every_s: float
    out: str  # their figures, JSON, written when they stop


def _host_port(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


def read_stream(base_url: str, token: str, stop: threading.Event, stats: dict[str, Any],
                t0: float, events: Synchronized[int]) -> None:
    """Hold one vehicle stream open and count every position event; per block read, the
    age of its oldest position (now - its ts) is kept, by minute of the run."""
    host, port = _host_port(base_url)
    while not stop.is_set():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/api/v1/vehicles/stream",
                         headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            if resp.status != 200:
                stats["errors"].append(f"HTTP {resp.status}")
                resp.read()
                stop.wait(1)
                continue
            stats["opened"] += 1
            buf, last_age = b"", 0.0
            while not stop.is_set():
                chunk = resp.read1(65536)
                if not chunk:
                    stats["errors"].append("closed by the gateway")
                    break
                buf += chunk
                end = buf.rfind(b"\n\n")
                if end < 0:
                    continue
                block, buf = buf[:end + 2], buf[end + 2:]
                if not stats["snapshot"] and b"event: snapshot" in block:
                    stats["snapshot"] = True
                ids = STREAM_ID.findall(block)
                if ids:
                    now = time.time()
                    stats["events"] += len(ids)
                    with events.get_lock():
                        events.value += len(ids)
                    if now - last_age >= AGE_EVERY_S:  # a bounded sample over 30 minutes
                        last_age = now
                        oldest = min(int(i) for i in ids) / 1000
                        stats["lags"].append((int((now - t0) // 60), (now - oldest) * 1000))
        except (OSError, http.client.HTTPException) as exc:
            if not stop.is_set():
                stats["errors"].append(f"{type(exc).__name__}: {exc}")
                stop.wait(1)
        finally:
            conn.close()


def _get(base_url: str, path: str, token: str | None) -> tuple[int, float, int]:
    """(status, ms, bytes) of one GET."""
    req = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except OSError:
        body, status = b"", 0
    return status, (time.perf_counter() - t) * 1000, len(body)


def read_statements(plan: Readers, stop: threading.Event, log: list[tuple[str, int, float]],
                    seed: int) -> None:
    """A card's taps, then a card's statement, and so on, `plan.reads_per_s` a second."""
    rnd = random.Random(seed)
    k = 0
    start = time.monotonic()
    while not stop.is_set():
        card = plan.cards[rnd.randrange(len(plan.cards))]
        path = (f"/api/v1/cards/{card}/taps" if k % 2 == 0 else
                f"/api/v1/cards/{card}/statement")
        status, ms, _ = _get(plan.base_urls[k % len(plan.base_urls)], path, plan.token)
        log.append(("taps" if k % 2 == 0 else "statement", status, ms))
        k += 1
        stop.wait(max(0.0, start + k / plan.reads_per_s - time.monotonic()))


def poll_feeds(plan: Readers, stop: threading.Event, log: list[tuple[str, int, float, int]]
               ) -> None:
    """The three GTFS-Realtime feeds, every `plan.feed_every_s` seconds."""
    k = 0
    start = time.monotonic()
    while not stop.is_set():
        for feed in FEEDS:
            status, ms, size = _get(plan.base_urls[k % len(plan.base_urls)], feed, None)
            log.append((feed, status, ms, size))
        k += 1
        stop.wait(max(0.0, start + k * plan.feed_every_s - time.monotonic()))


def run_readers(plan: Readers, go: Event, finish: Event, t0: Synchronized[float],
                events: Synchronized[int]) -> None:
    """The HTTP clients, from `go` until `finish`; their figures to `plan.out`."""
    go.wait()
    stop = threading.Event()
    streams: list[dict[str, Any]] = [
        {"gateway": i % len(plan.base_urls), "opened": 0, "snapshot": False, "events": 0,
         "errors": [], "lags": []} for i in range(plan.streams)]
    reads: list[tuple[str, int, float]] = []
    feeds: list[tuple[str, int, float, int]] = []
    threads = [threading.Thread(target=read_stream, daemon=True,
                                args=(plan.base_urls[s["gateway"]], plan.token, stop, s,
                                      t0.value, events)) for s in streams]
    if plan.reads_per_s > 0:
        threads.append(threading.Thread(target=read_statements, args=(plan, stop, reads, 3),
                                        daemon=True))
    if plan.feed_every_s > 0:
        threads.append(threading.Thread(target=poll_feeds, args=(plan, stop, feeds),
                                        daemon=True))
    for t in threads:
        t.start()
    finish.wait()
    stop.set()
    # A stream blocked in a read wakes with the next event or keep-alive (15 s); the
    # figures are written by then whatever it is doing (its thread is a daemon).
    deadline = time.monotonic() + 20
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    Path(plan.out).write_text(json.dumps({"streams": streams, "reads": reads,
                                          "feeds": feeds}))


# -- taps: the feeder and the stamping subscriber -------------------------------------------------

class Answers:
    """`mosquitto_sub` (QoS 1) on the answers' topic; each message is matched to its tap
    as it arrives (only its latency is kept: a 30-minute run has 1.8 million)."""

    def __init__(self, port: int, topic: str, probe_topic: str, seq0: int,
                 device_index: dict[str, int], sent: array[float]) -> None:
        self.sent = sent
        self.latency = array("d", [math.nan]) * len(sent)
        self.seq0, self.device_index, self.n = seq0, device_index, len(device_index)
        self.count = self.duplicates = self.strays = 0
        self.by_status: dict[str, int] = {}
        self.charged_fares = 0
        self.recent: list[float] = []  # latencies since the last progress line
        self.probed = threading.Event()
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
             "-F", "@s.@N %p", "-i", f"mixsub-{uuid.uuid4().hex[:10]}"],
            stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for_probe(self.probed, port, probe_topic)  # subscribed once it comes back

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            stamp, _, payload = line.partition(b" ")
            if payload.rstrip(b"\n") == PROBE:
                self.probed.set()
                continue
            body = json.loads(payload)
            k = self.device_index.get(body.get("device_id"))
            i = -1 if k is None else (int(body["seq"]) - self.seq0) * self.n + k
            if not 0 <= i < len(self.sent) or self.sent[i] == 0.0:
                self.strays += 1
                continue
            if not math.isnan(self.latency[i]):
                self.duplicates += 1
                continue
            ms = (float(stamp) - self.sent[i]) * 1000
            self.latency[i] = ms
            self.recent.append(ms)
            self.count += 1
            status = str(body.get("status", "tap"))
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if status == "charged":
                self.charged_fares += int(body["fare"])

    def take_recent(self) -> list[float]:
        out, self.recent = self.recent, []
        return out

    def wait_for(self, count: int, quiet_s: float, most_s: float = 3600.0) -> None:
        """Until `count` answers came, none came for `quiet_s` seconds, or `most_s` passed."""
        last, t_last = self.count, time.monotonic()
        deadline = t_last + most_s
        while (self.count < count and time.monotonic() - t_last < quiet_s
               and time.monotonic() < deadline):
            time.sleep(0.05)
            if self.count > last:
                last, t_last = self.count, time.monotonic()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@dataclass
class TapFeed:
    """Signed taps, device after device in turn, written at a steady rate."""

    fleet: Fleet
    tap_devices: int
    cards: list[str]
    seq0: int
    t0_wall: float = 0.0
    written: int = 0

    def __post_init__(self) -> None:
        self.secrets = [bytes.fromhex(s) for _, _, s in self.fleet.devices[:self.tap_devices]]
        self.rnd = random.Random(17)

    def payload(self, i: int) -> tuple[str, bytes]:
        k = i % self.tap_devices
        device_id, vehicle_id, _ = self.fleet.devices[k]
        now = time.time()
        lat, lon = self.fleet.where(k, now - self.t0_wall)
        tap = Tap(device_id=device_id, seq=self.seq0 + i // self.tap_devices,
                  vehicle_id=vehicle_id, route_id=self.fleet.tracks[k].route_id,
                  card=self.cards[self.rnd.randrange(len(self.cards))], kind="entry",
                  accepted=True, ts=int(now * 1000), lat_e6=lat, lon_e6=lon
                  ).signed(self.secrets[k])
        return device_id, tap.encode()


def feed_taps(pubs: Publishers, feed: TapFeed, rate: float, sent: array[float],
              stop: threading.Event | None = None) -> float:
    """Write `len(sent)` taps at `rate`, stamping each just before its write; returns the
    seconds it took (signing happens before the stamp: it is the generator's, not the
    system's)."""
    t0 = time.perf_counter()
    for i in range(len(sent)):
        if stop is not None and stop.is_set():
            break
        device_id, payload = feed.payload(i)
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)
        sent[i] = time.time()
        pubs.send(device_id, payload)
        feed.written = i + 1
    return time.perf_counter() - t0


def raw_limit(stack: Stack, fleet: Fleet, tap_devices: int, cards: list[str], rate: float,
              seconds: float) -> dict[str, Any]:
    """Raw Mosquitto publish -> subscribe latency at `rate`: the same publishers, payloads
    and subscriber as the taps, on a topic nobody processes."""
    total = int(rate * seconds)
    sent = array("d", [0.0]) * total
    devices = [d for d, _, _ in fleet.devices[:tap_devices]]
    feed = TapFeed(fleet, tap_devices, cards, seq0=1, t0_wall=time.time())
    sink = Answers(stack.broker.port, "mixraw/+/tap", "mixraw/PROBE/tap", 1,
                   {d: k for k, d in enumerate(devices)}, sent)
    pubs = Publishers(stack.broker.port, {d: f"mixraw/{d}/tap" for d in devices},
                      nodelay=True)
    try:
        feed_taps(pubs, feed, rate, sent)
        sink.wait_for(total, 10)
    finally:
        pubs.close()
        sink.close()
    lat = [x for x in sink.latency if not math.isnan(x)]
    return {"rate": rate, "seconds": seconds, **_latency(lat), "missing": total - len(lat)}


def _latency(lat: list[float]) -> dict[str, Any]:
    return {"n": len(lat), "p50_ms": _r(percentile(lat, 50)), "p99_ms": _r(percentile(lat, 99)),
            "max_ms": _r(max(lat)) if lat else None,
            "mean_ms": _r(statistics.fmean(lat)) if lat else None}


def _r(x: float) -> float | None:
    return None if x != x else round(x, 1)


# -- processes: memory and CPU --------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                children.setdefault(st[0], []).append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out




def pids_named(comm: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as f:
                    if f.read().strip() == comm:
                        out.append(int(name))
            except OSError:
                pass
    return out


class CpuMeter:
    """CPU seconds per label between the first sample and the last: a process first seen
    later (a child born during the run, a new database connection) counts from zero."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.started = False

    def observe(self, label: str, pids: list[int]) -> None:
        for pid in pids:
            st = _stat(pid)
            if st is None:
                continue
            key = (label, pid)
            if key not in self.first:
                self.first[key] = st[1] if not self.started else 0.0
            self.last[key] = st[1]

    def begin(self) -> None:
        self.started = True

    def seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, value in self.last.items():
            out[key[0]] = out.get(key[0], 0.0) + value - self.first[key]
        return out


def pg_backends(db_url: str) -> Callable[[], list[int]]:
    """A function listing the PostgreSQL backends connected to this run's database."""
    import psycopg

    url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    name = url.rsplit("/", 1)[1]
    conn = psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True)

    def pids() -> list[int]:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                            (name,)).fetchall()
        return [int(r[0]) for r in rows]

    pids.close = conn.close  # type: ignore[attr-defined]
    return pids


class AnalyzeStandIn:
    """What autovacuum does for the planner, on a server where it is off: `ANALYZE` of
    the run's database every `every_s` seconds, from a thread of its own. Without it the
    taps table, millions of rows by the end of a long run, never gets statistics, and
    PostgreSQL reads a batch's card-day taps with a parallel scan of the whole table
    (420 ms at 630,000 taps, 95 on the index): the gateway then falls behind for
    a reason no deployment has (operations.md, "PostgreSQL")."""

    def __init__(self, db_url: str, every_s: float = 60.0) -> None:
        import psycopg

        self.url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SHOW autovacuum").fetchone()
        self.needed = row is not None and row[0] != "on"
        self.every_s = every_s
        self.runs: list[float] = []  # seconds each ANALYZE took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analyze", daemon=True)

    def start(self) -> None:
        if self.needed:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.every_s):
                started = time.perf_counter()
                conn.execute("ANALYZE")
                self.runs.append(time.perf_counter() - started)

    def said(self) -> str:
        if not self.needed:
            return "autovacuum is on: the server keeps the statistics itself"
        took = f"; each took {min(self.runs):.1f}-{max(self.runs):.1f} s" if self.runs else ""
        return (f"autovacuum is off on this server: ANALYZE ran every {self.every_s:g} s "
                f"in its place, {len(self.runs)} times{took}")


# -- the ledger at the end ------------------------------------------------------------------------

def ledger_check(db_url: str, taps_sent: int, funded_total: int, charged_fares: int
                 ) -> dict[str, Any]:
    """Every tap in the inbox once, at most one fare entry per tap, and the cards'
    balances moved by exactly the fares the receipts said plus any corrections."""
    import psycopg

    url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        inbox, inbox_charged = conn.execute(
            "SELECT count(*), coalesce(sum(fare) FILTER (WHERE status = 'charged'), 0) "
            "FROM taps").fetchone() or (0, 0)
        by_status: dict[str, int] = dict(conn.execute(
            "SELECT status, count(*) FROM taps GROUP BY status ORDER BY status").fetchall())
        kinds = {k: (int(n), int(d), int(s)) for k, n, d, s in conn.execute(
            "SELECT kind, count(*), count(DISTINCT tap_id), coalesce(sum(amount), 0) "
            "FROM entries WHERE kind IN ('fare', 'correction') GROUP BY kind").fetchall()}
        balances = int(conn.execute("SELECT coalesce(sum(balance), 0) FROM cards"
                                    ).fetchone()[0])  # type: ignore[index]
    fares, fare_taps, fare_sum = kinds.get("fare", (0, 0, 0))
    corrections = kinds.get("correction", (0, 0, 0))
    taken = funded_total - balances
    out = {"inbox_taps": int(inbox), "inbox_by_status": {str(k): int(v)
                                                         for k, v in by_status.items()},
           "fare_entries": fares, "fare_entries_distinct_taps": fare_taps,
           "fare_entries_sum": fare_sum, "correction_entries": corrections[0],
           "correction_sum": corrections[2], "taken_from_cards": taken,
           "receipts_charged_fares": charged_fares, "inbox_charged_fares": int(inbox_charged)}
    out["every_tap_once"] = int(inbox) == taps_sent
    out["no_tap_charged_twice"] = fares == fare_taps
    out["money_matches_receipts"] = (taken == charged_fares + corrections[2]
                                     == fare_sum + corrections[2])
    out["charged_exactly_once"] = bool(out["every_tap_once"] and out["no_tap_charged_twice"]
                                       and out["money_matches_receipts"])
    return out


# -- memory verdict -------------------------------------------------------------------------------

def memory_figures(samples: list[tuple[float, int]], seconds: float, minutes: float
                   ) -> dict[str, Any]:
    """The second half's slope (MiB per 10 minutes) and the verdict against "flat"."""
    second = [(t, r) for t, r in samples if t >= seconds / 2 - 1e-6]
    slope = slope_per_min(second) if len(second) >= 2 else float("nan")
    mean = sum(r for _, r in samples) / len(samples) if samples else 0.0
    per_10 = slope * 10 / 1024
    limit = max(FLAT_MIB_PER_10_MIN, FLAT_SHARE * mean / 1024)
    judged = minutes >= JUDGE_MINUTES and len(second) >= 2
    flat = per_10 == per_10 and per_10 < limit
    verdict = ("flat" if flat else "grows") if judged else \
        f"not judged (run under {JUDGE_MINUTES:g} min; {'flat' if flat else 'grows'} so far)"
    return {"samples": [[round(t, 1), r] for t, r in samples],
            "start_rss_kib": samples[0][1] if samples else None,
            "end_rss_kib": samples[-1][1] if samples else None,
            "peak_rss_kib": max((r for _, r in samples), default=None),
            "mean_rss_kib": round(mean),
            "slope_second_half_mib_per_10min": _r(per_10) if per_10 == per_10 else None,
            "flat_limit_mib_per_10min": round(limit, 2), "judged": judged, "flat": flat,
            "verdict": verdict}


# -- the run --------------------------------------------------------------------------------------

def by_minute(sent: array[float], latency: array[float], t0: float, minutes: float
              ) -> list[dict[str, Any]]:
    """Tap -> receipt latency by the minute of the run each tap was written in (a tap the
    feeder wrote late, past the run's end, counts in its last minute)."""
    last = max(0, math.ceil(minutes) - 1)
    buckets: dict[int, list[float]] = {}
    lost: dict[int, int] = {}
    for s, ms in zip(sent, latency, strict=True):
        if s == 0.0:
            continue
        m = min(last, int((s - t0) // 60))
        if math.isnan(ms):
            lost[m] = lost.get(m, 0) + 1
        else:
            buckets.setdefault(m, []).append(ms)
    return [{"minute": m + 1, "taps": len(buckets.get(m, [])) + lost.get(m, 0),
             "missing": lost.get(m, 0), **_latency(buckets.get(m, []))}
            for m in sorted(set(buckets) | set(lost))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="length of the load (3)")
    ap.add_argument("--tap-rate", type=float, default=1000.0, help="taps/s (1,000)")
    ap.add_argument("--position-rate", type=float, default=2000.0, help="positions/s (2,000)")
    ap.add_argument("--streams", type=int, default=10, help="open vehicle streams (10)")
    ap.add_argument("--gateways", type=int, default=1)
    ap.add_argument("--ingest-processes", type=int, default=1,
                    help="TRANSIT_INGEST_PROCESSES of each gateway (1: positions in a "
                         "process of their own, as a city at this load runs it; 0: in the "
                         "gateway's own process)")
    ap.add_argument("--vehicles", type=int, default=2000,
                    help="buses, each with a validator sending positions (2,000)")
    ap.add_argument("--tap-devices", type=int, default=50,
                    help="validators that tap, one mosquitto_pub each (50)")
    ap.add_argument("--cards", type=int, default=0,
                    help="funded cards (default: a tenth of the taps, 10,000 to 100,000)")
    ap.add_argument("--reads-per-s", type=float, default=4.0,
                    help="statement reads a second, card taps and statements in turn (4)")
    ap.add_argument("--feed-every", type=float, default=5.0,
                    help="seconds between polls of the three GTFS-RT feeds (5)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--raw-seconds", type=float, default=10.0,
                    help="length of the raw Mosquitto latency run (10)")
    ap.add_argument("--profile", metavar="FILE",
                    help="py-spy record the first gateway (--gil, 200 Hz, raw) into FILE")
    ap.add_argument("--profile-at", type=float, default=30.0, metavar="S",
                    help="seconds into the load the profile starts (30); it lasts 15 s")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args()
    if args.tap_devices > args.vehicles:
        ap.error("--tap-devices must not exceed --vehicles")
    seconds = args.minutes * 60
    total_taps = int(args.tap_rate * seconds)
    n_cards = args.cards or min(100_000, max(10_000, total_taps // 10))

    t_setup = time.perf_counter()
    stack = Stack.create(n_devices=args.vehicles, n_cards=0)
    prefix = f"mixed{uuid.uuid4().hex[:8]}/v1"
    # A topic prefix of its own keeps this run's Redis keys apart from anyone else's.
    stack.env.update(TRANSIT_TOPIC_PREFIX=prefix, TRANSIT_REDIS_URL=REDIS_URL,
                     TRANSIT_INGEST_PROCESSES=str(args.ingest_processes))
    gateways: list[Gateway] = []
    procs: list[Any] = []
    sink = pubs = backends = None
    finish = None
    try:
        stack.cards = [f"04C0{i:08X}" for i in range(n_cards)]
        funded_each = 10_000_000
        fund_cards_batched(stack.db_url, stack.cards, funded_each)
        tracks, imported = gtfs_tracks(stack.env)
        fleet = make_fleet(stack, tracks)
        token = transit("tokens", "create", "--role", "admin", env=stack.env).stdout.strip()
        print(f"{args.vehicles:,} buses on {len({t.route_id for t in tracks})} Transjakarta "
              f"routes ({imported}); {args.tap_devices} of their validators tap; {n_cards:,} "
              f"funded cards; {args.gateways} gateway(s); set up in "
              f"{time.perf_counter() - t_setup:.0f} s")

        raw = raw_limit(stack, fleet, args.tap_devices, stack.cards, args.tap_rate,
                        args.raw_seconds)
        print(f"limit: raw Mosquitto publish -> subscribe at {args.tap_rate:,.0f} msg/s for "
              f"{args.raw_seconds:g} s (same publishers, payloads, subscriber): p50 "
              f"{raw['p50_ms']} ms, p99 {raw['p99_ms']} ms, max {raw['max_ms']} ms"
              + (f"; {raw['missing']} missing" if raw["missing"] else ""))

        gateways = [stack.gateway(f"mixgw{i}") for i in range(args.gateways)]
        ctx = mp.get_context("spawn")
        go, finish = ctx.Event(), ctx.Event()
        t0 = ctx.Value("d", 0.0)
        positions_sent = ctx.Value("q", 0)
        stream_events = ctx.Value("q", 0)
        readers_out = str(stack.workdir / "readers.json")
        readers = Readers([g.base_url for g in gateways], token, args.streams,
                          stack.cards[:5000], args.reads_per_s, args.feed_every, readers_out)
        gen = ctx.Process(target=publish_positions, daemon=True, args=(
            stack.broker.port, prefix, fleet, args.position_rate, seconds, go, t0,
            positions_sent))
        rdr = ctx.Process(target=run_readers, daemon=True,
                          args=(readers, go, finish, t0, stream_events))
        procs = [gen, rdr]
        for p in procs:
            p.start()

        sent = array("d", [0.0]) * total_taps
        tap_devices = [d for d, _, _ in fleet.devices[:args.tap_devices]]
        sink = Answers(stack.broker.port, f"{prefix}/dev/+/receipt",
                       f"{prefix}/dev/PROBE/receipt", 1,
                       {d: k for k, d in enumerate(tap_devices)}, sent)
        pubs = Publishers(stack.broker.port, {d: f"{prefix}/dev/{d}/tap" for d in tap_devices},
                          nodelay=True)
        backends = pg_backends(stack.db_url)
        analyze = AnalyzeStandIn(stack.db_url) if stack.db_url.startswith("postgresql") \
            else None
        broker_pid = stack.broker.proc.pid if stack.broker.proc else 0
        redis_pids = pids_named("redis-server")
        cpu = CpuMeter()
        samples: list[tuple[float, int]] = []
        stop_sampling = threading.Event()

        def ingested() -> tuple[float, dict[str, float]]:
            counts: dict[str, float] = {}
            for g in gateways:
                for k, v in metric_total(g.base_url, "transit_positions_total").items():
                    counts[k] = counts.get(k, 0) + v
            return sum(counts.values()), counts

        def observe() -> None:
            for i, g in enumerate(gateways):
                assert g.proc is not None
                cpu.observe(f"gateway {i + 1} (with its children)", tree(g.proc.pid))
            cpu.observe("Mosquitto", [broker_pid])
            cpu.observe("PostgreSQL (this run's connections)", backends())
            cpu.observe("Redis (shared by the machine)", redis_pids)
            cpu.observe("positions generator", [gen.pid or 0])
            cpu.observe("HTTP readers and streams", [rdr.pid or 0])
            if pubs is not None and sink is not None:
                cpu.observe("tap publishers and subscriber (C)",
                            [p.pid for p in pubs.procs.values()] + [sink.proc.pid])
            cpu.observe("this benchmark (tap feeder)", [os.getpid()])

        def sample_loop() -> None:
            k = 0
            while not stop_sampling.is_set():
                k += 1
                stop_sampling.wait(max(0.0, t0.value + k * args.interval - time.time()))
                t = time.time() - t0.value
                rss = sum(rss_kib(p) or 0 for g in gateways if g.proc for p in tree(g.proc.pid))
                samples.append((t, rss))
                observe()
                recent = sink.take_recent()
                try:
                    n_in = f"{ingested()[0]:>10,.0f}"
                except OSError:
                    n_in = f"{'?':>10}"
                print(f"{t:6.0f} {feed.written:>9,} {sink.count:>9,} "
                      f"{percentile(recent, 99):>8.1f} {positions_sent.value:>10,} {n_in} "
                      f"{stream_events.value:>11,} {rss / 1024:>9.1f}", flush=True)

        print(f"load: {args.tap_rate:,.0f} taps/s, {args.position_rate:,.0f} positions/s, "
              f"{args.streams} streams, {args.reads_per_s:g} statement reads/s, feeds every "
              f"{args.feed_every:g} s, for {args.minutes:g} min; samples every "
              f"{args.interval:g} s")
        print(f"{'t (s)':>6} {'taps':>9} {'receipts':>9} {'p99 ms':>8} {'positions':>10} "
              f"{'ingested':>10} {'map events':>11} {'RSS MiB':>9}")
        observe()
        cpu.begin()
        sampler = threading.Thread(target=sample_loop, daemon=True)
        if args.profile:
            profiler = threading.Timer(args.profile_at, profile, args=(
                gateways[0], args.profile))
            profiler.daemon = True
            profiler.start()
        feed = TapFeed(fleet, args.tap_devices, stack.cards, seq0=1)
        t0.value = feed.t0_wall = time.time()
        go.set()
        sampler.start()
        if analyze is not None:
            analyze.start()
        feed_s = feed_taps(pubs, feed, args.tap_rate, sent)
        t_end = time.time()
        observe()
        cpu_s = cpu.seconds()
        span = t_end - t0.value
        # An overloaded gateway is still answering: its backlog is waited for (the map
        # streams and readers go on meanwhile), up to DRAIN_S, then what is missing is.
        t_drain = time.monotonic()
        sink.wait_for(total_taps, QUIET_S, DRAIN_S)
        drain_s = time.monotonic() - t_drain
        finish.set()
        gen.join(timeout=60)
        rdr.join(timeout=60)
        last, t_last = -1.0, time.monotonic()
        while True:  # positions still queued at the end: until all or none for 15 s
            n_in, outcomes = ingested()
            if n_in >= positions_sent.value or time.monotonic() - t_last > 15:
                break
            if n_in > last:
                last, t_last = n_in, time.monotonic()
            time.sleep(0.2)
        track: dict[str, int] = {}
        for g in gateways:
            for k, v in metric_total(g.base_url, "transit_track_positions_total").items():
                track[k] = int(track.get(k, 0) + v)
        stop_sampling.set()
        sampler.join(timeout=args.interval + 5)
        if analyze is not None:
            analyze.stop()
            print(f"statistics: {analyze.said()}", flush=True)
        stop_s = [stop_gateway(g) for g in gateways]
        pubs.close()
        pubs = None

        lat = [x for x in sink.latency if not math.isnan(x)]
        overall = _latency(lat)
        minutes = by_minute(sent, sink.latency, t0.value, args.minutes)
        missing = total_taps - sink.count
        ledger = ledger_check(stack.db_url, total_taps, funded_each * n_cards,
                              sink.charged_fares)
        memory = memory_figures(samples, seconds, args.minutes)
        read = json.loads(Path(readers_out).read_text()) if Path(readers_out).exists() else {}
        streams = read.get("streams", [])
        lags = [ms for s in streams for _, ms in s["lags"]]
        accepted = outcomes.get("accepted", 0)
        stream_fig = {
            "streams": len(streams), "opened": sum(s["opened"] for s in streams),
            "with_snapshot": sum(1 for s in streams if s["snapshot"]),
            "events": sum(s["events"] for s in streams),
            "events_per_stream_min": min((s["events"] for s in streams), default=0),
            "errors": [e for s in streams for e in s["errors"]][:20],
            "position_age": _latency(lags),
        }
        stream_fig["share_of_accepted"] = (round(stream_fig["events_per_stream_min"] / accepted,
                                                 3) if accepted else None)
        reads = {}
        for what in ("taps", "statement"):
            calls = [(st, ms) for w, st, ms in read.get("reads", []) if w == what]
            reads[what] = {"calls": len(calls), "errors": sum(1 for st, _ in calls if st != 200),
                           **_latency([ms for _, ms in calls])}
        feeds = {}
        for feed_path in FEEDS:
            calls4 = [(st, ms, n) for f, st, ms, n in read.get("feeds", []) if f == feed_path]
            feeds[feed_path] = {"calls": len(calls4),
                                "errors": sum(1 for st, _, _ in calls4 if st != 200),
                                "bytes_last": calls4[-1][2] if calls4 else None,
                                **_latency([ms for _, ms, _ in calls4])}

        print()
        print(f"taps: {feed.written:,} written in {feed_s:.0f} s "
              f"({total_taps / feed_s:,.0f} taps/s); {sink.count:,} receipted "
              f"({dict(sorted(sink.by_status.items()))}), {missing} missing, "
              f"{sink.duplicates} receipts seen twice; waited {drain_s:.0f} s for receipts "
              f"after the last tap was written")
        print(f"tap -> receipt, whole run: p50 {overall['p50_ms']} ms, p99 {overall['p99_ms']} "
              f"ms, max {overall['max_ms']} ms  |  limit, raw Mosquitto at the same rate: p99 "
              f"{raw['p99_ms']} ms  |  goal p99 < {GOAL_P99_MS:.0f} ms")
        print(f"{'minute':>6} {'taps':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'missing':>8}")
        for m in minutes:
            print(f"{m['minute']:>6} {m['taps']:>8,} {m['p50_ms']!s:>8} {m['p99_ms']!s:>8} "
                  f"{m['max_ms']!s:>8} {m['missing']:>8}")
        print(f"ledger: {ledger['inbox_taps']:,} taps in the inbox "
              f"({ledger['inbox_by_status']}); {ledger['fare_entries']:,} fare entries for "
              f"{ledger['fare_entries_distinct_taps']:,} taps; taken from cards "
              f"{ledger['taken_from_cards']:,} = receipts' fares "
              f"{ledger['receipts_charged_fares']:,} + corrections "
              f"{ledger['correction_sum']:,}: charged exactly once: "
              f"{ledger['charged_exactly_once']}")
        pos_lost = int(positions_sent.value - sum(outcomes.values()))
        print(f"positions: {positions_sent.value:,} sent ({positions_sent.value / span:,.0f}/s), "
              f"{sum(outcomes.values()):,.0f} counted by the gateway(s) "
              f"({ {k: int(v) for k, v in sorted(outcomes.items())} }), {pos_lost:,} not "
              f"counted; track {track}")
        age = stream_fig["position_age"]
        print(f"map streams: {stream_fig['with_snapshot']} of {args.streams} with their "
              f"snapshot, {stream_fig['events']:,} position events (the least a stream read: "
              f"{stream_fig['events_per_stream_min']:,}, {stream_fig['share_of_accepted']} of "
              f"the accepted positions); age of a position on arrival p50 {age['p50_ms']} ms, "
              f"p99 {age['p99_ms']} ms; errors {stream_fig['errors'][:3]}")
        for what, r in reads.items():
            print(f"reads, {what}: {r['calls']} calls, {r['errors']} errors, p50 {r['p50_ms']} "
                  f"ms, p99 {r['p99_ms']} ms")
        for feed_path, r in feeds.items():
            print(f"feed {feed_path}: {r['calls']} polls, {r['errors']} errors, p50 "
                  f"{r['p50_ms']} ms, max {r['max_ms']} ms, {r['bytes_last']} bytes")
        if None in stop_s:
            print(f"WARNING: gateway(s) {[i + 1 for i, x in enumerate(stop_s) if x is None]} "
                  "did not stop within 30 s of SIGTERM and were killed")
        print(f"memory (gateway process tree RSS): {_mib(memory['start_rss_kib'])} -> "
              f"{_mib(memory['end_rss_kib'])}, peak {_mib(memory['peak_rss_kib'])}; second "
              f"half {memory['slope_second_half_mib_per_10min']} MiB/10 min against "
              f"{memory['flat_limit_mib_per_10min']} -> {memory['verdict']}")
        print(f"CPU over the {span:.0f} s of load (% of one core):")
        cpu_fig = {}
        for label, s in cpu_s.items():
            cpu_fig[label] = {"seconds": round(s, 1), "percent_of_core": round(100 * s / span, 1)}
            print(f"   {label:<40} {s:8.1f} s {100 * s / span:6.1f} %")
        goals = {
            "p99_ms": overall["p99_ms"] is not None and overall["p99_ms"] < GOAL_P99_MS,
            "at_goal_load": (args.tap_rate >= GOAL_TAP_RATE
                             and args.position_rate >= GOAL_POSITION_RATE
                             and args.streams >= 10),
            "none_lost": missing == 0 and bool(ledger["charged_exactly_once"]) and pos_lost == 0,
            "memory_flat": bool(memory["flat"]) if memory["judged"] else None,
            "memory_run_long_enough": args.minutes >= GOAL_MINUTES,
        }
        print(f"goals: p99 < {GOAL_P99_MS:.0f} ms at {GOAL_TAP_RATE:,} taps/s with "
              f"{GOAL_POSITION_RATE:,} positions/s and 10 streams: "
              f"{'met' if goals['p99_ms'] and goals['at_goal_load'] else 'not met'}; none "
              f"lost: {'met' if goals['none_lost'] else 'not met'}; memory flat over "
              f"{GOAL_MINUTES} min: "
              + ("not judged (shorter run)" if not goals["memory_run_long_enough"] else
                 "met" if goals["memory_flat"] else "not met"))
        write_figures(args.json, "mixed", {
            "minutes": args.minutes, "tap_rate": args.tap_rate,
            "position_rate": args.position_rate, "streams": args.streams,
            "gateways": args.gateways, "vehicles": args.vehicles,
            "tap_devices": args.tap_devices, "cards": n_cards,
            "load_s": round(span, 1), "taps_sent": total_taps,
            "taps_achieved_rate": round(total_taps / feed_s), "receipts": sink.count,
            "receipts_missing": missing, "receipts_seen_twice": sink.duplicates,
            "drain_s": round(drain_s, 1),
            # seconds each gateway took to stop on SIGTERM (None: killed after 30 s)
            "gateway_stop_s": stop_s,
            "receipts_by_status": dict(sorted(sink.by_status.items())),
            "latency": overall, "latency_by_minute": minutes, "raw_latency": raw,
            "goal_p99_ms": GOAL_P99_MS,
            "positions_sent": positions_sent.value,
            "positions_counted": int(sum(outcomes.values())),
            "positions_not_counted": pos_lost,
            "positions_by_outcome": {k: int(v) for k, v in sorted(outcomes.items())},
            "track": track, "map_streams": stream_fig, "reads": reads, "feeds": feeds,
            "ledger": ledger, "memory": memory, "cpu": cpu_fig, "goals": goals})
        return 0
    finally:
        if finish is not None:
            finish.set()
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(10)
        if pubs is not None:
            for proc in pubs.procs.values():
                proc.kill()
        if sink is not None:
            sink.close()
        if backends is not None:
            backends.close()  # type: ignore[attr-defined]
        for g in gateways:
            stop_gateway(g)
        clear_live_state(prefix)
        stack.close()


def stop_gateway(gateway: Gateway) -> float | None:
    """SIGTERM, and SIGKILL if it has not stopped 30 s later; the seconds it took to stop
    on SIGTERM, None when it had to be killed."""
    t = time.monotonic()
    try:
        gateway.stop()
    except subprocess.TimeoutExpired:
        gateway.stop(kill=True)
        return None
    return round(time.monotonic() - t, 1)


def profile(gateway: Gateway, path: str) -> None:
    """py-spy's raw samples of the gateway (every thread, with --gil the GIL holder's),
    15 s at 200 Hz, children included (position ingest may run in them)."""
    exe = Path(sys.executable).parent / "py-spy"
    if gateway.proc is None or not exe.exists():
        print(f"profile: not taken ({exe} missing or the gateway gone)", flush=True)
        return
    out = subprocess.run([str(exe), "record", "--gil", "--subprocesses", "-r", "200",
                          "-d", "15", "-f", "raw", "-o", path, "-p", str(gateway.proc.pid)],
                         capture_output=True, text=True)
    print(f"profile: {'written to ' + path if out.returncode == 0 else out.stderr[-300:]}",
          flush=True)


def _mib(kib: float | None) -> str:
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


if __name__ == "__main__":
    raise SystemExit(main())
