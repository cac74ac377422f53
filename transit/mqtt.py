"""Building paho-mqtt clients from the settings (shared by the agent and the gateway)."""

from __future__ import annotations

import os
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from transit.settings import MqttEndpoint


def make_client(endpoint: MqttEndpoint, client_id: str, *, v5: bool = True,
                manual_ack: bool = False, **kwargs: Any) -> mqtt.Client:
    """A paho 2.x client with credentials and TLS taken from the endpoint."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
        **kwargs,
    )
    if endpoint.username:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls:
        client.tls_set(
            ca_certs=os.environ.get("TRANSIT_MQTT_CA") or None,
            certfile=os.environ.get("TRANSIT_MQTT_CERT") or None,
            keyfile=os.environ.get("TRANSIT_MQTT_KEY") or None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client
