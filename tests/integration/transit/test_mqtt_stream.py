"""The lean MQTT client (`transit.mqtt_stream`) against a real Mosquitto: both protocol
versions, QoS 0 and 1, acknowledgement after the consumer's commit, keepalive,
reconnection, and a broker that sends what it must not."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.broker import Broker
from tests.support.clients import MqttPeer
from tests.support.faults import wait_until
from transit.mqtt_stream import Received, StreamClient
from transit.settings import MqttEndpoint

PROTOCOLS = pytest.mark.parametrize("protocol", ["5", "3.1.1"])


class Inbox:
    """What a client received, batch by batch."""

    def __init__(self) -> None:
        self.batches: list[list[Received]] = []
        self.lock = threading.Lock()

    def __call__(self, messages: list[Received]) -> None:
        with self.lock:
            self.batches.append(messages)

    @property
    def messages(self) -> list[Received]:
        """Everything but the probes `subscribed` sent."""
        with self.lock:
            return [m for b in self.batches for m in b if m[1] != b"probe"]


def endpoint(broker: Broker, protocol: str) -> MqttEndpoint:
    return MqttEndpoint("127.0.0.1", broker.port, False, protocol=protocol)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "mosquitto").start()
    yield b
    b.stop()


def client(broker: Broker, protocol: str, inbox: Inbox, topic: str, **kw: object
           ) -> StreamClient:
    c = StreamClient(endpoint(broker, protocol), kw.pop("client_id", None)  # type: ignore[arg-type]
                     or f"t-{uuid.uuid4().hex[:8]}", subscriptions=[(topic, 1)],
                     on_messages=inbox, **kw)  # type: ignore[arg-type]
    c.start()
    assert c.wait_connected(10)
    return c


def subscribed(c: StreamClient, peer: MqttPeer, topic: str, inbox: Inbox) -> None:
    """Publish probes until one arrives: the SUBSCRIBE has taken effect."""
    def probe() -> bool:
        peer.publish(topic, b"probe", qos=0)
        with inbox.lock:
            return any(m[1] == b"probe" for b in inbox.batches for m in b)
    wait_until(probe, 10, "the subscription")


@PROTOCOLS
def test_qos_0_and_1_arrive_in_batches_with_their_topics(broker: Broker, protocol: str
                                                          ) -> None:
    topic = f"t/{uuid.uuid4().hex[:6]}"
    inbox = Inbox()
    c = client(broker, protocol, inbox, f"{topic}/+")
    peer = MqttPeer(broker.url, v5=protocol == "5")
    try:
        subscribed(c, peer, f"{topic}/x", inbox)
        items = [(f"{topic}/d{i % 7}", b"%d" % i + b"." * 220) for i in range(3000)]
        peer.publish_many(items[:1500], qos=1)
        peer.publish_many(items[1500:], qos=0)
        wait_until(lambda: len(inbox.messages) >= 3000, 30, "3,000 messages")
        got = inbox.messages
        assert sorted((t, p) for t, p, *_ in got) == sorted(items)
        assert {q for _t, _p, q, _i, _r in got} == {0, 1}
        assert all(i > 0 for _t, _p, q, i, _r in got if q == 1)
        assert len(inbox.batches) < 2000  # many messages per read
    finally:
        peer.close()
        c.stop()


@PROTOCOLS
def test_an_unacknowledged_message_comes_again_on_the_persistent_session(
        broker: Broker, protocol: str) -> None:
    topic = f"t/{uuid.uuid4().hex[:6]}"
    client_id = f"held-{uuid.uuid4().hex[:8]}"
    peer = MqttPeer(broker.url, v5=protocol == "5")
    persistent = dict(clean=False, session_expiry_s=600, manual_ack=True,
                      client_id=client_id, receive_maximum=10)
    try:
        inbox = Inbox()
        c = client(broker, protocol, inbox, topic, **persistent)
        subscribed(c, peer, topic, inbox)
        peer.publish(topic, b"tap-1", qos=1)
        wait_until(lambda: len(inbox.messages) == 1, 10, "the message")
        c.stop()  # never acknowledged

        again = Inbox()
        c = client(broker, protocol, again, topic, **persistent)
        wait_until(lambda: [m[1] for m in again.messages] == [b"tap-1"], 10, "redelivery")
        _t, _p, qos, packet_id, _r = again.messages[0]
        assert qos == 1
        assert c.ack(packet_id, c.generation)
        peer.publish(topic, b"marker", qos=1)
        wait_until(lambda: len(again.messages) == 2, 10, "the marker")
        assert c.ack(again.messages[1][3])
        c.stop()

        third = Inbox()
        c = client(broker, protocol, third, topic, **persistent)
        peer.publish(topic, b"after", qos=1)
        wait_until(lambda: len(third.messages) >= 1, 10, "the next message")
        assert [m[1] for m in third.messages] == [b"after"]  # acked ones are gone
        c.ack(third.messages[0][3])
        c.stop()
    finally:
        peer.close()


def test_a_killed_client_gets_its_unacknowledged_messages_again(broker: Broker) -> None:
    """No DISCONNECT at all: the socket just dies, as when the process is killed."""
    topic = f"t/{uuid.uuid4().hex[:6]}"
    persistent = dict(clean=False, session_expiry_s=600, manual_ack=True,
                      client_id=f"killed-{uuid.uuid4().hex[:8]}")
    peer = MqttPeer(broker.url)
    try:
        inbox = Inbox()
        c = client(broker, "5", inbox, topic, **persistent)
        subscribed(c, peer, topic, inbox)
        peer.publish(topic, b"tap-1", qos=1)
        wait_until(lambda: len(inbox.messages) == 1, 10, "the message")
        c._stop.set()
        c._close(c._sock)  # the process dies: no DISCONNECT, no PUBACK
        c.stop()
        again = Inbox()
        c = client(broker, "5", again, topic, **persistent)
        wait_until(lambda: [m[1] for m in again.messages] == [b"tap-1"], 10, "redelivery")
        c.ack(again.messages[0][3])
        c.stop()
    finally:
        peer.close()


def test_keepalive_pings_keep_an_idle_connection(broker: Broker) -> None:
    inbox = Inbox()
    c = client(broker, "5", inbox, "t/idle", keepalive=1)
    try:
        # Mosquitto closes a client silent for 1.5 keepalives: 3 s holds several.
        wait_until(lambda: c.pings >= 3, 10, "three PINGREQs")
        assert c.is_connected() and c.generation == 1
    finally:
        c.stop()


@PROTOCOLS
def test_it_reconnects_and_resubscribes_after_the_broker_restarts(
        own_broker: Broker, protocol: str) -> None:
    inbox = Inbox()
    lost: list[str] = []
    c = client(own_broker, protocol, inbox, "t/r", on_disconnect=lost.append)
    try:
        own_broker.restart()
        wait_until(lambda: c.generation == 2 and c.is_connected(), 20, "a reconnection")
        assert lost
        peer = MqttPeer(own_broker.url, v5=protocol == "5")
        try:
            subscribed(c, peer, "t/r", inbox)
            peer.publish("t/r", b"after restart", qos=1)
            wait_until(lambda: [m[1] for m in inbox.messages] == [b"after restart"], 10,
                       "a message after the restart")
        finally:
            peer.close()
    finally:
        c.stop()


def test_publish_qos_1_waits_for_the_puback_and_fails_without_a_broker(broker: Broker
                                                                        ) -> None:
    inbox = Inbox()
    c = client(broker, "5", inbox, "t/pub/#")
    peer = MqttPeer(broker.url)
    try:
        peer.subscribe("t/pub/out", qos=1)
        info = c.publish("t/pub/out", b"receipt", qos=1)
        assert info.wait_for_publish(10) and info.is_published()
        peer.wait_for(lambda ms: (("t/pub/out", b"receipt") in ms), 10)
        retained = c.publish("t/pub/retained", b"list", qos=1, retain=True)
        assert retained.wait_for_publish(10)
    finally:
        peer.close()
        c.stop()
    with pytest.raises(RuntimeError, match="no connection"):
        c.publish("t/pub/out", b"late", qos=1).wait_for_publish(1)
    assert not c.is_connected()


@PROTOCOLS
def test_an_oversized_packet_closes_the_connection_and_is_logged(
        broker: Broker, protocol: str, caplog: pytest.LogCaptureFixture) -> None:
    topic = f"t/{uuid.uuid4().hex[:6]}"
    inbox = Inbox()
    c = client(broker, protocol, inbox, topic, max_packet=1000)
    peer = MqttPeer(broker.url)
    try:
        subscribed(c, peer, topic, inbox)
        with caplog.at_level(logging.ERROR, "transit.mqtt_stream"):
            peer.publish(topic, b"x" * 5000, qos=0)
            if protocol == "3.1.1":  # 3.1.1 cannot tell the broker its limit
                wait_until(lambda: "over the limit" in caplog.text, 10, "the log line")
                wait_until(lambda: c.generation == 2 and c.is_connected(), 10, "reconnect")
        # MQTT 5 told the broker its Maximum Packet Size: the broker keeps it back.
        subscribed(c, peer, topic, inbox)
        peer.publish(topic, b"small", qos=1)
        wait_until(lambda: [m[1] for m in inbox.messages] == [b"small"], 10, "the next one")
    finally:
        peer.close()
        c.stop()


class BadBroker:
    """A TCP server that answers CONNECT with CONNACK and then sends `garbage`."""

    def __init__(self, garbage: bytes) -> None:
        self.garbage = garbage
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.recv(4096)
            conn.sendall(b"\x20\x03\x00\x00\x00" + self.garbage)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        while True:
            try:
                if not conn.recv(4096):
                    break
            except OSError:
                break
        conn.close()


@pytest.mark.parametrize("garbage", [
    b"\x36\x05\x00\x01t\x00\x01",              # PUBLISH at QoS 3
    b"\x30\x05\x00\x09toolong",                # topic longer than the packet
    b"\x30\xff\xff\xff\xff\x7f",               # remaining length of five bytes
    b"\x30\x04\x00\x02\xff\xfe",               # topic not UTF-8
    b"\x10\x00",                               # a CONNECT from the broker
    b"\x30\x01\x00",                           # a PUBLISH too short for its topic length
], ids=["qos3", "topic-overrun", "length", "utf8", "connect", "short-publish"])
def test_a_malformed_packet_closes_the_connection_cleanly(
        garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    bad = BadBroker(b"\x30\x09\x00\x01a\x00hello" + garbage)
    inbox = Inbox()
    c = StreamClient(MqttEndpoint("127.0.0.1", bad.port, False, protocol="5"), "bad",
                     subscriptions=[("a", 0)], on_messages=inbox)
    try:
        with caplog.at_level(logging.ERROR, "transit.mqtt_stream"):
            c.start()
            wait_until(lambda: bad.connections >= 2, 10, "a reconnection")
        assert "closing the connection" in caplog.text
        assert ("a", b"hello", 0, 0, False) in inbox.messages  # what came before is kept
        assert c._thread is not None and c._thread.is_alive()
    finally:
        c.stop()
        bad.server.close()


def test_a_refused_login_is_logged_and_retried(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    b = Broker(tmp_path / "mosquitto", extra_conf="").start()
    b.stop()
    conf = (tmp_path / "mosquitto" / "mosquitto.conf")
    conf.write_text(conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    from testbed.broker import run_mosquitto
    proc = run_mosquitto(conf, b.log_path, [b.port])
    inbox = Inbox()
    c = StreamClient(MqttEndpoint("127.0.0.1", b.port, False, "nobody", "wrong", "3.1.1"),
                     "refused", subscriptions=[("a", 0)], on_messages=inbox)
    try:
        with caplog.at_level(logging.ERROR, "transit.mqtt_stream"):
            c.start()
            wait_until(lambda: "connection refused" in caplog.text, 10, "the refusal")
        assert not c.is_connected()
    finally:
        c.stop()
        proc.terminate()
        proc.wait(10)
    assert time.monotonic()  # the client ended without a traceback


@pytest.mark.parametrize("protocol,code", [("5", 0x87), ("3.1.1", 0x80)])
def test_a_refused_subscription_is_not_taken_for_success(
        protocol: str, code: int, caplog: pytest.LogCaptureFixture) -> None:
    """SUBACK with a failure code (Mosquitto 2.0's ACLs grant and filter instead, so a
    scripted broker sends it): no on_connect, an error logged, the connection retried."""
    props = b"\x00" if protocol == "5" else b""
    bad = BadBroker(bytes((0x90, 3 + len(props))) + b"\x00\x01" + props + bytes((code,)))
    connects: list[bool] = []
    lost: list[str] = []
    c = StreamClient(MqttEndpoint("127.0.0.1", bad.port, False, protocol=protocol), "r",
                     subscriptions=[("transit/v1/dev/+/tap", 1)], on_messages=Inbox(),
                     on_connect=connects.append, on_disconnect=lost.append)
    try:
        with caplog.at_level(logging.ERROR, "transit.mqtt_stream"):
            c.start()
            wait_until(lambda: any("subscription refused" in r for r in lost), 10,
                       "the refusal")
        assert "refused a subscription" in caplog.text and f"0x{code:02x}" in caplog.text
        assert connects == []
    finally:
        c.stop()
        bad.server.close()


def test_a_downgraded_tap_subscription_is_refused_and_a_position_one_is_not(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A broker with `max_qos 0` grants QoS 0 for a QoS 1 subscription: fine for
    positions, a refusal for the acknowledged-after-commit tap path."""
    b = Broker(tmp_path / "mosquitto", extra_conf="max_qos 0").start()
    taps_up: list[bool] = []
    lost: list[str] = []
    taps = StreamClient(endpoint(b, "5"), f"taps-{uuid.uuid4().hex[:6]}",
                        subscriptions=[("transit/v1/dev/+/tap", 1)], on_messages=Inbox(),
                        manual_ack=True, clean=False, session_expiry_s=600,
                        on_connect=taps_up.append, on_disconnect=lost.append)
    positions_up: list[bool] = []
    positions = StreamClient(endpoint(b, "5"), f"pos-{uuid.uuid4().hex[:6]}",
                             subscriptions=[("transit/v1/dev/+/status", 1)],
                             on_messages=Inbox(), on_connect=positions_up.append)
    try:
        with caplog.at_level(logging.ERROR, "transit.mqtt_stream"):
            taps.start()
            positions.start()
            wait_until(lambda: any("subscription refused" in r for r in lost), 10,
                       "the refusal")
            wait_until(lambda: positions_up == [False], 10, "the granted subscription")
        assert taps_up == []
        assert "refused a subscription" in caplog.text
    finally:
        taps.stop()
        positions.stop()
        b.stop()


