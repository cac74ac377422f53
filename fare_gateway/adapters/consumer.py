"""The MQTT side of the gateway: consume taps, commit in batches, ack after commit, receipt.

Taps arrive on a persistent MQTT 5 session (no clean start, long expiry; 3.1.1: clean
session off), so they queue at the broker while the gateway restarts. Each message is
acknowledged (`StreamClient` with `manual_ack`) only after the transaction holding its
effect has committed; a gateway that dies before that gets the message again and
answers it as a duplicate. The lean client (`transit.mqtt_stream`) replaced paho here:
paho's network thread took ~20 % of the gateway's interpreter time in a tap burst.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from fare_gateway.metrics import Metrics
from fare_gateway.taps import QUARANTINED, Inbound, Outcome, TapService
from transit.mqtt_stream import Received, StreamClient
from transit.settings import Settings
from transit.topics import Topics

log = logging.getLogger(__name__)
SESSION_EXPIRY_S = 7 * 24 * 3600
# Taps held for the worker before the client stops reading (TCP then holds the broker
# back). MQTT 5's Receive Maximum bounds the unacknowledged ones already; MQTT 3.1.1 has
# none and the project's broker sets no in-flight limit, so after an outage the whole
# backlog would otherwise land in this queue at once.
QUEUE_LIMIT = 20_000


@dataclass(frozen=True)
class _Delivery:
    inbound: Inbound
    mid: int
    qos: int
    generation: int


class TapConsumer:
    """Consumes `{prefix}/dev/+/tap`, optionally through a shared subscription."""

    def __init__(self, settings: Settings, service: TapService, metrics: Metrics,
                 heard: Callable[[Iterable[str]], None] | None = None) -> None:
        self.settings = settings
        self.service = service
        self.metrics = metrics
        # Told which devices a batch's signed taps came from (the validators' `state`):
        # tracking's `HeardLog`, which only notes them; Redis is written off this thread.
        self.heard = heard
        self.topics = Topics(settings.topic_prefix)
        self.subscription = self.topics.all_devices("tap", settings.share_group)
        # SimpleQueue: the network thread puts every message, so the cheapest queue wins.
        self._queue: queue.SimpleQueue[_Delivery] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="tap-worker", daemon=True)
        # No client-side window for receipts (paho's walked every unacknowledged message
        # on each PUBACK: 13 % of the gateway's time in a 60,000-tap burst): they leave
        # as they are made; the project's broker policy (max_inflight_messages 0) takes
        # them all.
        self.client = StreamClient(
            settings.mqtt, settings.gateway_id, subscriptions=[(self.subscription, 1)],
            on_messages=self._on_messages, clean=False, session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=settings.receive_maximum, manual_ack=True, keepalive=30,
            on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            paused=lambda: self._queue.qsize() >= QUEUE_LIMIT)

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect (retrying in the background) and start the worker."""
        self.client.start()
        self._worker.start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the broker connection."""
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect; unacknowledged taps stay at the broker."""
        self._stopping.set()
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        self.client.stop()

    # -- client callbacks (network thread) -------------------------------------
    def _on_connect(self, _session_present: bool) -> None:
        # Called once the broker granted the subscription (a refusal the client logs,
        # closes the connection and retries): only then does the gateway count as up.
        self._connected.set()
        self.metrics.broker_connected.set(1)
        log.info("connected to the broker; subscribed to %s", self.subscription)

    def _on_disconnect(self, reason_code: str) -> None:
        self._connected.clear()
        self.metrics.broker_connected.set(0)
        if not self._stopping.is_set():
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_messages(self, messages: list[Received]) -> None:
        if self._stopping.is_set():
            # Left unacknowledged: the broker keeps them for the next session, and the
            # worker's drain in stop() ends instead of chasing new deliveries.
            return
        # The client's generation, not one noted in on_connect: a persistent session's
        # backlog may arrive before the SUBACK that on_connect waits for.
        generation = self.client.generation
        put = self._queue.put
        for topic, payload, qos, packet_id, _retain in messages:
            put(_Delivery(Inbound(topic, payload), packet_id, qos, generation))

    # -- worker thread --------------------------------------------------------
    def _next_batch(self) -> list[_Delivery]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait_ms / 1000
        while len(batch) < self.settings.batch_size:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _work(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            batch = self._next_batch()
            self.metrics.queue_depth.set(self._queue.qsize() + len(batch))
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            delay = 0.5
            while True:
                try:
                    outcomes = self._commit(batch)
                    break
                except Exception:  # not even quarantine worked: keep the batch, try again
                    log.exception("could not record a batch of %d; retrying", len(batch))
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)
            try:
                self._finish(batch, outcomes)
            except Exception:  # committed; unacknowledged ones come again as duplicates
                log.exception("acknowledging a batch of %d failed", len(batch))
            self.metrics.queue_depth.set(self._queue.qsize())

    def _commit(self, batch: list[_Delivery]) -> list[Outcome]:
        """Commit a batch; on a failure that is not an outage, isolate the message at fault."""
        inbound = [d.inbound for d in batch]
        try:
            return self._with_retry(inbound)
        except Exception:
            if len(inbound) == 1:
                log.exception("message on %s could not be processed", inbound[0].topic)
                self.service.quarantine_failure(inbound[0], "internal_error")
                return [Outcome(QUARANTINED, None, "internal_error")]
            log.exception("batch of %d failed; processing one by one", len(inbound))
            outcomes: list[Outcome] = []
            for delivery in batch:
                outcomes.extend(self._commit([delivery]))
            return outcomes

    def _with_retry(self, inbound: list[Inbound]) -> list[Outcome]:
        """Retry while the database is unreachable, locked or deadlocked; nothing is acked."""
        delay = 0.05
        while True:
            try:
                return self.service.handle(inbound)
            except OperationalError as exc:
                self.metrics.db_retries.inc()
                log.warning("database error (%s); retrying in %.2fs", exc.orig, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _finish(self, batch: list[_Delivery], outcomes: list[Outcome]) -> None:
        generation = self.client.generation
        # A message from an earlier connection is redelivered by the broker anyway;
        # its packet id means nothing on this connection. One write for the batch's
        # PUBACKs, one for its receipts.
        self.client.ack_many([d.mid for d in batch
                              if d.generation == generation and d.qos > 0], generation)
        receipts = [(self.topics.receipt(o.receipt.device_id), o.receipt.encode())
                    for o in outcomes if o.receipt is not None]
        self.client.publish_many(receipts, qos=1)
        published = len(receipts)
        self.metrics.receipts.inc(published)
        if self.heard is not None and published:
            self.heard(o.receipt.device_id for o in outcomes if o.receipt is not None)
