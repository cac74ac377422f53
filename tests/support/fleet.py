"""Several `transit gateway` processes on one database, each on a topic prefix of its own
(so that a test knows which gateway a message reached), with one registered validator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from ledger.adapters.db import Sessions, make_engine, session_factory
from testbed.broker import Broker
from testbed.gateway import Gateway, transit
from testbed.postgres import create_pg_database, drop_pg_database
from tests.support.clients import Http
from tests.support.commands import transit_here

DEVICE, VEHICLE = "SBY-0042-A", "SBY-0042"


@dataclass
class Fleet:
    """Gateways on one database; `env` runs commands against it (no topic prefix).

    The test's own reads share one engine, disposed by `close`: an engine per call would
    keep a pool of connections open for each until the database is dropped.
    """

    env: dict[str, str]
    gateways: dict[str, Gateway]  # topic prefix -> its gateway
    secret: bytes  # DEVICE's
    broker: Broker
    db_url: str
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.db_url)

    def transit(self, *args: str) -> str:
        return str(transit(*args, env=self.env).stdout)

    def sessions(self) -> Sessions:
        return session_factory(self.engine)

    def close(self) -> None:
        """Close the test's connections to the database."""
        self.engine.dispose()


@contextmanager
def running_fleet(database: str, broker: Broker, tmp_path: Path, secret_key: str | None,
                  ) -> Iterator[Fleet]:
    """Two gateways on a fresh PostgreSQL database (`database="postgresql"`), or one on
    SQLite (one host: the demo's case); DEVICE registered on VEHICLE."""
    pg = database == "postgresql"
    url = create_pg_database() if pg else f"sqlite:///{tmp_path}/transit.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=url, TRANSIT_MQTT_URL=broker.url,
               TRANSIT_AUTH_FAILURES="100000/60")
    if secret_key is not None:
        env["TRANSIT_SECRET_KEY"] = secret_key
    gateways: dict[str, Gateway] = {}
    fleet: Fleet | None = None
    try:
        transit_here("db", "upgrade", env=env)
        secret = bytes.fromhex(transit_here("devices", "add", DEVICE, "--vehicle", VEHICLE,
                                            env=env).stdout.strip().splitlines()[-1])
        for n in range(2 if pg else 1):
            prefix = f"t{uuid.uuid4().hex[:10]}/v1"
            gateways[prefix] = Gateway(
                dict(env, TRANSIT_TOPIC_PREFIX=prefix,
                     TRANSIT_GATEWAY_ID=f"gw-{n}-{uuid.uuid4().hex[:6]}"),
                tmp_path / f"gateway-{n}.log").start()
        fleet = Fleet(env, gateways, secret, broker, url)
        yield fleet
    finally:
        for gw in gateways.values():
            gw.stop()
        if fleet is not None:
            fleet.close()
        logs = {log.name: log.read_text() for log in sorted(tmp_path.glob("gateway-*.log"))}
        for name, text in logs.items():
            print(f"--- {name} ---\n{text[-3000:]}")  # shown by pytest when a test fails
        if pg:
            drop_pg_database(url)
        for text in logs.values():
            assert "Traceback (most recent call last)" not in text, text[-4000:]


def positions_total(gateway: Gateway) -> dict[str, float]:
    """The gateway's count of positions by outcome (`transit_positions_total`)."""
    status, body = Http(gateway.base_url).get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {s.labels["outcome"]: s.value
            for family in text_string_to_metric_families(text)
            if family.name == "transit_positions" for s in family.samples
            if s.name == "transit_positions_total"}