def test_a_raising_callback_with_manual_ack_gets_the_messages_again(broker: Broker
                                                                    ) -> None:
    """Left unacknowledged on a live connection they would also hold the Receive
    Maximum window shut: the connection is dropped and the broker delivers them again."""
    topic = f"t/{uuid.uuid4().hex[:6]}"
    seen: list[bytes] = []
    failed = threading.Event()

    def on_messages(messages: list[Received]) -> None:
        if any(m[1] == b"tap-1" for m in messages) and not failed.is_set():
            failed.set()
            raise RuntimeError("a fault in the consumer")
        seen.extend(m[1] for m in messages)

    c = StreamClient(endpoint(broker, "5"), f"cb-{uuid.uuid4().hex[:8]}",
                     subscriptions=[(topic, 1)], on_messages=on_messages, clean=False,
                     session_expiry_s=600, manual_ack=True)
    peer = MqttPeer(broker.url)
    try:
        c.start()
        assert c.wait_connected(10)
        wait_until(lambda: (peer.publish(topic, b"probe", qos=0), b"probe" in seen)[1],
                   10, "the subscription")
        peer.publish(topic, b"tap-1", qos=1)
        wait_until(lambda: b"tap-1" in seen, 15, "redelivery after the fault")
        assert c.generation >= 2
    finally:
        peer.close()
        c.stop()


