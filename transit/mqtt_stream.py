"""A lean MQTT 3.1.1 / 5 client for the gateway's receive paths.

paho-mqtt decodes each packet in pure Python through a chain of objects (an MQTTMessage,
MQTT 5 Properties, the topic matcher, a callback under locks): its network thread took
19 % of the gateway's samples while ingesting positions. This client reads as much as the
socket holds, decodes every PUBLISH in that buffer into a plain tuple
`(topic, payload, qos, packet_id, retain)`, and hands the whole list to one callback: the
consumer gets batches without a queue operation per message.

What it does: one TCP or TLS socket (TCP_NODELAY), CONNECT with a clean or persistent
session (MQTT 5: session expiry, Receive Maximum, Maximum Packet Size; 3.1.1: the
clean-session flag), username and password, an optional last will, SUBSCRIBE (shared
subscriptions included) after every CONNACK, PUBLISH in at QoS 0 and 1 (PUBACK sent by
the client, or by `ack()` when the consumer acknowledges after its commit), PUBLISH out at
QoS 0 and 1 with PUBACK bookkeeping, PINGREQ keepalive, reconnection with a backoff of
1 s doubling to 30 s, and a clean DISCONNECT. What it does not do: QoS 2, topic aliases
(it never offers any, so the broker sends none), enhanced authentication, resending
unacknowledged publications after a reconnect (their senders see the failure: a receipt
is asked for again by its validator, the deny list is published again).

A malformed or oversized packet closes the connection with one logged line; the client
reconnects, and a persistent session gets its unacknowledged messages again.
A SUBACK that refuses a subscription (or, with `manual_ack`, grants less than QoS 1)
closes the connection too, logged, and is retried with the backoff: `on_connect` only
runs once every subscription is granted. The keepalive judges the broker's silence, not
only ours, and writes time out, so a half-open link is noticed while receipts go out.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from transit.settings import MqttEndpoint

log = logging.getLogger(__name__)

# (topic, payload, qos, packet_id, retain): a tuple, the cheapest thing to build per message.
Received = tuple[str, bytes, int, int, bool]

MAX_PACKET = 2 * 1024 * 1024  # the project's broker refuses bigger ones (max_packet_size)
RECV_SIZE = 1 << 18
MIN_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0

_CONNACK, _PUBLISH, _PUBACK, _SUBACK, _UNSUBACK, _PINGRESP, _DISCONNECT = 2, 3, 4, 9, 11, 13, 14
_PINGREQ = b"\xc0\x00"
_CONNACK_V3 = {1: "unacceptable protocol version", 2: "identifier rejected",
               3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}
_pid = struct.Struct(">H").pack


class NotPublished(RuntimeError):
    """A QoS 1 publication the broker did not acknowledge (lost connection, or no PUBACK
    in time): the broker is away or too slow, not a fault of the code."""


class ProtocolError(Exception):
    """The broker sent something this client cannot read: the connection is closed."""


class Refused(Exception):
    """The broker refused the CONNECT."""


class SubscriptionRefused(Exception):
    """The broker's SUBACK refused a subscription: the connection is closed and retried."""


class _CallbackFailed(Exception):
    """`on_messages` raised with `manual_ack`: the connection is dropped so that the
    broker delivers the messages again (left unacknowledged, they would hold the
    Receive Maximum window shut for the rest of the connection)."""


@dataclass(frozen=True)
class Will:
    """A last will: published by the broker if the connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return _pid(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


class Publication:
    """What `publish` returns, as paho's MQTTMessageInfo does: `wait_for_publish`, `rc`."""

    __slots__ = ("mid", "rc", "_done", "_client")

    def __init__(self, client: StreamClient | None, mid: int, rc: int, done: bool) -> None:
        self._client = client
        self.mid = mid
        self.rc = rc  # 0: sent (and, at QoS 1, acknowledged once done); 4: not connected
        self._done = done

    def is_published(self) -> bool:
        """True once the broker has it (QoS 1: its PUBACK came)."""
        return self._done and self.rc == 0

    def wait_for_publish(self, timeout: float | None = None) -> bool:
        """Wait for the broker's PUBACK; RuntimeError if the connection was lost first or
        no PUBACK came within `timeout` (the deny-list publisher then publishes again)."""
        if not self._done and self._client is not None:
            self._client._wait(self, timeout)
        if self.rc != 0:
            raise NotPublished("not published: no connection to the broker")
        if not self._done:
            raise NotPublished(f"not published: no PUBACK within {timeout:g} s")
        return True


