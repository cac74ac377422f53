"""Building paho-mqtt clients from the settings (shared by the agent and the gateway)."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from transit.settings import MqttEndpoint


def make_client(endpoint: MqttEndpoint, client_id: str, *, persistent: bool = True,
                manual_ack: bool = False, **kwargs: Any) -> mqtt.Client:
    """A paho 2.x client with protocol, credentials and TLS files taken from the endpoint."""
    v5 = endpoint.protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
        **kwargs,
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(
            ca_certs=endpoint.ca_file,
            certfile=endpoint.cert_file,
            keyfile=endpoint.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_async(client: mqtt.Client, endpoint: MqttEndpoint, *, keepalive: int = 30,
                  persistent: bool = True, session_expiry_s: int = 7 * 24 * 3600,
                  receive_maximum: int | None = None) -> None:
    """Connect in the background: a persistent session (MQTT 5: no clean start and a
    long expiry; 3.1.1: clean session off, set when the client was made) or a clean one."""
    if endpoint.protocol != "5":
        client.connect_async(endpoint.host, endpoint.port, keepalive=keepalive)
        return
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    if persistent:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    client.connect_async(endpoint.host, endpoint.port, keepalive=keepalive,
                         clean_start=not persistent, properties=props)


def set_nodelay(client: mqtt.Client) -> None:
    """Send small packets at once (TCP_NODELAY) on the client's connected socket.

    paho leaves Nagle's algorithm on: at a few messages a second, a receipt written
    right after a PUBACK waited for the broker's delayed TCP acknowledgement, about
    10 ms on every tap. Call it from `on_connect`.
    """
    sock = client.socket()
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # not a TCP socket (e.g. a WebSocket wrapper)
            pass
