"""Memory of `transit gateway` over a long run under a steady stream of taps and positions.

    .venv/bin/python -m bench.memory [--minutes 10] [--taps-per-s 200] [--positions-per-s 100]
                                     [--devices 200] [--cards 20000] [--interval 10]
                                     [--warmup 60] [--json FILE]

One gateway runs against a private Mosquitto, a fresh PostgreSQL database (devices and
funded cards) and Redis, with the Transjakarta network imported when its feed is beside
the checkout. A load generator (a process of its own) publishes, at steady rates:

  * signed taps (QoS 1) from every device in turn, each for a card drawn at random among
    the funded ones, stamped with the current time;
  * signed positions (QoS 0), each vehicle in turn, driving back and forth along a route
    shape at 10 m/s.

Every `--interval` seconds the gateway process's resident set (VmRSS in /proc/PID/status)
is sampled; the broker's and the generator's memory are not the gateway's and do not
count. Receipts are counted by a subscriber: every tap must be receipted.

Reported: RSS at the end of the warm-up (start) and at the end, the growth between them,
the least-squares slope (KiB/min) over the steady part (after the warm-up) and over the
second half of the run. Verdict: "no growth" when the second half's slope, carried over
the whole run, stays under 1 % of the gateway's mean RSS, or when the last third of the
run stays within that 1 % (a step, then level) (about the size of the steps in
which a Python process's RSS moves on its own: allocator arenas, caches filling up);
otherwise "grows". The threshold is meant for runs of ten minutes or more: in a run of
two, one such step near the end is enough to read as growth.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import random
import shutil
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Stack
from bench.results import write_figures
from testbed.environment import REDIS_URL, transjakarta_feed
from testbed.gateway import transit
from transit.wire import Position, Tap

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized
    from multiprocessing.synchronize import Event

NOISE_SHARE = 0.01  # growth over the run below 1 % of the RSS counts as none
SPEED_MPS = 10.0
SURABAYA = (-7.2575, 112.7521)


# -- what the buses drive along -------------------------------------------------------------------

@dataclass(frozen=True)
class Track:
    route_id: str
    trip_id: str | None
    points: list[tuple[float, float]]  # 100 m apart


def synthetic_tracks(n: int) -> list[Track]:
    """Straight 20 km lines out of Surabaya, for when the GTFS feed is not at hand."""
    out = []
    for i in range(n):
        angle = 2 * math.pi * i / n
        d_lat = math.cos(angle) * 100 / 111_320
        d_lon = math.sin(angle) * 100 / (111_320 * math.cos(math.radians(SURABAYA[0])))
        out.append(Track("R1", None, [(SURABAYA[0] + k * d_lat, SURABAYA[1] + k * d_lon)
                                      for k in range(200)]))
    return out


def gtfs_tracks(env: dict[str, str]) -> tuple[list[Track], str]:
    """Import the Transjakarta feed into the gateway's database; its trips as 100 m paths."""
    from bench.positions import drives

    feed = transjakarta_feed()
    imported = transit("gtfs", "import", str(feed), env=env).stdout.strip()
    return [Track(d.route_id, d.trip_id, d.path) for d in drives(feed, 20)], imported


