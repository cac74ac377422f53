"""The MQTT side of tracking: positions and validator status, batched into Redis.

Positions are perishable: a clean session, no acknowledgement bookkeeping; a gateway
that restarts simply takes the next positions. The messages come off the lean client
(`transit.mqtt_stream`) a socket read at a time: one queue operation per read, not per
message (paho's per-message machinery was 19 % of the gateway's samples).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

import redis.exceptions
import sqlalchemy.exc

from tracking.ingest import Message, PositionIngest
from transit.mqtt_stream import Received, StreamClient
from transit.settings import Settings
from transit.topics import Topics

log = logging.getLogger(__name__)

# Failures of a service the ingest depends on, as opposed to faults in the code.
OUTAGES: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError,
                                            redis.exceptions.TimeoutError,
                                            sqlalchemy.exc.OperationalError)
QUEUE_LIMIT = 200_000  # messages held for the worker; beyond that positions are dropped


class PositionConsumer:
    """Subscribes to every device's positions (and, with `statuses`, their status) and
    hands them to the ingest in batches of up to `batch_size`."""

    def __init__(self, settings: Settings, ingest: PositionIngest,
                 batch_size: int = 1000, *, statuses: bool = True,
                 group: str | None = None) -> None:
        self.settings = settings
        self.ingest = ingest
        self.batch_size = batch_size
        self.topics = Topics(settings.topic_prefix)
        share = settings.share_group if group is None else group
        subscriptions = [(self.topics.all_devices("pos", share), 0)]
        if statuses:
            subscriptions.append((self.topics.all_devices("status"), 1))
        # Lists of messages, one per socket read; _in and _out count messages, each
        # written by one thread only (the network thread, the worker).
        self._queue: queue.SimpleQueue[tuple[int, list[Received]]] = queue.SimpleQueue()
        self._in = 0
        self._out = 0
        self._stop = threading.Event()
        self.client = StreamClient(
            settings.mqtt, f"{settings.gateway_id}-pos-{uuid.uuid4().hex[:6]}",
            subscriptions=subscriptions, on_messages=self._on_messages, clean=True)
        self._worker = threading.Thread(target=self._work, name="positions", daemon=True)
        self.dropped = 0
        self.lost_in_outage = 0  # positions dropped while Redis or the database was away
        self._outage = False

    def start(self) -> None:
        """Connect (retrying in the background) and start the worker."""
        self.client.start()
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker, then disconnect."""
        self._stop.set()
        self._worker.join(timeout=5)
        self.client.stop()

    def _on_messages(self, messages: list[Received]) -> None:
        if self._in - self._out + len(messages) > QUEUE_LIMIT:
            # overload: drop the oldest kind of data we have, positions
            self.dropped += len(messages)
            return
        self._in += len(messages)
        self._queue.put((int(time.time() * 1000), messages))

    def _next_batch(self) -> list[Message]:
        try:
            reads = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        size = len(reads[0][1])
        while size < self.batch_size:
            try:
                reads.append(self._queue.get_nowait())
            except queue.Empty:
                break
            size += len(reads[-1][1])
        self._out += size
        return [Message(topic, payload, retain, at)
                for at, received in reads
                for topic, payload, _qos, _pid, retain in received]

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
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