class StreamClient:
    """One MQTT connection whose received messages reach `on_messages` a buffer at a time.

    `on_messages`, `on_connect(session_present)` and `on_disconnect(reason)` run on the
    client's network thread; `on_connect` once the broker granted every subscription (a
    refused one closes the connection, logged, and is retried with the backoff). With
    `manual_ack`, QoS 1 messages are acknowledged only by `ack()`; otherwise as soon as
    `on_messages` has returned. While `paused()` is true nothing is read: TCP holds the
    broker back, which is what bounds a consumer's queue (MQTT 3.1.1 has no Receive
    Maximum, and the project's broker sets no in-flight limit).
    """

    def __init__(self, endpoint: MqttEndpoint, client_id: str, *,
                 subscriptions: Iterable[tuple[str, int]],
                 on_messages: Callable[[list[Received]], None],
                 clean: bool = True, session_expiry_s: int = 0,
                 receive_maximum: int | None = None, manual_ack: bool = False,
                 keepalive: int = 30, will: Will | None = None,
                 max_packet: int = MAX_PACKET,
                 on_connect: Callable[[bool], None] | None = None,
                 on_disconnect: Callable[[str], None] | None = None,
                 paused: Callable[[], bool] | None = None) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.subscriptions = list(subscriptions)
        self.on_messages = on_messages
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.paused = paused
        self.clean = clean
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.manual_ack = manual_ack
        self.keepalive = keepalive
        self.will = will
        self.max_packet = max_packet
        self.v5 = endpoint.protocol == "5"
        self.generation = 0  # counts the connections: a packet id belongs to one of them
        self.received = 0
        self.pings = 0  # PINGREQs sent
        self._sock: socket.socket | None = None
        # (generation, socket), replaced as one object: an acknowledgement checked against
        # one connection's generation is written to that connection's socket, never to a
        # newer one (where the packet id may name another message).
        self._conn: tuple[int, socket.socket | None] = (0, None)
        # Every write takes it; with TLS every read too (one SSL object must not be
        # used by two threads at once: OpenSSL does not allow it).
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: dict[int, Publication] = {}
        self._next_pid = 0
        self._session_present = False
        self._acks: list[bytes] = []
        self._sub_pid = 0
        self._suback: bytes | None = None  # the reason codes of the SUBACK just read
        self._delay = MIN_BACKOFF_S
        self._last_sent = 0.0
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------
    def start(self) -> None:
        """Connect and receive on a thread of its own, reconnecting until `stop()`."""
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.client_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send DISCONNECT, close the socket and end the network thread."""
        self._stop.set()
        sock = self._sock
        if sock is not None and self._connected.is_set():
            try:
                with self._send_lock:
                    sock.sendall(b"\xe0\x00")
            except OSError:
                pass
        self._close(sock)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_connected(self) -> bool:
        """True between a CONNACK and the loss of that connection."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a connection."""
        return self._connected.wait(timeout)

    # -- sending ------------------------------------------------------------------
    def _send(self, data: bytes, sock: socket.socket | None = None) -> bool:
        sock = sock or self._sock
        if sock is None:
            return False
        try:
            with self._send_lock:
                sock.sendall(data)
                self._last_sent = time.monotonic()
            return True
        except (OSError, ValueError) as exc:  # ValueError: a socket stop() closed
            # The network thread notices too (its read fails) and reconnects.
            log.debug("send to the broker failed: %s", exc)
            self._close(sock)
            return False

    def ack(self, packet_id: int, generation: int | None = None) -> bool:
        """PUBACK one QoS 1 message; one of an earlier connection is skipped (the broker
        delivers it again on this one)."""
        return self.ack_many((packet_id,), generation)

    def ack_many(self, packet_ids: Iterable[int], generation: int | None = None) -> bool:
        """PUBACK several QoS 1 messages in one write."""
        current, sock = self._conn
        if sock is None or (generation is not None and generation != current):
            return False
        data = b"".join(b"\x40\x02" + _pid(p) for p in packet_ids if p)
        return not data or self._send(data, sock)

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False) -> Publication:
        """Send a PUBLISH; at QoS 1 the returned Publication is done at its PUBACK."""
        if qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        if not self._connected.is_set():
            return Publication(None, 0, 4, True)
        raw_topic = topic.encode()
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        props = b"\x00" if self.v5 else b""
        if qos == 0:
            body = _pid(len(raw_topic)) + raw_topic + props + payload
            ok = self._send(_packet(first, body))
            return Publication(None, 0, 0 if ok else 4, True)
        with self._cond:
            pid = self._new_pid()
            pub = Publication(self, pid, 0, False)
            self._pending[pid] = pub
        body = _pid(len(raw_topic)) + raw_topic + _pid(pid) + props + payload
        if not self._send(_packet(first, body)):
            self._settle(pid, 4)
        return pub

    def publish_many(self, items: Iterable[tuple[str, bytes]], qos: int = 1) -> int:
        """PUBLISH several messages in one write (a batch's receipts); how many were sent."""
        if not self._connected.is_set():
            return 0
        props = b"\x00" if self.v5 else b""
        first = 0x30 | (qos << 1)
        packets: list[bytes] = []
        for topic, payload in items:
            raw_topic = topic.encode()
            if qos:
                with self._cond:
                    pid = self._new_pid()
                    self._pending[pid] = Publication(self, pid, 0, False)
                body = _pid(len(raw_topic)) + raw_topic + _pid(pid) + props + payload
            else:
                body = _pid(len(raw_topic)) + raw_topic + props + payload
            packets.append(_packet(first, body))
        if packets and not self._send(b"".join(packets)):
            return 0
        return len(packets)

    def _new_pid(self) -> int:  # with self._cond held
        for _ in range(65535):
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self._pending:
                return self._next_pid
        raise RuntimeError("65,535 publications await their PUBACK")

    def _settle(self, pid: int, rc: int) -> None:
        with self._cond:
            pub = self._pending.pop(pid, None)
            if pub is not None:
                pub.rc = rc
                pub._done = True
                self._cond.notify_all()

    def _wait(self, pub: Publication, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not pub._done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return
                self._cond.wait(remaining)

    def _fail_pending(self) -> None:
        with self._cond:
            for pub in self._pending.values():
                pub.rc = 4
                pub._done = True
            self._pending.clear()
            self._cond.notify_all()

    # -- connecting -----------------------------------------------------------------
    def _connect_packet(self) -> bytes:
        flags = 0x02 if self.clean else 0x00
        ep = self.endpoint
        if self.will is not None:
            flags |= 0x04 | (self.will.qos << 3) | (0x20 if self.will.retain else 0)
        if ep.username:
            flags |= 0x80
            if ep.password is not None:
                flags |= 0x40
        header = _string("MQTT") + bytes((5 if self.v5 else 4, flags)) + _pid(self.keepalive)
        if self.v5:
            props = b"\x27" + struct.pack(">I", self.max_packet)
            if self.session_expiry_s:
                props += b"\x11" + struct.pack(">I", self.session_expiry_s)
            if self.receive_maximum:
                props += b"\x21" + _pid(self.receive_maximum)
            header += _varint(len(props)) + props
        payload = _string(self.client_id)
        if self.will is not None:
            if self.v5:
                payload += b"\x00"
            payload += _string(self.will.topic) + _string(self.will.payload)
        if ep.username:
            payload += _string(ep.username)
            if ep.password is not None:
                payload += _string(ep.password)
        return _packet(0x10, header + payload)

    def _subscribe_packet(self, pid: int) -> bytes:
        body = _pid(pid) + (b"\x00" if self.v5 else b"")
        for topic, qos in self.subscriptions:
            body += _string(topic) + bytes((qos,))
        return _packet(0x82, body)

    def _open(self) -> socket.socket:
        ep = self.endpoint
        sock = socket.create_connection((ep.host, ep.port), timeout=10)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ep.tls:
                ctx = ssl.create_default_context(cafile=ep.ca_file)
                if ep.cert_file:
                    ctx.load_cert_chain(ep.cert_file, ep.key_file)
                sock = ctx.wrap_socket(sock, server_hostname=ep.host)
            sock.sendall(self._connect_packet())
            first, body = self._read_one(sock)
            if first >> 4 != _CONNACK or len(body) < 2:
                raise ProtocolError(f"expected CONNACK, got packet type {first >> 4}")
            code = body[1]
            if code:
                why = (_CONNACK_V3.get(code, f"code {code}") if not self.v5
                       else f"reason code 0x{code:02x}")
                raise Refused(why)
            # The reader waits in select(); the timeout bounds a write to a broker that
            # stopped reading (a stalled or half-open peer): without it sendall() blocks
            # for ever holding the send lock, and the keepalive can never notice.
            sock.settimeout(float(self.keepalive or 30))
            self._session_present = bool(body[0] & 1)
            return sock
        except BaseException:
            sock.close()
            raise

    def _read_one(self, sock: socket.socket) -> tuple[int, bytes]:
        """One whole packet, read byte by byte where needed (only the CONNACK is)."""
        def exactly(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                data += chunk
            return data
        first = exactly(1)[0]
        length, shift = 0, 0
        while True:
            byte = exactly(1)[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise ProtocolError("remaining length longer than 4 bytes")
        return first, exactly(length)

    def _run(self) -> None:
        delay = MIN_BACKOFF_S
        while not self._stop.is_set():
            try:
                sock = self._open()
            except (OSError, ProtocolError, Refused) as exc:
                if self._stop.is_set():
                    break
                level = logging.ERROR if isinstance(exc, Refused) else logging.WARNING
                log.log(level, "MQTT %s at %s: %s; retrying in %.0fs",
                        "connection refused" if isinstance(exc, Refused) else "no connection",
                        self.endpoint.address, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            self._sock = sock
            self.generation += 1
            self._conn = (self.generation, sock)
            self._last_sent = time.monotonic()
            self._connected.set()
            self._delay = delay
            reason = "closed"
            try:
                if self.subscriptions:
                    with self._cond:
                        self._sub_pid = self._new_pid()
                    self._suback = None
                    self._send(self._subscribe_packet(self._sub_pid), sock)
                else:
                    self._granted()
                reason = self._read_loop(sock)
            except SubscriptionRefused as exc:
                reason = f"subscription refused ({exc})"
                log.error("MQTT %s refused a subscription: %s; retrying in %.0fs",
                          self.endpoint.address, exc, self._delay)
            except _CallbackFailed:
                reason = "handling received messages failed"
            except ProtocolError as exc:
                reason = f"malformed packet from the broker ({exc})"
                log.error("MQTT %s: %s; closing the connection", self.endpoint.address, exc)
            except (OSError, ValueError) as exc:  # ValueError: stop() closed the socket
                reason = str(exc) or type(exc).__name__
            except Exception:  # a fault in a callback: logged, and the client goes on
                reason = "internal error"
                log.exception("MQTT connection to %s ended by a fault", self.endpoint.address)
            finally:
                delay = self._delay
                self._connected.clear()
                self._conn = (self.generation, None)
                self._sock = None
                self._close(sock)
                self._fail_pending()
            if self.on_disconnect is not None:
                try:
                    self.on_disconnect(reason)
                except Exception:
                    log.exception("on_disconnect failed")
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _granted(self) -> None:
        """Every subscription is in place: the connection counts as established."""
        self._delay = MIN_BACKOFF_S
        if self.on_connect is not None:
            self.on_connect(self._session_present)

    def _ping(self, sock: socket.socket) -> None:
        self.pings += 1
        self._send(_PINGREQ, sock)

    @staticmethod
    def _close(sock: socket.socket | None) -> None:
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
        except OSError:
            pass
        sock.close()

    # -- receiving ------------------------------------------------------------------
    def _read_loop(self, sock: socket.socket) -> str:
        """Read and decode until the connection ends; returns why it ended."""
        keepalive = self.keepalive
        ping_after = keepalive * 0.75 if keepalive else None
        ping_sent = 0.0
        last_heard = time.monotonic()
        rest = b""
        paused = self.paused
        # TLS may hold decrypted bytes select() cannot see: read those first.
        tls = isinstance(sock, ssl.SSLSocket)
        pending = sock.pending if isinstance(sock, ssl.SSLSocket) else None
        while not self._stop.is_set():
            if paused is not None and paused():
                # The consumer's queue is full: leave the rest in the socket. Pings still
                # go out (the broker must hear from us); their answers wait unread.
                if ping_after is not None and time.monotonic() - self._last_sent >= ping_after:
                    self._ping(sock)
                ping_sent = 0.0
                last_heard = time.monotonic()
                self._stop.wait(0.02)
                continue
            if not (pending is not None and pending()):
                ready, _w, _x = select.select([sock], [], [], 1.0)
                if not ready:
                    now = time.monotonic()
                    if ping_after is not None:
                        if ping_sent and now - ping_sent > keepalive:
                            return f"no PINGRESP within {keepalive}s"
                        # Silence from the broker counts, not only our own: a half-open
                        # link we keep writing to (acks, receipts) must be noticed too.
                        if not ping_sent and (now - self._last_sent >= ping_after
                                              or now - last_heard >= ping_after):
                            ping_sent = now
                            self._ping(sock)
                    continue
            if tls:
                with self._send_lock:
                    chunk = sock.recv(RECV_SIZE)
            else:
                chunk = sock.recv(RECV_SIZE)
            if not chunk:
                return "the broker closed the connection"
            last_heard = time.monotonic()
            ping_sent = 0.0  # anything from the broker shows the link is alive
            data = rest + chunk if rest else chunk
            messages: list[Received] = []
            fault: Exception | None = None
            try:
                rest, acks, why = self._decode(data, messages)
            except ProtocolError as exc:
                rest, acks, why, fault = b"", self._acks, "", exc
            suback, self._suback = self._suback, None
            if suback is not None:
                # A grant below QoS 1 is a refusal too where acknowledging after the
                # commit is the point (a broker with max_qos 0 downgrades silently):
                # taps at QoS 0 would be neither acknowledged nor kept for the session.
                refused = [c for c, (_t, q) in zip(suback, self.subscriptions, strict=False)
                           if c >= 0x80 or (self.manual_ack and c < q)]
                if refused:  # after the messages read before it are handed over
                    fault = fault or SubscriptionRefused(
                        f"{[t for t, _q in self.subscriptions]}: reason codes "
                        f"{[f'0x{c:02x}' for c in suback]}")
                else:
                    self._granted()
            if messages:
                self.received += len(messages)
                try:
                    self.on_messages(messages)
                except Exception:
                    log.exception("handling %d MQTT messages failed", len(messages))
                    if self.manual_ack:
                        raise _CallbackFailed() from None
            if acks:
                self._send(b"".join(acks), sock)
            if fault is not None:  # after the messages read before it are handed over
                raise fault
            if why:
                return why
            if ping_after is not None and last_heard - self._last_sent >= ping_after:
                self._ping(sock)
        # stop() came while this connection was being opened: it found no socket to
        # send DISCONNECT on, so send it here (no last will for a clean stop).
        self._send(b"\xe0\x00", sock)
        return "stopped"

    def _decode(self, data: bytes, out: list[Received]) -> tuple[bytes, list[bytes], str]:
        """Decode every whole packet in `data` into `out`; the unread tail, the PUBACKs
        to send, and why the broker ended the session ('' if it did not)."""
        pos, size = 0, len(data)
        v5, auto_ack, max_packet = self.v5, not self.manual_ack, self.max_packet
        acks: list[bytes] = []
        self._acks = acks  # PUBACKs of the messages decoded before a malformed packet
        append = out.append
        while pos + 2 <= size:
            first = data[pos]
            byte = data[pos + 1]
            if byte < 0x80:
                length, start = byte, pos + 2
            else:
                length, shift, i = byte & 0x7F, 7, pos + 2
                while True:
                    if i >= size:
                        return data[pos:], acks, ""
                    byte = data[i]
                    length |= (byte & 0x7F) << shift
                    i += 1
                    if byte < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("remaining length longer than 4 bytes")
                start = i
            if length > max_packet:
                raise ProtocolError(f"a packet of {length} bytes, over the limit of "
                                    f"{max_packet}")
            end = start + length
            if end > size:
                break
            kind = first >> 4
            if kind == _PUBLISH:
                if length < 2:  # checked before the topic length is read past the end
                    raise ProtocolError("a PUBLISH that does not add up")
                qos = (first >> 1) & 3
                t_end = start + 2 + ((data[start] << 8) | data[start + 1])
                if qos:
                    packet_id = (data[t_end] << 8) | data[t_end + 1] if t_end + 2 <= end else 0
                    p = t_end + 2
                else:
                    packet_id, p = 0, t_end
                if v5 and p < end:
                    plen = data[p]
                    if plen < 0x80:
                        p += 1 + plen
                    else:
                        p = self._skip_properties(data, p, end)
                if qos == 3 or p > end or (qos and not packet_id):
                    raise ProtocolError("a PUBLISH that does not add up")
                try:
                    topic = data[start + 2:t_end].decode()
                except UnicodeDecodeError:
                    raise ProtocolError("a PUBLISH topic that is not UTF-8") from None
                append((topic, data[p:end], qos, packet_id, bool(first & 1)))
                if qos and auto_ack:
                    acks.append(b"\x40\x02" + data[t_end:t_end + 2])
            elif kind == _PUBACK:
                if length < 2:
                    raise ProtocolError("a PUBACK without a packet id")
                reason = data[start + 2] if length > 2 else 0
                self._settle((data[start] << 8) | data[start + 1], 0 if reason < 0x80 else 5)
            elif kind == _PINGRESP:
                pass
            elif kind == _SUBACK:
                if length < 3:
                    raise ProtocolError("a SUBACK without reason codes")
                p = self._skip_properties(data, start + 2, end) if v5 else start + 2
                if p >= end:
                    raise ProtocolError("a SUBACK without reason codes")
                if (data[start] << 8) | data[start + 1] == self._sub_pid:
                    self._suback = data[p:end]  # judged by the read loop
            elif kind == _UNSUBACK:
                pass
            elif kind == _DISCONNECT and v5:
                code = data[start] if length else 0
                return data[end:], acks, f"the broker disconnected (reason code 0x{code:02x})"
            else:
                raise ProtocolError(f"unexpected packet type {kind}")
            pos = end
        return data[pos:], acks, ""

    @staticmethod
    def _skip_properties(data: bytes, p: int, end: int) -> int:
        length, shift = 0, 0
        while True:
            if p >= end:
                raise ProtocolError("properties past the end of the packet")
            byte = data[p]
            p += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                return p + length
            shift += 7
            if shift > 21:
                raise ProtocolError("a property length longer than 4 bytes")
