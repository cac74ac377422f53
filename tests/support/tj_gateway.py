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
from tracking.schedule_load import read_schedule


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

    The gateway reads the schedule on demand and again a second after finding it
    empty: positions sent before it has read the import would run on no schedule."""
    seen = f"/api/v1/routes/{first_route(feed)}/headways"
    ops = system.token("ops")
    wait_until(lambda: system.http.get(seen, token=ops)[0] == 200, 30,
               "the gateway reading the imported schedule")


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
