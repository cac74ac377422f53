"""Broker access control: a real Mosquitto started with the configuration that
`transit broker config` generates from the registered devices (issue 8, point 3)."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from fare_gateway.broker_config import device_mqtt_password
from testbed.broker import run_mosquitto
from testbed.gateway import Gateway, transit
from testbed.ports import free_port, retry_on_taken_port
from tests.support.clients import make_tap
from tests.support.fare_clock import full_fare_time
from transit.wire import Receipt

CARD = "04A1B2C3D4E5F6"
DEV_A, DEV_B = "SBY-0042-A", "SBY-0077-B"


@dataclass
class Setup:
    env: dict[str, str]
    out: Path
    port: int
    tls_port: int
    secrets: dict[str, bytes]
    gateway_password: str
    tmp: Path

    @property
    def prefix(self) -> str:
        return self.env["TRANSIT_TOPIC_PREFIX"]

    def topic(self, device_id: str, leaf: str) -> str:
        return f"{self.prefix}/dev/{device_id}/{leaf}"

    def password(self, device_id: str) -> str:
        return device_mqtt_password(self.secrets[device_id])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    if shutil.which("mosquitto") is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    tmp = tmp_path_factory.mktemp("broker_acl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=f"sqlite:///{tmp}/transit.db",
               TRANSIT_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}/v1",
               TRANSIT_GATEWAY_ID=f"gw-{uuid.uuid4().hex[:8]}")
    transit("db", "upgrade", env=env)
    secrets = {d: bytes.fromhex(transit("devices", "add", d, "--vehicle", d[:8],
                                        env=env).stdout.strip())
               for d in (DEV_A, DEV_B)}
    out = tmp / "broker"
    started: dict[str, Any] = {}

    def configure_and_start() -> None:  # on fresh ports each time, should one be taken
        port, tls_port = free_port(), free_port()
        transit("broker", "config", "--out", str(out), "--generate-tls", "--port", str(port),
                "--tls-port", str(tls_port), env=env)
        for name in ("passwords", "acl", "mosquitto.conf", "gateway.password", "ca.crt",
                     "server.crt", "server.key"):
            assert (out / name).exists(), name
        conf = (out / "mosquitto.conf").read_text()
        assert "allow_anonymous false" in conf and "max_queued_messages 0" in conf
        run_conf = tmp / "run.conf"
        extra = [f"log_dest file {tmp}/mosquitto.log"]
        if os.geteuid() == 0:
            extra.append("user root")  # stay root: the workdir is under a root-only tmp folder
        run_conf.write_text(conf + "\n".join(extra) + "\n")
        started.update(port=port, tls_port=tls_port,
                       proc=run_mosquitto(run_conf, tmp / "mosquitto.log", [port, tls_port]))

    retry_on_taken_port(configure_and_start, move=lambda: None)
    proc, port, tls_port = started["proc"], started["port"], started["tls_port"]
    try:
        yield Setup(env, out, port, tls_port, secrets,
                    (out / "gateway.password").read_text().strip(), tmp)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log = tmp / "mosquitto.log"
        print(log.read_text()[-4000:] if log.exists() else "no mosquitto log")


class Client:
    """A paho client that connects with a username and password, plain or over TLS."""

    def __init__(self, s: Setup, username: str | None, password: str | None, *,
                 tls: bool = False, v5: bool = True) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"c-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=str(s.out / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
        self.messages: list[tuple[str, bytes]] = []
        self._cv = threading.Condition()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.reason: Any = None
        self.granted: list[Any] = []
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", s.tls_port if tls else s.port, keepalive=30)
        self.client.loop_start()
        self._connected.wait(10)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        self.reason = reason
        self._connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, _m: Any, reasons: Any, _p: Any = None) -> None:
        self.granted = list(reasons)
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cv:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cv.notify_all()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def subscribe(self, *topics: str) -> None:
        self._subscribed.clear()
        self.client.subscribe([(t, 1) for t in topics])
        assert self._subscribed.wait(10), f"no SUBACK for {topics}"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=10)

    def attempt(self, topic: str, payload: bytes) -> None:
        """A publish the broker may refuse: MQTT 5 gets PUBACK "not authorized" (135) and
        Mosquitto 2.0.11 then drops the connection; 3.1.1 is dropped silently."""
        info = self.client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout=5)
        except (RuntimeError, ValueError):
            pass

    def wait_for(self, topic: str, payload: bytes | None = None,
                 timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for t, p in self.messages:
                    if t == topic and (payload is None or p == payload):
                        return p
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"nothing on {topic}; got {self.messages}"
                self._cv.wait(remaining)

    def topics(self) -> set[str]:
        with self._cv:
            return {t for t, _ in self.messages}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def gateway_client(s: Setup, **kw: Any) -> Client:
    c = Client(s, "gateway", s.gateway_password, **kw)
    assert c.accepted, c.reason
    return c


def device_client(s: Setup, device_id: str, **kw: Any) -> Client:
    c = Client(s, device_id, s.password(device_id), **kw)
    assert c.accepted, c.reason
    return c


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_a_device_publishes_only_on_its_own_topics(setup: Setup, v5: bool) -> None:
    gw = gateway_client(setup)
    try:
        gw.subscribe(f"{setup.prefix}/#")
        marker = uuid.uuid4().hex.encode()
        # Forged first (each on a client of its own: a refused publish may cost the
        # connection), then genuine ones: once those arrive, the forged had their chance.
        for topic in (setup.topic(DEV_B, "tap"), setup.topic(DEV_B, "status"),
                      setup.topic(DEV_B, "pos"), setup.topic(DEV_A, "receipt"),
                      f"{setup.prefix}/net/denylist", f"{setup.prefix}/dev/{DEV_A}/other"):
            forger = device_client(setup, DEV_A, v5=v5)
            forger.attempt(topic, b"forged " + marker)
            forger.close()
        a = device_client(setup, DEV_A, v5=v5)
        try:
            for leaf in ("tap", "pos", "status"):
                a.publish(setup.topic(DEV_A, leaf), b"own " + marker)
            for leaf in ("tap", "pos", "status"):
                gw.wait_for(setup.topic(DEV_A, leaf), b"own " + marker)
        finally:
            a.close()
        # Every forgery was handled (answered or its connection dropped) before A's own
        # messages were sent, and the broker delivers to the gateway in the order it
        # handles messages: a forgery let through would have arrived before them.
        with gw._cv:
            assert not [(t, p) for t, p in gw.messages if p.startswith(b"forged")], gw.messages
    finally:
        gw.close()


def test_a_device_reads_only_its_own_receipts_and_the_deny_list(setup: Setup) -> None:
    gw = gateway_client(setup)
    a = device_client(setup, DEV_A)
    b = device_client(setup, DEV_B)
    try:
        marker = uuid.uuid4().hex.encode()
        a.subscribe(setup.topic(DEV_B, "receipt"))
        a.subscribe(f"{setup.prefix}/#")  # a wildcard does not widen what A may read
        a.subscribe(setup.topic(DEV_A, "receipt"), f"{setup.prefix}/net/denylist",
                    f"{setup.prefix}/net/denylist/changes")
        b.subscribe(setup.topic(DEV_B, "receipt"))
        gw.publish(setup.topic(DEV_B, "receipt"), b"for B " + marker)
        gw.publish(setup.topic(DEV_A, "receipt"), b"for A " + marker)
        gw.publish(f"{setup.prefix}/net/denylist", b"list " + marker, retain=True)
        gw.publish(f"{setup.prefix}/net/denylist/changes", b"changes " + marker)
        b.wait_for(setup.topic(DEV_B, "receipt"), b"for B " + marker)
        a.wait_for(setup.topic(DEV_A, "receipt"), b"for A " + marker)
        a.wait_for(f"{setup.prefix}/net/denylist", b"list " + marker)
        a.wait_for(f"{setup.prefix}/net/denylist/changes", b"changes " + marker)
        # B's own status (retained) is not readable by A either.
        b.publish(setup.topic(DEV_B, "status"), b"B online", retain=True)
        # The broker handled B's status before this later receipt for A, and delivers to A
        # in that order: once it is in, B's status would have been too.
        gw.publish(setup.topic(DEV_A, "receipt"), b"after B's status " + marker)
        a.wait_for(setup.topic(DEV_A, "receipt"), b"after B's status " + marker)
        assert a.topics() <= {setup.topic(DEV_A, "receipt"), f"{setup.prefix}/net/denylist",
                              f"{setup.prefix}/net/denylist/changes"}, a.topics()
        # A fresh subscriber for A gets the retained deny list, not B's retained status.
        a2 = device_client(setup, DEV_A)
        try:
            a2.subscribe(f"{setup.prefix}/#")
            a2.wait_for(f"{setup.prefix}/net/denylist", b"list " + marker)
            # The retained messages go out when the subscription is made, before anything
            # published after it.
            gw.publish(setup.topic(DEV_A, "receipt"), b"after the retained " + marker)
            a2.wait_for(setup.topic(DEV_A, "receipt"), b"after the retained " + marker)
            assert setup.topic(DEV_B, "status") not in a2.topics()
        finally:
            a2.close()
    finally:
        a.close()
        b.close()
        gw.close()


def test_the_gateway_may_use_a_shared_subscription(setup: Setup) -> None:
    gw = gateway_client(setup)
    a = device_client(setup, DEV_A)
    try:
        gw.subscribe(f"$share/gw/{setup.prefix}/dev/+/tap")
        marker = uuid.uuid4().hex.encode()
        a.publish(setup.topic(DEV_A, "tap"), marker)
        gw.wait_for(setup.topic(DEV_A, "tap"), marker)
    finally:
        a.close()
        gw.close()


@pytest.mark.parametrize("who", ["unknown", "wrong_password", "other_device_password",
                                 "anonymous", "gateway_wrong_password"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_strangers_cannot_connect(setup: Setup, who: str, tls: bool) -> None:
    username, password = {
        "unknown": ("SBY-9999-Z", "0" * 64),
        "wrong_password": (DEV_A, "0" * 64),
        "other_device_password": (DEV_A, setup.password(DEV_B)),
        "anonymous": (None, None),
        "gateway_wrong_password": ("gateway", "guess"),
    }[who]
    c = Client(setup, username, password, tls=tls)
    try:
        assert not c.accepted, f"{who} connected: {c.reason}"
    finally:
        c.close()


def test_a_tap_over_tls_is_charged_and_receipted(setup: Setup) -> None:
    env = dict(setup.env,
               TRANSIT_MQTT_URL=(f"mqtts://gateway:{setup.gateway_password}"
                                 f"@127.0.0.1:{setup.tls_port}"),
               TRANSIT_MQTT_CA=str(setup.out / "ca.crt"))
    transit("cards", "issue", CARD, "--category", "regular", env=env)
    transit("cards", "topup", CARD, "50000", "--reference", f"init-{CARD}", env=env)
    gw = Gateway(env, setup.tmp / "gateway.log").start()
    a = device_client(setup, DEV_A, tls=True)
    try:
        a.subscribe(setup.topic(DEV_A, "receipt"))
        tap = make_tap(setup.secrets[DEV_A], DEV_A, 1, CARD, ts=full_fare_time())
        a.publish(setup.topic(DEV_A, "tap"), tap.encode())
        receipt = Receipt.parse(a.wait_for(setup.topic(DEV_A, "receipt"), timeout=20))
        assert (receipt.status, receipt.fare, receipt.balance) == ("charged", 5000, 45_000)
        assert receipt.verify(setup.secrets[DEV_A])
    finally:
        a.close()
        gw.stop()
        log = (setup.tmp / "gateway.log").read_text()
        print(log[-4000:])
    assert "Traceback (most recent call last)" not in log, log[-4000:]
