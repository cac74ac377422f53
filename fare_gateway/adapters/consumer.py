"""The MQTT side of the gateway: consume taps, commit in batches, ack after commit, receipt.

Taps arrive on a persistent MQTT 5 session (no clean start, long expiry), so they queue
at the broker while the gateway restarts. Each message is acknowledged (paho
`manual_ack`) only after the transaction holding its effect has committed; a gateway
that dies before that gets the message again and answers it as a duplicate.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy.exc import OperationalError

from fare_gateway.metrics import Metrics
from fare_gateway.taps import QUARANTINED, Inbound, Outcome, TapService
from transit.mqtt import connect_async, make_client, set_nodelay
from transit.settings import Settings
from transit.topics import Topics

log = logging.getLogger(__name__)
SESSION_EXPIRY_S = 7 * 24 * 3600


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
        self._generation = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="tap-worker", daemon=True)
        self.client = make_client(settings.mqtt, settings.gateway_id, manual_ack=True)
        # No client-side window for receipts: with one, paho walks every unacknowledged
        # message on each PUBACK (quadratic in a burst: 13 % of the gateway's time in a
        # 60,000-tap burst). Receipts leave as they are made; the project's broker policy
        # (max_inflight_messages 0) takes them all.
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        connect_async(self.client, self.settings.mqtt, keepalive=30,
                      session_expiry_s=SESSION_EXPIRY_S,
                      receive_maximum=self.settings.receive_maximum)
        self.client.loop_start()
        self._worker.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Finish the batch in hand, then disconnect; unacknowledged taps stay at the broker."""
        self._stopping.set()
        if self._worker.is_alive():
            self._worker.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (network thread) -------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                    reason_code: Any, _props: Any) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self._generation += 1
        set_nodelay(client)
        client.subscribe(self.subscription, qos=1)
        self._connected.set()
        self.metrics.broker_connected.set(1)
        log.info("connected to the broker; subscribed to %s", self.subscription)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason_code: Any, _props: Any) -> None:
        self._connected.clear()
        self.metrics.broker_connected.set(0)
        if not self._stopping.is_set():
            log.warning("lost the broker (%s); reconnecting", reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Delivery(Inbound(msg.topic, msg.payload), msg.mid, msg.qos,
                                  self._generation))

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
            self._finish(batch, outcomes)
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
        generation = self._generation
        for delivery in batch:
            # A message from an earlier connection is redelivered by the broker anyway;
            # its mid means nothing on this connection.
            if delivery.generation == generation and delivery.qos > 0:
                self.client.ack(delivery.mid, delivery.qos)
        published = 0
        for outcome in outcomes:
            if outcome.receipt is not None:
                self.client.publish(self.topics.receipt(outcome.receipt.device_id),
                                    outcome.receipt.encode(), qos=1)
                published += 1
        self.metrics.receipts.inc(published)
        if self.heard is not None and published:
            self.heard(o.receipt.device_id for o in outcomes if o.receipt is not None)