def test_a_stalled_broker_is_detected_while_the_client_keeps_sending(
        own_broker: Broker) -> None:
    """A half-open link: the broker process is frozen (SIGSTOP), the kernel still takes
    our bytes. Receipts going out must not hide the silence, a write must not block for
    ever, and a QoS 1 publication must fail rather than pass as done."""
    lost: list[str] = []
    c = client(own_broker, "5", Inbox(), "t/stall", keepalive=1, on_disconnect=lost.append)
    assert own_broker.proc is not None
    sending = threading.Event()
    sending.set()

    def keep_sending() -> None:
        while sending.is_set():
            c.publish("t/stall/out", b"r" * 4096, qos=0)
            time.sleep(0.005)

    sender = threading.Thread(target=keep_sending, daemon=True)
    own_broker.proc.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(RuntimeError, match="PUBACK"):
            c.publish("t/stall/denylist", b"list", qos=1).wait_for_publish(0.5)
        sender.start()
        wait_until(lambda: bool(lost), 15, "the stall noticed")
        assert not c.is_connected()
    finally:
        own_broker.proc.send_signal(signal.SIGCONT)
        sending.clear()
    try:
        wait_until(lambda: c.is_connected() and c.generation >= 2, 30, "a reconnection")
    finally:
        c.stop()


@PROTOCOLS
def test_a_paused_consumer_leaves_the_backlog_at_the_broker(broker: Broker, protocol: str
                                                            ) -> None:
    """MQTT 3.1.1 has no Receive Maximum and the broker no in-flight limit: a consumer
    whose queue is full must be able to stop the flow, or a backlog lands in memory."""
    topic = f"t/{uuid.uuid4().hex[:6]}"
    inbox = Inbox()
    release = threading.Event()
    held = [0]

    def paused() -> bool:
        if release.is_set() or len(inbox.messages) < 100:
            return False
        held[0] += 1
        return True

    c = client(broker, protocol, inbox, topic, paused=paused)
    peer = MqttPeer(broker.url, v5=protocol == "5")
    try:
        subscribed(c, peer, topic, inbox)
        peer.publish_many([(topic, b"%d" % i + b"." * 1000) for i in range(3000)], qos=1)
        wait_until(lambda: held[0] >= 50, 20, "the pause")  # a second at least
        assert 100 <= len(inbox.messages) < 1000  # one read past the limit at most
        assert c.is_connected()
        release.set()
        wait_until(lambda: len(inbox.messages) == 3000, 30, "the rest after the pause")
    finally:
        peer.close()
        c.stop()
