"""Validator statuses alone, for a gateway whose positions go to ingest processes.

Every gateway keeps every device's status (a plain subscription, not shared): a status
is retained and small, a few a device an hour, so it is handled on the connection's own
thread, as it comes.
"""

from __future__ import annotations

import logging
import uuid

from tracking.ingest import Message, PositionIngest
from transit.mqtt_stream import Received, StreamClient
from transit.settings import Settings
from transit.topics import Topics

log = logging.getLogger(__name__)


class StatusConsumer:
    """Subscribes to every device's status and hands each read to the ingest."""

    def __init__(self, settings: Settings, ingest: PositionIngest) -> None:
        self.ingest = ingest
        topics = Topics(settings.topic_prefix)
        self.client = StreamClient(
            settings.mqtt, f"{settings.gateway_id}-status-{uuid.uuid4().hex[:6]}",
            subscriptions=[(topics.all_devices("status"), 1)],
            on_messages=self._on_messages, clean=True)

    def start(self) -> None:
        """Connect (retrying in the background)."""
        self.client.start()

    def stop(self) -> None:
        """Disconnect."""
        self.client.stop()

    def _on_messages(self, messages: list[Received]) -> None:
        try:
            self.ingest.handle([Message(topic, payload, retain)
                                for topic, payload, _qos, _pid, retain in messages])
        except Exception:  # Redis away: a status is said again, and retained
            log.exception("%d validator statuses not stored", len(messages))
