"""Position ingest in processes of its own (`TRANSIT_INGEST_PROCESSES`, `transit ingest`),
against real Mosquitto, Redis and SQLite: the children split the positions, their
counts reach the gateway's /metrics, one killed is started again, an older position
received after a newer one is out of order in either process, they end with the
gateway (even killed), an older position never overwrites a newer one, and the command
fails in one line on bad surroundings."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from testbed.environment import REDIS_URL
from testbed.gateway import Gateway, transit
from tests.integration.commands import failed
from tests.integration.tracking.test_positions import now_ms, wait_until
from tests.support.clients import MqttPeer
from tests.support.commands import transit_here
from tracking.store import TrackingStore, VehicleRecord
from transit.wire import Position


def children_of(pid: int) -> set[int]:
    """The live child processes of `pid` (each of its threads may have started some)."""
    out: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return {p for p in out if alive(p)}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def ingest_children(gateway: Gateway) -> set[int]:
    assert gateway.proc is not None
    found = set()
    for pid in children_of(gateway.proc.pid):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"ingest" in f.read():
                found.add(pid)
    return found


def counts(gateway: Gateway, family: str) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"{gateway.base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.labels["outcome"]: s.value for f in text_string_to_metric_families(text)
            if f.name == family for s in f.samples if s.name == f"{family}_total"}


@pytest.fixture
def two_children(base_env: dict[str, str], tmp_path: Path
                 ) -> Iterator[tuple[Gateway, dict[str, str]]]:
    env = dict(base_env, TRANSIT_INGEST_PROCESSES="2", TRANSIT_TRACK_DAYS="30")
    transit_here("db", "upgrade", env=env)
    gateway = Gateway(env, tmp_path / "gateway.log").start()
    try:
        yield gateway, env
    finally:
        gateway.stop()
        log = (tmp_path / "gateway.log").read_text()
        print(log[-6000:])
        assert "Traceback (most recent call last)" not in log, log[-4000:]


def publish_positions(peer: MqttPeer, prefix: str, devices: list[tuple[str, bytes]],
                      per_vehicle: int, t0: int, first: int = 0) -> None:
    """Each vehicle's positions `first` to `first + per_vehicle - 1`, 100 m / 5 s apart."""
    items = []
    for k in range(first, first + per_vehicle):
        for i, (device_id, secret) in enumerate(devices):
            items.append((f"{prefix}/dev/{device_id}/pos", Position(
                device_id=device_id, vehicle_id=device_id.removesuffix("-V"),
                route_id="R1", ts=t0 + k * 5000, lat_e6=-7_257_500 + 900 * k + 10 * i,
                lon_e6=112_752_100).signed(secret).encode()))
    peer.publish_many(items, qos=1)


def test_children_ingest_positions_counted_on_the_gateway_and_restarted(
        two_children: tuple[Gateway, dict[str, str]], broker: object) -> None:
    gateway, env = two_children
    children = wait_until("two ingest processes", lambda: (
        c := ingest_children(gateway)) and len(c) == 2 and c)
    devices = []
    for i in range(6):
        secret = transit_here("devices", "add", f"BUS-{i}-V", "--vehicle", f"BUS-{i}",
                              env=env).stdout.strip().splitlines()[-1]
        devices.append((f"BUS-{i}-V", bytes.fromhex(secret)))
    peer = MqttPeer(env["TRANSIT_MQTT_URL"])
    try:
        t0 = now_ms() - 60_000
        publish_positions(peer, env["TRANSIT_TOPIC_PREFIX"], devices, 5, t0)
        wait_until("30 positions accepted on the gateway's /metrics", lambda: counts(
            gateway, "transit_positions").get("accepted") == 30)
        wait_until("30 positions written to the track", lambda: counts(
            gateway, "transit_track_positions").get("written") == 30, timeout=20)
        # One child killed: another takes its place, and positions still flow.
        victim = min(children)
        os.kill(victim, signal.SIGKILL)
        again = wait_until("the killed ingest process started again", lambda: (
            c := ingest_children(gateway)) and len(c) == 2 and victim not in c and c,
            timeout=30)
        assert victim not in again
        # The new child has subscribed once the gateway says so in its log; until then
        # the survivor takes the group's share, so nothing is lost meanwhile either.
        publish_positions(peer, env["TRANSIT_TOPIC_PREFIX"], devices, 5, t0, first=5)
        wait_until("60 positions accepted", lambda: counts(
            gateway, "transit_positions").get("accepted") == 60)
        # An older position received after a newer one is out of order, whichever
        # process takes it: as one process would judge it, not a late one of a race.
        # Each between two of the trail's, where it fits: a late one would be taken.
        device_id, secret = devices[0]
        peer.publish_many([(f"{env['TRANSIT_TOPIC_PREFIX']}/dev/{device_id}/pos", Position(
            device_id=device_id, vehicle_id="BUS-0", route_id="R1",
            ts=t0 + k * 5000 + 2500, lat_e6=-7_257_500 + 900 * k + 450,
            lon_e6=112_752_100).signed(secret).encode())
            for k in range(3, 7)], qos=1)  # the share group hands them to either process
        wait_until("4 older positions counted out of order", lambda: counts(
            gateway, "transit_positions").get("out_of_order") == 4)
        assert counts(gateway, "transit_positions").get("accepted") == 60
    finally:
        peer.close()


