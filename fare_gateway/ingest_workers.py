"""Position ingest in processes of its own: `transit ingest`, and the children of
`transit gateway` (`TRANSIT_INGEST_PROCESSES`).

One process holds one interpreter lock: verifying, judging and matching a position is
Python work (~230 us of CPU a position), so a gateway that ingested positions on a
thread beside its tap path and HTTP server topped out near 2,000 positions/s and took
the tap path's CPU. An ingest process is stateless like a gateway: it subscribes to
every device's positions on a shared subscription (`$share/<group>/<prefix>/dev/+/pos`,
the group `TRANSIT_SHARE_GROUP`, else `transit-ingest`: all ingest processes of all
gateways split one stream), with its own Redis connection, device cache (told of every
device change, like the gateway's), trip matcher and track writer. What must hold
across processes is kept in Redis: a vehicle's position is written only if it is newer
than the stored one (`tracking.store.SAVE_SCRIPT`), and the counts of
`transit_positions_total` and `transit_track_positions_total` are added there, shown
on every gateway's /metrics. Validator statuses stay in the gateway (not shared: every
gateway keeps every device's status).

A child watches its standard input, a pipe from the gateway: at its end (the gateway
gone, even by SIGKILL) it stops, as on SIGTERM or SIGINT; on Linux the kernel also
sends it SIGTERM when the gateway dies (PR_SET_PDEATHSIG). The gateway starts a child
again when one dies, waiting longer after each death in a row (1 s to 30 s).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import IO, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from transit.errors import TransitError, why_unreachable
from transit.settings import Settings

log = logging.getLogger(__name__)

GROUP = "transit-ingest"  # the share group when TRANSIT_SHARE_GROUP is empty
READY = b"ready\n"  # what a child writes on its standard output once subscribed
READY_WITHIN_S = 60.0  # a child reads the schedule before it subscribes (~3 s of CPU)
RELAY_S = 0.2  # how often a process adds its track counts to Redis
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
STOP_WITHIN_S = 15.0  # a child writes the track it holds before it stops (10 s at most)
PR_SET_PDEATHSIG = 1


def ingest_group(settings: Settings) -> str:
    """The share group of the position subscription of every ingest process."""
    return settings.share_group or GROUP


# -- the counts in Redis -------------------------------------------------------------------

class CountStore(Protocol):
    """What `SharedCounts` and `TrackCountRelay` need of `tracking.store.TrackingStore`."""

    def counts(self, family: str) -> dict[str, int]:
        """The shared counts of `family`, by outcome."""
        ...

    def add_counts(self, family: str, counts: Mapping[str, int]) -> None:
        """Add to the shared counts of `family`."""
        ...


class SharedCounts(Collector):
    """`transit_positions_total` (and, with `track`, `transit_track_positions_total`)
    as every ingest process sharing this Redis and topic prefix added them: the same
    figures on every gateway, since Redis last lost its data."""

    def __init__(self, store: CountStore, track: bool) -> None:
        self.store = store
        self.track = track

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = [("transit_positions", "positions", "Positions received, by outcome "
                     "(every ingest process of this Redis and topic prefix)")]
        if self.track:
            families.append(("transit_track_positions", "track",
                             "Accepted positions written to the track, by outcome "
                             "(every ingest process of this Redis and topic prefix)"))
        for name, family, text in families:
            try:
                counts = self.store.counts(family)
            except Exception:  # Redis away: /metrics still answers, without these
                log.debug("shared counts of %s not read", family, exc_info=True)
                continue
            metric = CounterMetricFamily(name, text, labels=["outcome"])
            for outcome, n in sorted(counts.items()):
                metric.add_metric([outcome], float(n))
            yield metric




class TrackCountRelay:
    """Adds what this process's track writer counted to the shared counts in Redis,
    every `RELAY_S` and once more at the end."""

    def __init__(self, registry: CollectorRegistry, store: CountStore) -> None:
        self.registry = registry
        self.store = store
        self._sent: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="track-counts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop, after adding the last counts."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.relay()

    def relay(self) -> None:
        """Add what was counted since the last time (nothing lost if Redis is away:
        it is added the next time)."""
        now: dict[str, int] = {}
        for family in self.registry.collect():
            if family.name != "transit_track_positions":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    now[sample.labels["outcome"]] = int(sample.value)
        delta = {k: v - self._sent.get(k, 0) for k, v in now.items()
                 if v != self._sent.get(k, 0)}
        if not delta:
            return
        try:
            self.store.add_counts("track", delta)
        except Exception as exc:
            log.debug("track counts not added (%s); adding them later", exc)
            return
        self._sent.update({k: now[k] for k in delta})

    def _run(self) -> None:
        while not self._stop.wait(RELAY_S):
            self.relay()


# -- one ingest process -----------------------------------------------------------------------

def run_ingest(settings: Settings, *, child: bool = False) -> None:
    """`transit ingest`: position ingest alone until SIGTERM/SIGINT (a child of the
    gateway also stops at the end of its standard input)."""
    import redis.exceptions

    from fare_gateway.adapters.device_watch import device_watch
    from fare_gateway.devices import DeviceDirectory
    from fare_gateway.metrics import Metrics
    from fare_gateway.schema import schema_problem
    from ledger.adapters.db import make_engine, session_factory
    from tracking.adapters.consumer import PositionConsumer
    from tracking.ingest import PositionIngest
    from tracking.network import Network
    from tracking.schedule_load import ScheduleSource
    from tracking.store import TrackingStore, redis_client
    from tracking.track import TrackWriter
    from transit.topics import Topics
    from transit.window import EventWindow

    stop = threading.Event()

    def _signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    if child:
        threading.Thread(target=_watch_parent, args=(sys.stdin.buffer, stop),
                         name="parent", daemon=True).start()

    engine = make_engine(settings.database_url)
    try:
        problem = schema_problem(engine)
        if problem is not None:
            raise TransitError(problem)
        store = TrackingStore(redis_client(settings.redis_url), settings.topic_prefix)
        try:
            store.redis.ping()
        except redis.exceptions.RedisError as exc:
            raise TransitError(f"Redis at {settings.redis_url} is not reachable ({exc}): "
                               "start it or set TRANSIT_REDIS_URL") from None
        sessions = session_factory(engine)
        metrics = Metrics()  # this process's own: its counts go to Redis
        devices = DeviceDirectory(sessions, key=settings.secret_key)
        watch = device_watch(engine, devices, metrics)
        devices.changes_heard = lambda: watch.hearing
        topics = Topics(settings.topic_prefix)
        track = TrackWriter(sessions, metrics.registry, keep_days=settings.track_days)
        schedule = ScheduleSource(sessions, on_stamp=lambda stamp: store.schedule_seen(
            settings.gateway_id, f"ingest-{os.getpid()}", stamp))
        ingest = PositionIngest(store, devices, Network(sessions), topics,
                                metrics.registry, EventWindow(settings.tap_max_age_days),
                                track=track, schedule=schedule, shared=True)
        consumer = PositionConsumer(settings, ingest, statuses=False,
                                    group=ingest_group(settings))
        relay = TrackCountRelay(metrics.registry, store)
        schedule()  # read before subscribing: the first batch does not wait for it
        if stop.is_set():
            # Told to stop while starting (its gateway gone): nothing has started yet.
            # On a loaded machine reading the schedule alone took seconds, and stopping
            # what would start after it as many again.
            return
        schedule.watch()  # and checked every 2 s, positions or none (its stamp to Redis)
        watch.start()
        track.start()
        relay.start()
        consumer.start()
        try:
            _wait_subscribed(settings, consumer, stop)
            if child:
                sys.stdout.buffer.write(READY)
                sys.stdout.buffer.flush()
            log.info("ingest %s: positions of %s/dev/+/pos in share group %s",
                     settings.gateway_id, settings.topic_prefix, ingest_group(settings))
            stop.wait()
        finally:
            consumer.stop()
            track.stop()  # after the consumer: the positions it took are written
            relay.stop()
            watch.stop()
            schedule.stop()
    finally:
        engine.dispose()


def _watch_parent(stdin: IO[bytes], stop: threading.Event) -> None:
    """Set `stop` at the end of `stdin`: the gateway that holds its other end is gone."""
    with contextlib.suppress(OSError, ValueError):
        while stdin.read(4096):
            pass
    stop.set()


def _wait_subscribed(settings: Settings, consumer: object, stop: threading.Event) -> None:
    """Wait until the broker has the position subscription, or fail in one line after
    `TRANSIT_BROKER_WAIT_S` (0: do not wait; the client keeps reconnecting).

    The broker handles one client's packets in order, so the acknowledgement of a QoS 1
    publish sent after the SUBSCRIBE says the subscription is in place: from then on no
    position sent is missed for want of a subscriber.
    """
    client = getattr(consumer, "client", None)
    wait_s = settings.broker_wait_s
    if client is None or wait_s == 0:
        return
    if not client.wait_connected(wait_s):
        if stop.is_set():
            return
        endpoint = settings.mqtt
        why = why_unreachable(endpoint.host, endpoint.port) or "it refused the MQTT " \
            "connection: check the user, password and TLS files"
        raise TransitError(f"the broker at {endpoint.address} did not answer within "
                           f"{wait_s:g} s ({why}): start it or set TRANSIT_MQTT_URL")
    topic = f"{settings.topic_prefix}/ingest/{uuid.uuid4().hex[:12]}/subscribed"
    with contextlib.suppress(Exception):  # an old connection gone: the next one subscribes
        client.publish(topic, b"", qos=1).wait_for_publish(timeout=wait_s)


# -- the gateway's children ------------------------------------------------------------------

def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class IngestProcesses:
    """`count` ingest processes, children of this gateway, started again when one dies."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self._ready = [threading.Event() for _ in range(count)]
        self._deaths = [0] * count
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._monitor = threading.Thread(target=self._watch, name="ingest-children",
                                         daemon=True)
        self.restarts = 0

    def command(self) -> list[str]:
        """How a child is started: this interpreter's `transit ingest --child`."""
        return [sys.executable, "-m", "transit", "ingest", "--child"]

    def start(self, ready_within_s: float = READY_WITHIN_S) -> None:
        """Start the children and wait until each has subscribed (or `ready_within_s`
        has passed: then they go on starting, and the gateway with them)."""
        for i in range(self.count):
            self._spawn(i)
        deadline = time.monotonic() + ready_within_s
        for i, ready in enumerate(self._ready):
            while not ready.wait(0.2):
                proc = self._procs[i]
                if proc is not None and proc.poll() is not None:
                    self.stop()
                    raise TransitError(
                        f"an ingest process exited at start (status {proc.returncode}); "
                        "its line above says why")
                if time.monotonic() >= deadline:
                    log.warning("ingest process %d not subscribed after %.0f s; going on",
                                i, ready_within_s)
                    break
        self._monitor.start()

    def pids(self) -> list[int]:
        """The children's process ids (for operators and tests)."""
        with self._lock:
            return [p.pid for p in self._procs if p is not None]

    def stop(self) -> None:
        """Stop every child: the end of its input, then SIGTERM; SIGKILL after
        `STOP_WITHIN_S`."""
        self._stopping.set()
        if self._monitor.is_alive():
            self._monitor.join(timeout=5)
        with self._lock:
            procs = [p for p in self._procs if p is not None]
        for proc in procs:
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WITHIN_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("ingest process %d did not stop: killed", proc.pid)
                proc.kill()
                proc.wait(timeout=5)

    def _spawn(self, i: int) -> None:
        self._ready[i].clear()
        # The environment is the gateway's own, inherited: the same settings.
        proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, preexec_fn=_die_with_parent)
        with self._lock:
            self._procs[i] = proc
        threading.Thread(target=self._read_ready, args=(i, proc), name=f"ingest-{i}",
                         daemon=True).start()

    def _read_ready(self, i: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):
            for line in proc.stdout:
                if line == READY:
                    self._deaths[i] = 0
                    self._ready[i].set()

    def _watch(self) -> None:
        due: dict[int, float] = {}
        while not self._stopping.wait(0.5):
            for i in range(self.count):
                proc = self._procs[i]
                if proc is None or proc.poll() is None:
                    continue
                if i not in due:
                    self._deaths[i] += 1
                    wait = min(RESTART_MAX_S, RESTART_MIN_S * 2 ** (self._deaths[i] - 1))
                    log.warning("ingest process %d (pid %d) ended with status %s: "
                                "starting another in %.0f s", i, proc.pid, proc.returncode,
                                wait)
                    due[i] = time.monotonic() + wait
                if time.monotonic() >= due[i] and not self._stopping.is_set():
                    del due[i]
                    self.restarts += 1
                    self._spawn(i)