def along(track: Track, metres: float) -> tuple[int, int]:
    """Where a vehicle is after driving `metres` back and forth along `track` (e6 degrees)."""
    length = (len(track.points) - 1) * 100.0
    d = metres % (2 * length)
    if d > length:
        d = 2 * length - d
    k = min(int(d // 100), len(track.points) - 2)
    f = d / 100 - k
    (a_lat, a_lon), (b_lat, b_lon) = track.points[k], track.points[k + 1]
    return round((a_lat + (b_lat - a_lat) * f) * 1e6), round((a_lon + (b_lon - a_lon) * f) * 1e6)


# -- the load generator (a process of its own) ----------------------------------------------------

@dataclass(frozen=True)
class Load:
    port: int
    prefix: str
    devices: list[tuple[str, bytes]]
    cards: list[str]
    tracks: list[Track]
    taps_per_s: float
    positions_per_s: float
    seconds: float


def generate(load: Load, go: Event, sent_taps: Synchronized[int],
             sent_positions: Synchronized[int]) -> None:
    """Publish taps and positions at steady rates until `load.seconds` have passed."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"memgen-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", load.port, keepalive=60)
    c.loop_start()
    rnd = random.Random(7)
    n_dev = len(load.devices)
    seqs = [0] * n_dev
    vehicle = [f"BUS-{d[-4:]}" for d, _ in load.devices]
    step_m = SPEED_MPS * n_dev / load.positions_per_s if load.positions_per_s else 0.0
    starts = [rnd.uniform(0, 100 * len(load.tracks[i % len(load.tracks)].points))
              for i in range(n_dev)]
    go.wait()
    t0 = time.monotonic()
    taps = positions = 0
    last_pos_ts = [0] * n_dev
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= load.seconds:
            break
        now_ms = int(time.time() * 1000)
        while taps < int(elapsed * load.taps_per_s):
            i = taps % n_dev
            device_id, secret = load.devices[i]
            seqs[i] += 1
            tap = Tap(device_id=device_id, seq=seqs[i], vehicle_id=vehicle[i], route_id="R1",
                      card=load.cards[rnd.randrange(len(load.cards))], kind="entry",
                      accepted=True, ts=now_ms, lat_e6=-7257500,
                      lon_e6=112752100).signed(secret)
            c.publish(f"{load.prefix}/dev/{device_id}/tap", tap.encode(), qos=1)
            taps += 1
        while positions < int(elapsed * load.positions_per_s):
            i = positions % n_dev
            device_id, secret = load.devices[i]
            track = load.tracks[i % len(load.tracks)]
            lat, lon = along(track, starts[i] + (positions // n_dev) * step_m)
            ts = max(now_ms, last_pos_ts[i] + 1)
            last_pos_ts[i] = ts
            pos = Position(device_id=device_id, vehicle_id=vehicle[i], route_id=track.route_id,
                           trip_id=track.trip_id, ts=ts, lat_e6=lat,
                           lon_e6=lon).signed(secret)
            c.publish(f"{load.prefix}/dev/{device_id}/pos", pos.encode(), qos=0)
            positions += 1
        sent_taps.value = taps
        sent_positions.value = positions
        time.sleep(0.005)
    time.sleep(1)  # let QoS 1 publishes complete
    c.disconnect()
    c.loop_stop()


# -- watching ------------------------------------------------------------------------------------

class Receipts:
    """Counts receipts per tap and status (a receipt seen twice counts once)."""

    def __init__(self, port: int, prefix: str) -> None:
        self.seen: dict[tuple[str, int], str] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"memrcpt-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.subscribe(f"{prefix}/dev/+/receipt", qos=1)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("receipt subscription not confirmed")

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            self.seen[(body["device_id"], body["seq"])] = body["status"]

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def by_status(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.lock:
            for status in self.seen.values():
                out[status] = out.get(status, 0) + 1
        return dict(sorted(out.items()))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process, KiB (None once it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (KiB) over time, in KiB per minute."""
    if len(samples) < 2:
        return float("nan")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return cov / var * 60 if var else float("nan")


def metric_counts(base_url: str, name: str) -> dict[str, float]:
    """The values of one labelled counter on the gateway's /metrics, by label value."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            label = line[line.index('"') + 1:line.rindex('"')]
            out[label] = float(line.rsplit(" ", 1)[1])
    return out


def db_tap_statuses(db_url: str) -> dict[str, int]:
    import psycopg

    url = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM taps GROUP BY status").fetchall()
    return {str(s): int(n) for s, n in sorted(rows)}


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


# -- the run -------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the load (10)")
    ap.add_argument("--taps-per-s", type=float, default=200.0)
    ap.add_argument("--positions-per-s", type=float, default=100.0)
    ap.add_argument("--devices", type=int, default=200, help="validators, one per bus (200)")
    ap.add_argument("--cards", type=int, default=20_000, help="funded cards (20,000)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds of load before the start RSS is taken (60)")
    ap.add_argument("--no-gtfs", action="store_true",
                    help="straight synthetic routes instead of the Transjakarta network")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work folder and database")
    args = ap.parse_args()
    seconds = args.minutes * 60
    if args.warmup >= seconds:
        ap.error("--warmup must be shorter than the run")

    t_setup = time.perf_counter()
    stack = Stack.create(n_devices=args.devices, n_cards=args.cards)
    prefix = f"membench{uuid.uuid4().hex[:8]}/v1"
    # A topic prefix of its own keeps this run's Redis keys apart from anything else's.
    stack.env.update(TRANSIT_TOPIC_PREFIX=prefix, TRANSIT_REDIS_URL=REDIS_URL)
    gateway = receipts = gen = None
    try:
        network = "synthetic straight routes"
        tracks = synthetic_tracks(16)
        if not args.no_gtfs:
            try:
                tracks, network = gtfs_tracks(stack.env)
                network = f"Transjakarta network ({network})"
            except FileNotFoundError as exc:
                print(f"note: {exc}; using synthetic routes")
        load = Load(stack.broker.port, prefix, list(stack.devices.items()), stack.cards,
                    tracks, args.taps_per_s, args.positions_per_s, seconds)
        ctx = mp.get_context("fork")  # before any thread of this process starts
        go = ctx.Event()
        sent_taps = ctx.Value("q", 0)
        sent_positions = ctx.Value("q", 0)
        gen = ctx.Process(target=generate, args=(load, go, sent_taps, sent_positions),
                          daemon=True)
        gen.start()
        receipts = Receipts(stack.broker.port, prefix)
        gateway = stack.gateway("memgw")
        assert gateway.proc is not None
        pid = gateway.proc.pid
        print(f"gateway pid {pid}; {args.devices} devices, {args.cards:,} funded cards, "
              f"{network}; set up in {time.perf_counter() - t_setup:.0f} s")
        print(f"load: {args.taps_per_s:g} signed taps/s (QoS 1) and {args.positions_per_s:g} "
              f"signed positions/s (QoS 0) for {args.minutes:g} min; RSS every "
              f"{args.interval:g} s, warm-up {args.warmup:g} s")
        print(f"{'t (s)':>7} {'gateway RSS':>12} {'taps sent':>10} {'receipts':>9} "
              f"{'positions':>10}")

        samples: list[tuple[float, int]] = []
        go.set()
        t0 = time.monotonic()
        k = 0
        while True:
            target = t0 + k * args.interval
            if target > t0 + seconds + 1e-6:
                break
            time.sleep(max(0.0, target - time.monotonic()))
            rss = rss_kib(pid)
            if rss is None:
                raise RuntimeError(f"the gateway exited: see {gateway.log_path}")
            t = time.monotonic() - t0
            samples.append((t, rss))
            print(f"{t:7.0f} {mib(rss):>12} {sent_taps.value:>10,} {receipts.count():>9,} "
                  f"{sent_positions.value:>10,}", flush=True)
            k += 1
        gen.join(timeout=60)
        taps_sent, positions_sent = sent_taps.value, sent_positions.value
        deadline = time.monotonic() + 60
        while receipts.count() < taps_sent and time.monotonic() < deadline:
            time.sleep(0.2)
        received = receipts.count()
        lost = taps_sent - received
        by_status = receipts.by_status()
        pos_outcomes = metric_counts(gateway.base_url, "transit_positions_total")
        broker_rss = rss_kib(stack.broker.proc.pid) if stack.broker.proc else None
        gateway.stop()
        gateway = None
        db_status = db_tap_statuses(stack.db_url)

        steady = [(t, r) for t, r in samples if t >= args.warmup - 1e-6]
        second = [(t, r) for t, r in steady if t >= seconds / 2 - 1e-6]
        start_rss, end_rss = steady[0][1], steady[-1][1]
        mean_rss = sum(r for _, r in steady) / len(steady)
        slope = slope_per_min(steady)
        slope2 = slope_per_min(second)
        threshold = NOISE_SHARE * mean_rss / args.minutes
        # A step (an allocator arena, a bounded cache filling) followed by a flat line is
        # not growth: the last third of the run must then stay within the noise.
        last = [r for t, r in steady if t >= seconds * 2 / 3 - 1e-6]
        spread_last = max(last) - min(last)
        levelled = spread_last <= NOISE_SHARE * mean_rss
        verdict = ("no growth" if slope2 <= threshold else
                   "no growth (a step, then level)" if levelled else "grows")
        print()
        print(f"gateway RSS after the {args.warmup:g} s warm-up: {mib(start_rss)}; at the end "
              f"({seconds:.0f} s): {mib(end_rss)}; growth {end_rss - start_rss:+,} KiB")
        print(f"slope (least squares), steady part ({len(steady)} samples): {slope:+.1f} KiB/min;"
              f" second half ({len(second)} samples): {slope2:+.1f} KiB/min "
              f"({slope2 * 60 / 1024:+.1f} MiB an hour if it went on)")
        print(f"last third of the run: RSS within {spread_last:,} KiB "
              f"({'level' if levelled else 'still moving'})")
        print(f"noise threshold: {NOISE_SHARE:.0%} of the mean RSS ({mib(mean_rss)}) over "
              f"{args.minutes:g} min = {threshold:.1f} KiB/min -> {verdict}")
        print(f"taps: {taps_sent:,} sent, {received:,} receipted ({by_status}; not_charged "
              f"is a repeat tap), lost {lost}; tap records in the database: {db_status}")
        print(f"positions: {positions_sent:,} sent (QoS 0), gateway outcomes "
              f"{ {k: int(v) for k, v in sorted(pos_outcomes.items())} }")
        if broker_rss is not None:
            print(f"(not counted: the broker's RSS at the end {mib(broker_rss)})")
        write_figures(args.json, "memory", {
            "minutes": args.minutes, "warmup_s": args.warmup, "interval_s": args.interval,
            "last_third_spread_kib": spread_last,
            "taps_per_s": args.taps_per_s, "positions_per_s": args.positions_per_s,
            "devices": args.devices, "cards": args.cards, "network": network,
            "samples": [[round(t, 1), r] for t, r in samples],
            "start_rss_kib": start_rss, "end_rss_kib": end_rss,
            "growth_kib": end_rss - start_rss, "mean_rss_kib": round(mean_rss),
            "slope_kib_per_min": round(slope, 1),
            "slope_second_half_kib_per_min": round(slope2, 1),
            "threshold_kib_per_min": round(threshold, 1), "verdict": verdict,
            "taps_sent": taps_sent, "receipts": received, "receipts_by_status": by_status,
            "lost": lost, "taps_in_db": db_status, "positions_sent": positions_sent,
            "positions_by_outcome": {k: int(v) for k, v in pos_outcomes.items()},
            "broker_rss_kib": broker_rss})
        return 0
    finally:
        if gen is not None and gen.is_alive():
            gen.terminate()
            gen.join(10)
        if receipts is not None:
            receipts.close()
        if gateway is not None:
            gateway.stop()
        _drop_redis_keys(prefix)
        if args.keep:
            print(f"kept {stack.db_url} and {stack.workdir}")
            stack.broker.stop()
        else:
            stack.close()
            shutil.rmtree(stack.workdir, ignore_errors=True)


def _drop_redis_keys(prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"transit:{prefix}:*", count=5000))
    for i in range(0, len(keys), 5000):
        r.delete(*keys[i:i + 5000])
    r.close()


if __name__ == "__main__":
    raise SystemExit(main())
