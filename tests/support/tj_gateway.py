"""A gateway on the real Transjakarta feed (or a copy of it), for one module's tests of
what the schedule drives: trip assignment, predictions, occupancy, headways, the
GTFS-Realtime feeds. On SQLite: those read the same rows on either database, and SQLite
migrates and imports the network in a third of PostgreSQL's time."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from sqlalchemy.orm import Session

from testbed.broker import Broker
from testbed.environment import REDIS_URL, transjakarta_feed
from tests.conftest import System
from tests.support.commands import transit_here
from tests.support.faults import wait_until
from tests.support.riders import rider_system
from tracking.schedule import Schedule
from tracking.schedule_load import feed_stamp, read_schedule
from tracking.store import TrackingStore


@contextmanager
def tj_gateway(broker: Broker, folder: Path, feed: Path | None = None, **settings: str
               ) -> Iterator[System]:
    """A gateway with `feed` (the Transjakarta feed when None) imported; its tracking
    keys removed from Redis afterwards. `settings` are more TRANSIT_ variables."""
    with rider_system(f"sqlite:///{folder}/transit.db", broker, folder,
                      **settings) as system:
        path = feed or transjakarta_feed()
        transit_here("gtfs", "import", str(path), env=system.env)
        wait_for_schedule(system, path)
        try:
            yield system
        finally:
            forget_keys(system)


def wait_for_schedule(system: System, feed: Path) -> None:
    """Wait until the system's gateway has read the schedule of `feed`, just imported.

    Each process of the gateway (itself and its ingest processes) finds a new import
    within 2 s of the others, and says which one it serves in Redis
    (`TrackingStore.schedule_stamps`): positions sent before the ingest process that
    takes them has read the import would run on no schedule."""
    seen = f"/api/v1/routes/{first_route(feed)}/headways"
    ops = system.token("ops")
    wait_until(lambda: system.http.get(seen, token=ops)[0] == 200, 30,
               "the gateway reading the imported schedule")
    engine = system.engine()
    try:
        with Session(engine) as session:
            stamp = feed_stamp(session)
    finally:
        engine.dispose()
    children = int(system.env.get("TRANSIT_INGEST_PROCESSES") or 0)
    store = TrackingStore(redis.Redis.from_url(system.env.get("TRANSIT_REDIS_URL", REDIS_URL)),
                          system.prefix)

    def everyone() -> bool:
        served = store.schedule_stamps(system.env["TRANSIT_GATEWAY_ID"])
        ingest = [p for p in served if p.startswith("ingest-")]
        return len(ingest) >= children and set(served.values()) == {stamp}

    try:
        wait_until(everyone, 30, "every process of the gateway serving the import")
    finally:
        store.redis.close()


def first_route(feed: Path) -> str:
    """The first route id of a GTFS zip."""
    with zipfile.ZipFile(feed) as z, z.open("routes.txt") as f:
        return next(csv.DictReader(io.TextIOWrapper(f, "utf-8-sig")))["route_id"]


def forget_keys(system: System) -> None:
    """Remove the system's keys from Redis (they live under its own topic prefix)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"transit:{system.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def publish(system: System, items: list[tuple[str, bytes]]) -> None:
    """Publish (topic, payload) pairs as the system's devices would, at QoS 1."""
    peer = system.peer()
    try:
        peer.publish_many(items, qos=1)
    finally:
        peer.close()


def imported_schedule(system: System) -> Schedule:
    """The schedule as the system's gateway reads it from its database."""
    engine = system.engine()
    try:
        with Session(engine) as session:
            return read_schedule(session)
    finally:
        engine.dispose()
