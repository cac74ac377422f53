"""Each server the harness starts moves to a fresh port when its own turns out taken.

A port is taken here the way a stranger would take it: a listening socket that holds it
between the moment the harness picked it and the moment the server binds it.
"""

from __future__ import annotations

import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from testbed.broker import Broker
from testbed.gateway import Gateway, transit
from testbed.pcsc import PrivatePcscd
from testbed.ports import PortInUse, free_port
from tests.support.clients import MqttPeer
from tests.support.faults import RadioLink
from tests.support.postgres import PrivatePostgres


@contextmanager
def held(port: int) -> Iterator[socket.socket]:
    """Someone else listens on `port` (every address) for as long as this lasts."""
    with socket.create_server(("0.0.0.0", port)) as holder:
        yield holder


def round_trip(broker_url: str) -> None:
    """A message published on the broker comes back to its subscriber."""
    peer = MqttPeer(broker_url)
    try:
        peer.subscribe("harness/check")
        peer.publish("harness/check", b"here")
        peer.wait_for(lambda msgs: ("harness/check", b"here") in msgs, timeout=10)
    finally:
        peer.close()


def test_a_broker_moves_off_a_taken_port_and_keeps_its_new_one(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "mosquitto")
    taken = broker.port
    with held(taken):
        broker.start()
    try:
        assert broker.port != taken
        round_trip(broker.url)
        broker.restart()  # its clients know it by this port now
        assert broker.port != taken
        round_trip(broker.url)
    finally:
        broker.stop()


def test_a_broker_told_its_port_does_not_move(tmp_path: Path) -> None:
    port = free_port()
    with held(port), pytest.raises(PortInUse):
        Broker(tmp_path / "mosquitto", port=port).start()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_gateway_moves_off_a_taken_port(base_env: dict[str, str], tmp_path: Path) -> None:
    transit("db", "upgrade", env=base_env)
    gateway = Gateway(base_env, tmp_path / "gateway.log")
    taken = gateway.http_port
    try:
        with held(taken):
            gateway.start()
        assert gateway.http_port != taken
        with urllib.request.urlopen(f"{gateway.base_url}/healthz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        gateway.stop()


def test_a_private_postgresql_moves_off_a_taken_port() -> None:
    cluster = PrivatePostgres()
    taken = cluster.port
    try:
        with held(taken):
            cluster.start()
        assert cluster.port != taken
        with psycopg.connect(cluster.url.replace("+psycopg", ""), connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.close()


def test_a_radio_link_moves_off_a_taken_port(broker: Broker) -> None:
    link = RadioLink(broker.port)
    taken = link.port
    with held(taken):
        link.start()
    try:
        assert link.port != taken
        round_trip(link.url)
    finally:
        link.close()


def test_a_private_pcscd_moves_its_reader_off_a_taken_port() -> None:
    assert PrivatePcscd.possible(), "a private pcscd needs root, unshare, pcscd and vpcd"
    pcscd = PrivatePcscd(Path(tempfile.mkdtemp(prefix="transit-pcscd-")))
    taken = pcscd.vpcd_port
    try:
        with held(taken):
            pcscd.start()
        assert pcscd.vpcd_port != taken
        assert any(name.startswith("Virtual PCD") for name in pcscd.readers), pcscd.readers
        pcscd.restart()  # the agents know the reader by this port now
        assert pcscd.vpcd_port != taken
    finally:
        pcscd.stop()
