"""The MQTT side of tracking: positions and validator status, batched into Redis.

Positions are perishable: a clean session, no acknowledgement bookkeeping; a gateway
that restarts simply takes the next positions.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import redis.exceptions
import sqlalchemy.exc

from tracking.ingest import Message, PositionIngest
from transit.mqtt import connect_async, make_client
from transit.settings import Settings
from transit.topics import Topics

log = logging.getLogger(__name__)

# Failures of a service the ingest depends on, as opposed to faults in the code.
OUTAGES: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError,
                                            redis.exceptions.TimeoutError,
                                            sqlalchemy.exc.OperationalError)


class PositionConsumer:
    def __init__(self, settings: Settings, ingest: PositionIngest,
                 batch_size: int = 1000) -> None:
        self.settings = settings
        self.ingest = ingest
        self.batch_size = batch_size
        self.topics = Topics(settings.topic_prefix)
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=200_000)
        self._stop = threading.Event()
        self.client = make_client(settings.mqtt, f"{settings.gateway_id}-pos-"
                                  f"{uuid.uuid4().hex[:6]}", persistent=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._worker = threading.Thread(target=self._work, name="positions", daemon=True)
        self.dropped = 0
        self.lost_in_outage = 0  # positions dropped while Redis or the database was away
        self._outage = False

    def start(self) -> None:
        connect_async(self.client, self.settings.mqtt, persistent=False)
        self.client.loop_start()
        self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: Any,
                    _p: Any) -> None:
        if reason_code.is_failure:
            return
        group = self.settings.share_group
        client.subscribe([(self.topics.all_devices("pos", group), 0),
                          (self.topics.all_devices("status"), 1)])

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._queue.put_nowait(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
        except queue.Full:  # overload: drop the oldest kind of data we have, positions
            self.dropped += 1

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.ingest.handle(batch)
            except OUTAGES as exc:  # Redis or the database away: these positions are
                # lost, the next ones count; say so once per outage, not once per batch
                self.lost_in_outage += len(batch)
                if not self._outage:
                    log.warning("positions not stored: %s unreachable (%s); dropping "
                                "them until it is back", type(exc).__module__.split(".")[0],
                                str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._outage = True
                time.sleep(0.5)
                continue
            except Exception:
                log.exception("position batch of %d not stored", len(batch))
                time.sleep(0.5)
                continue
            if self._outage:
                log.info("positions stored again (%d dropped in the outage)",
                         self.lost_in_outage)
                self._outage = False
