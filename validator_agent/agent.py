"""The validator agent: wiring of reader, decision, spool, MQTT, deny list and positions."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from transit import __version__
from transit.denylist import DenyList
from transit.mqtt import connect_async, make_client
from transit.settings import MqttEndpoint
from transit.topics import Topics
from transit.wire import Position, Receipt, Tap, WireError
from validator_agent.domain import Decision, RecentEntries, decide
from validator_agent.feedback import Feedback
from validator_agent.gps import Cadence, FixFeed, due
from validator_agent.spool import Spool, SpoolFull

log = logging.getLogger(__name__)
HEARTBEAT_S = 30.0
KEEPALIVE_S = 20  # the broker publishes the last will after 1.5 x this without a word
DRILL_OFFLINE_S = 60.0  # SIGUSR1 to `transit agent`: off the broker this long
INFLIGHT_WINDOW = 200  # taps published and awaiting receipts at once


@dataclass(frozen=True)
class AgentConfig:
    """Everything an agent needs to know, given once at start."""

    device_id: str
    vehicle_id: str
    route_id: str
    secret: bytes
    mqtt: MqttEndpoint
    topics: Topics
    repeat_tap_seconds: int = 120
    denylist_key: bytes | None = None
    trip_id: str | None = None
    cadence: Cadence = Cadence()
    kind: str = "entry"  # "exit" for a validator at the exit door of a distance route


class Agent:
    """One validator. Thread-safe entry point: `card_presented`."""

    def __init__(self, config: AgentConfig, spool: Spool, feedback: Feedback,
                 gps: FixFeed | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.spool = spool
        self.feedback = feedback
        self.gps = gps
        self.clock = clock
        self.recent = RecentEntries()
        self.denylist = self._load_denylist()
        self.taps_refused_spool_full = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drop = threading.Event()  # go_offline asked to drop the connection
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._last_position_ms: int | None = None
        self._last_status = 0.0
        self._alarm = False
        self._offline_until = 0.0
        self._status_depth = -1
        self._snapshot_subscribed = False
        self.client = make_client(config.mqtt, config.device_id)
        self.client.max_inflight_messages_set(INFLIGHT_WINDOW)
        self.client.max_queued_messages_set(INFLIGHT_WINDOW * 2)
        self._set_will()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._threads = [threading.Thread(target=self._publish_loop, name="publish",
                                          daemon=True)]

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self._connect()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._connected.is_set():
            self._publish_status(online=False)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def go_offline(self, seconds: float) -> None:
        """Drop the broker connection for a while, as a bus does in a tunnel (the drill).

        Safe from a signal handler: the publishing thread, which owns the connection,
        drops it and makes it again once the time is up."""
        log.info("going offline for %.0f s", seconds)
        self._offline_until = time.monotonic() + seconds
        self._drop.set()
        self._wake.set()

    def _connect(self) -> None:
        """Connect in the background; paho's network loop keeps the connection, making it
        again after a dropped link or a broker restart (1 s later, then doubling the wait
        up to 30 s)."""
        connect_async(self.client, self.config.mqtt, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    def _disconnect(self) -> None:
        """End the connection and paho's network loop with it, until `_connect`.

        The loop is stopped first: a requested disconnect ends paho's loop on its own
        (so nothing would make the connection again), and one caught between two
        attempts to reconnect would otherwise still make the next one."""
        self.client.loop_stop()
        self.client.disconnect()  # a clean DISCONNECT: the broker drops the last will
        self._connected.clear()

    # -- the tap --------------------------------------------------------------
    def card_presented(self, card: str | None, seen_monotonic: float,
                       authentic: bool | None = None) -> Decision:
        """Decide, spool, and show the passenger the result; never touches the network.

        `authentic` is the reader's card-authentication verdict (secure card profile):
        False refuses the card as `not_authentic`, even at an exit; None means unchecked."""
        now_ms = int(self.clock() * 1000)
        if card is None:
            decision = Decision(False, "unreadable")
            self.feedback.decided(None, None, decision,
                                  (time.monotonic() - seen_monotonic) * 1000)
            return decision
        with self._lock:
            if authentic is False:
                decision = Decision(False, "not_authentic")
            elif self.config.kind == "exit":
                # Tapping out is never refused: the rider is leaving, and the exit only
                # sets the fare of the entry (possibly a refund).
                decision = decide(card, now_ms, False, None, 0, self.spool.full)
            else:
                decision = decide(card, now_ms, card in self.denylist,
                                  self.recent.last(card), self.config.repeat_tap_seconds,
                                  self.spool.full)
            seq = None
            fix = self.gps.latest() if self.gps else None
            try:
                tap = self.spool.append(lambda s: Tap(
                    device_id=self.config.device_id, seq=s, vehicle_id=self.config.vehicle_id,
                    route_id=self.config.route_id, card=card, kind=self.config.kind,
                    accepted=decision.accepted, ts=now_ms,
                    lat_e6=fix.lat_e6 if fix else 0, lon_e6=fix.lon_e6 if fix else 0,
                    trip_id=self.config.trip_id, reason=decision.reason,
                ).signed(self.config.secret))
                seq = tap.seq
            except SpoolFull:
                self.taps_refused_spool_full += 1
                decision = Decision(False, "spool_full")
            if decision.accepted and self.config.kind == "entry":
                self.recent.remember(card, now_ms)
        self.feedback.decided(card, seq, decision, (time.monotonic() - seen_monotonic) * 1000)
        self._check_alarm()
        self._wake.set()
        return decision

    # -- MQTT callbacks ---------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason_code: Any,
                    _p: Any) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        t = self.config.topics
        # The whole list (retained) once per connection, then only its changes.
        client.subscribe([(t.receipt(self.config.device_id), 1),
                          (f"{t.denylist}/changes", 1), (t.denylist, 1)])
        self._snapshot_subscribed = True
        self.spool.retry_all_now()
        self._connected.set()
        self._publish_status(online=True)
        self._wake.set()
        log.info("connected; %d taps waiting for receipts", self.spool.depth)

    def _on_disconnect(self, *_a: Any) -> None:
        self._connected.clear()
        log.info("disconnected from the broker; %d taps wait in the spool", self.spool.depth)
        self._set_will()  # the next connection's will carries the spool as it is then

    def _set_will(self) -> None:
        self.client.will_set(self.config.topics.status(self.config.device_id),
                             json.dumps(self._status(online=False)), qos=1, retain=True)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            if msg.topic.endswith("/receipt"):
                self._receipt(bytes(msg.payload))
            elif msg.topic.startswith(self.config.topics.denylist):
                self._denylist(bytes(msg.payload))
        except Exception:  # a bad message must not stop the network loop
            log.exception("message on %s not handled", msg.topic)

    def _receipt(self, payload: bytes) -> None:
        try:
            receipt = Receipt.parse(payload)
        except WireError as exc:
            log.warning("malformed receipt refused: %s", exc)
            return
        if receipt.device_id != self.config.device_id or not receipt.verify(self.config.secret):
            log.warning("receipt for seq %s not signed with this device's key: ignored",
                        receipt.seq)
            return
        if self.spool.receipted(receipt.seq):
            if receipt.status == "rejected":
                # Final like every receipt: sending it again would get the same answer.
                # The crew should hear of it: a validator on the wrong vehicle or with a
                # wrong clock has every tap rejected.
                log.warning("tap %s rejected by the gateway (%s): dropped from the spool",
                            receipt.seq, receipt.reason)
            self.feedback.receipted(receipt)
            self._check_alarm()

    def _denylist(self, payload: bytes) -> None:
        if self.config.denylist_key is None:
            return
        held, provisional = self.denylist.key_id, len(self.denylist.provisional)
        try:
            changed = self.denylist.apply(payload, self.config.denylist_key)
        except WireError as exc:
            log.warning("deny list message refused: %s", exc)
            return
        if held is not None and self.denylist.key_id != held:
            log.warning("deny list signed with key %s, the list held was built under %s: "
                        "started afresh", self.denylist.key_id, held)
        if provisional and not self.denylist.provisional:
            log.info("deny list snapshot under key %s taken: the %d cards kept from the "
                     "old list are replaced by it", self.denylist.key_id, provisional)
        if changed:
            self.spool.save_state("denylist", self.denylist.to_json())
        wants_snapshot = self.denylist.needs_snapshot or self.denylist.base < 0
        if wants_snapshot != self._snapshot_subscribed:
            topic = self.config.topics.denylist
            if wants_snapshot:
                self.client.subscribe(topic, 1)
            else:
                self.client.unsubscribe(topic)
            self._snapshot_subscribed = wants_snapshot

    def _load_denylist(self) -> DenyList:
        """The list kept in the spool; one built under another key than ours only as
        provisional cards (`DenyList.restore`)."""
        saved = self.spool.load_state("denylist")
        kept = DenyList.restore(saved, self.config.denylist_key)
        if saved and self.config.denylist_key is not None and kept.key_id is None:
            # After a key rotation or an upgrade: the old list may carry a forged version
            # that would hide every real update, but its cards are safe to keep denying,
            # offline too, until the retained snapshot replaces them on connecting.
            log.warning("deny list kept on disk was not built under this deny-list key: "
                        "its version dropped, its %d cards denied until the network's "
                        "snapshot arrives", len(kept.provisional))
        return kept

    # -- publishing -------------------------------------------------------------
    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                if self._drop.is_set():
                    self._drop.clear()
                    self._disconnect()
                elif self._offline_until and time.monotonic() >= self._offline_until:
                    self._offline_until = 0.0
                    self._connect()
                    log.info("back from offline; connecting to the broker")
                if self._connected.is_set():
                    self._publish_due_taps()
                    self._publish_position()
                    since = time.monotonic() - self._last_status
                    # Operations watch spool depth: report a change within a second or so.
                    if since > HEARTBEAT_S or (since > 1.0 and
                                               self.spool.depth != self._status_depth):
                        self._publish_status(online=True)
            except Exception:
                log.exception("publishing failed; will retry")

    def _publish_due_taps(self) -> None:
        now_ms = int(self.clock() * 1000)
        due_taps = self.spool.due(now_ms, INFLIGHT_WINDOW)
        if not due_taps:
            return
        topic = self.config.topics.tap(self.config.device_id)
        sent = []
        for seq, payload in due_taps:  # in seq order
            info = self.client.publish(topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break
            sent.append(seq)
        self.spool.sent(sent, now_ms)

    def _publish_position(self) -> None:
        fix = self.gps.latest() if self.gps else None
        if fix is None or not due(self._last_position_ms, fix, self.config.cadence):
            return
        position = Position(device_id=self.config.device_id, vehicle_id=self.config.vehicle_id,
                            route_id=self.config.route_id, ts=fix.ts_ms, lat_e6=fix.lat_e6,
                            lon_e6=fix.lon_e6, speed_cms=fix.speed_cms,
                            bearing_deg=fix.bearing_deg, trip_id=self.config.trip_id
                            ).signed(self.config.secret)
        # QoS 0 and only while connected: a position is perishable, and an outage must
        # not release a flood of stale ones when it ends.
        self.client.publish(self.config.topics.pos(self.config.device_id), position.encode(),
                            qos=0)
        self._last_position_ms = fix.ts_ms

    def _status(self, online: bool) -> dict[str, Any]:
        return {"device_id": self.config.device_id, "vehicle_id": self.config.vehicle_id,
                "route_id": self.config.route_id, "online": online,
                "spool_depth": self.spool.depth, "spool_capacity": self.spool.capacity,
                "spool_full": self.spool.full,
                "refused_spool_full": self.taps_refused_spool_full,
                "denylist_version": self.denylist.version, "software": __version__,
                "ts": int(self.clock() * 1000)}

    def _publish_status(self, online: bool) -> None:
        self._last_status = time.monotonic()
        self._status_depth = self.spool.depth
        self.client.publish(self.config.topics.status(self.config.device_id),
                            json.dumps(self._status(online)), qos=1, retain=True)

    def _check_alarm(self) -> None:
        full = self.spool.full
        if full != self._alarm:
            self._alarm = full
            self.feedback.alarm("spool_full", full)
            if self._connected.is_set():
                self._publish_status(online=True)

    def status(self) -> dict[str, Any]:
        return self._status(self.connected)
