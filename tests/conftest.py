"""Fixtures that start real services: Mosquitto (private, project config), PostgreSQL,
SQLite, and `transit gateway` as a subprocess."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.broker import Broker
from testbed.gateway import Gateway, transit
from testbed.postgres import create_pg_database, drop_pg_database
from tests.support.clients import Http, MqttPeer
from tests.support.commands import transit_here


def gateway_test_settings() -> dict[str, str]:
    """TRANSIT_ settings every gateway the tests start gets, from the tests' own
    environment: `TRANSIT_TEST_INGEST_PROCESSES=2 pytest ...` runs each with two ingest
    processes (fare_gateway.ingest_workers); a test that sets the variable itself wins."""
    found = {}
    if os.environ.get("TRANSIT_TEST_INGEST_PROCESSES"):
        found["TRANSIT_INGEST_PROCESSES"] = os.environ["TRANSIT_TEST_INGEST_PROCESSES"]
    return found


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking `db_url` runs on PostgreSQL, and also on the embedded SQLite when it
    is marked `sqlite_too`: where what it checks depends on the database (money, the
    ledger, settlement, the tap path, the device-change polling SQLite gateways use). A
    test of HTTP input, devices, delivery or tracking checks code that is the same on both,
    and would only pay for a second gateway; the demo's end-to-end test runs the whole
    system on SQLite."""
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "db_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # the test chose its databases itself
    if "db_url" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("sqlite_too") is not None
        metafunc.parametrize("db_url", ["postgresql", "sqlite"] if both else ["postgresql"],
                             indirect=True)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The test's database: a fresh PostgreSQL one, or an SQLite file (`sqlite_too`)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/transit.db"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.fixture
def base_env(db_url: str, broker: Broker) -> dict[str, str]:
    """Environment for `transit` commands: this test's database, the private broker,
    and a topic prefix of its own so tests never see each other's messages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=db_url, TRANSIT_MQTT_URL=broker.url,
               TRANSIT_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}/v1",
               TRANSIT_GATEWAY_ID=f"gw-{uuid.uuid4().hex[:8]}",
               # The role tests send many bad tokens on purpose; the limit has its own test.
               TRANSIT_AUTH_FAILURES="100000/60",
               # The tap tests replay fixed days of November 2025 (their fares, service
               # days and settlements are worked out by hand); the 7-day window has its
               # own tests (tests/integration/fare_gateway/test_tap_rules.py).
               TRANSIT_TAP_MAX_AGE_DAYS="3650", **gateway_test_settings())
    return env


@dataclass
class System:
    """A migrated database, a registered validator and a running gateway."""

    env: dict[str, str]
    gateway: Gateway
    device_id: str
    secret: bytes
    broker: Broker

    @property
    def prefix(self) -> str:
        return self.env["TRANSIT_TOPIC_PREFIX"]

    @property
    def http(self) -> Http:
        return Http(self.gateway.base_url)

    def tap_topic(self, device_id: str | None = None) -> str:
        return f"{self.prefix}/dev/{device_id or self.device_id}/tap"

    def receipt_topic(self, device_id: str | None = None) -> str:
        return f"{self.prefix}/dev/{device_id or self.device_id}/receipt"

    def transit(self, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
        return transit(*args, env=self.env, check=check)

    def issue(self, card: str, balance: int = 0, category: str = "regular") -> None:
        transit_here("cards", "issue", card, "--category", category, env=self.env)
        if balance:
            transit_here("cards", "topup", card, str(balance), "--reference", f"init-{card}",
                         env=self.env)

    def token(self, role: str) -> str:
        return str(transit_here("tokens", "create", "--role", role, env=self.env)
                   .stdout.strip().splitlines()[-1])

    def add_device(self, device_id: str, vehicle_id: str) -> bytes:
        """Register another validator, riding on `vehicle_id`; returns its secret."""
        return bytes.fromhex(transit_here("devices", "add", device_id, "--vehicle",
                                          vehicle_id, env=self.env).stdout.strip()
                             .splitlines()[-1])

    def peer(self) -> MqttPeer:
        return MqttPeer(self.broker.url)

    def engine(self):  # type: ignore[no-untyped-def]
        from ledger.adapters.db import make_engine
        return make_engine(self.env["TRANSIT_DATABASE_URL"])


@pytest.fixture
def system(base_env: dict[str, str], broker: Broker, tmp_path: Path) -> Iterator[System]:
    # Set-up, in this process: the commands themselves have their own tests.
    transit_here("db", "upgrade", env=base_env)
    device_id = "SBY-0042-A"
    secret_hex = transit_here("devices", "add", device_id, "--vehicle", "SBY-0042",
                              env=base_env).stdout.strip().splitlines()[-1]
    gw = Gateway(base_env, tmp_path / "gateway.log").start()
    sys_ = System(base_env, gw, device_id, bytes.fromhex(secret_hex), broker)
    yield sys_
    gw.stop()
    print((tmp_path / "gateway.log").read_text()[-6000:])  # shown by pytest when a test fails
    assert not (tmp_path / "gateway.log").read_text().count("Traceback (most recent call last)"), \
        (tmp_path / "gateway.log").read_text()[-4000:]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report, at the end of the run, what each fault test counted (issue: faults)."""
    lines = sorted(str(value) for outcome in ("passed", "failed")
                   for report in terminalreporter.stats.get(outcome, [])
                   if getattr(report, "when", "") == "call"
                   for key, value in getattr(report, "user_properties", [])
                   if key == "fault_summary")
    if lines:
        terminalreporter.section("faults under a steady stream of taps")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long tests first, so that parallel workers do not end waiting on one of them."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1)