def test_children_end_with_the_gateway_even_killed(
        two_children: tuple[Gateway, dict[str, str]]) -> None:
    gateway, _env = two_children
    children = wait_until("two ingest processes", lambda: (
        c := ingest_children(gateway)) and len(c) == 2 and c)
    assert gateway.proc is not None
    gateway.proc.kill()  # no chance to stop them itself
    gateway.proc.wait(timeout=10)
    wait_until("the ingest processes gone with their gateway",
               lambda: not any(alive(p) for p in children), timeout=20)


def test_an_older_position_never_overwrites_a_newer_one() -> None:
    """Two ingest processes may store positions of one vehicle at once: whichever
    writes last, the newer position stays."""
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"t{uuid.uuid4().hex[:10]}/v1"
    store = TrackingStore(client, prefix)

    def record(ts: int, lat_e6: int) -> VehicleRecord:
        return VehicleRecord("BUS-1", "BUS-1-V", "R1", None, ts, lat_e6, 112_752_100, 500,
                             90, None, None)

    try:
        t = now_ms()
        newer = [record(t + 5000, -7_257_000), record(t + 10_000, -7_256_500)]
        older = [record(t, -7_257_500), record(t + 7000, -7_256_800)]
        assert store.save(newer, counts={"accepted": 2}) == 0
        assert store.save(older, counts={"accepted": 2}) == 1  # all of it too old
        last = store.previous(["BUS-1"])["BUS-1"]
        assert (last.ts, last.lat_e6) == (t + 10_000, -7_256_500)
        assert store.last(["BUS-1"])["BUS-1"] == last
        # The trail takes the older (late) positions by time, newest first: never out
        # of order, and no time twice.
        assert [p[0] for p in store.trail("BUS-1")] == [t + 10_000, t + 7000, t + 5000, t]
        store.save(older)
        assert [p[0] for p in store.trail("BUS-1")] == [t + 10_000, t + 7000, t + 5000, t]
        assert store.counts("positions") == {"accepted": 4}
        # A batch partly newer: its newer positions go on the trail and the hash.
        assert store.save([record(t + 9000, 1), record(t + 15_000, -7_256_000)]) == 0
        assert store.previous(["BUS-1"])["BUS-1"].ts == t + 15_000
        assert [p[0] for p in store.trail("BUS-1")] == [
            t + 15_000, t + 10_000, t + 9000, t + 7000, t + 5000, t]
    finally:
        keys = list(client.scan_iter(match=f"transit:{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_ingest_command_fails_in_one_line_on_bad_surroundings(
        base_env: dict[str, str], tmp_path: Path) -> None:
    # A database without the schema.
    env = dict(base_env, TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/empty.db")
    (tmp_path / "empty.db").touch()
    failed(transit("ingest", env=env, check=False), "db upgrade")
    # Redis away.
    transit_here("db", "upgrade", env=base_env)
    env = dict(base_env, TRANSIT_REDIS_URL="redis://127.0.0.1:1/0")
    failed(transit("ingest", env=env, check=False), "redis")
    # The broker away.
    env = dict(base_env, TRANSIT_MQTT_URL="mqtt://127.0.0.1:1", TRANSIT_BROKER_WAIT_S="1")
    started = time.monotonic()
    failed(transit("ingest", env=env, check=False), "broker")
    assert time.monotonic() - started < 60
