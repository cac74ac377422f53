"""End-to-end tap throughput and tap-to-receipt latency, beside the limits they approach.

    python bench/tap_throughput.py [--taps 20000] [--publishers 4] [--gateways 1]

Measures, in one run on one machine:
  1. raw Mosquitto QoS 1 publish->subscribe rate (same publishers, same payload size);
  2. PostgreSQL's rate for the same rows a tap writes, inserted in batches of 500;
  3. signed taps -> Mosquitto -> gateway(s) -> PostgreSQL -> receipts: taps/s sustained;
  4. tap-to-receipt latency p50/p99 at a steady 1,000 taps/s.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Stack, now, percentile, run_processes, summary
from transit.wire import Tap

TS0 = 1764313202123


def client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}",
                    protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    return c


def make_payloads(stack: Stack, n: int, start_seq: int = 1) -> list[tuple[str, bytes]]:
    devices = list(stack.devices.items())
    out = []
    for i in range(n):
        device_id, secret = devices[i % len(devices)]
        seq = start_seq + i // len(devices)
        card = stack.cards[i % len(stack.cards)]
        tap = Tap(device_id=device_id, seq=seq, vehicle_id=f"BUS-{device_id[-4:]}",
                  route_id="R1", card=card, kind="entry", accepted=True,
                  ts=TS0 + i, lat_e6=-7257500, lon_e6=112752100).signed(secret)
        out.append((f"transit/v1/dev/{device_id}/tap", tap.encode()))
    return out


def publish_all(port: int, items: list[tuple[str, bytes]]) -> None:
    c = client(port, "pub")
    c.loop_start()
    infos = [c.publish(t, p, qos=1) for t, p in items]
    for info in infos:
        info.wait_for_publish(timeout=600)
    c.disconnect()
    c.loop_stop()


class Counter:
    """Counts messages on a subscription and notes the time of the last."""

    def __init__(self, port: int, topic: str, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.last = 0.0
        self.done = threading.Event()
        self.ready = threading.Event()
        self.client = client(port, "sub")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        self.ready.wait(10)

    def _on_message(self, *_a: object) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.last = now()
            self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def split(items: list, k: int) -> list[list]:  # type: ignore[type-arg]
    return [items[i::k] for i in range(k)]


def raw_mqtt_rate(stack: Stack, payloads: list[tuple[str, bytes]], publishers: int) -> float:
    raw = [(t.replace("transit/v1/dev", "bench/raw"), p) for t, p in payloads]
    counter = Counter(stack.broker.port, "bench/raw/+/tap", len(raw))
    t0 = now()
    run_processes(publish_all, [(stack.broker.port, part) for part in split(raw, publishers)])
    counter.done.wait(600)
    counter.close()
    return len(raw) / (counter.last - t0)


def pg_insert_rate(stack: Stack, n: int) -> float:
    """The rows a charged tap writes (inbox row, entry, two postings), 500 taps a transaction."""
    from sqlalchemy import insert, text

    from fare_gateway.adapters.models import TapRecord
    from ledger.adapters.db import make_engine
    from ledger.adapters.models import Entry, Posting

    engine = make_engine(stack.db_url)
    with engine.begin() as conn:
        acct = conn.execute(text("SELECT min(id) FROM accounts")).scalar()
    t0 = time.perf_counter()
    for b in range(0, n, 500):
        with engine.begin() as conn:
            taps = [{"tap_id": f"raw:{i}", "device_id": "RAW", "seq": i, "digest": "0" * 64,
                     "card": "04FFFFFFFF", "kind": "entry", "accepted": True, "reason": None,
                     "ts": TS0, "vehicle_id": "V", "route_id": "R1", "trip_id": None,
                     "lat_e6": 0, "lon_e6": 0, "service_date": "2025-11-28",
                     "status": "charged", "fare": 5000, "received_ms": TS0}
                    for i in range(b, min(n, b + 500))]
            conn.execute(insert(TapRecord), taps)
            ids = conn.execute(insert(Entry).returning(Entry.id, sort_by_parameter_order=True), [
                {"idem_key": f"raw:{t['seq']}", "kind": "fare", "digest": "0" * 64,
                 "amount": 5000, "posted_ms": TS0, "currency": "IDR", "card": None,
                 "tap_id": t["tap_id"], "reference": None, "service_date": "2025-11-28",
                 "operator_id": "x", "route_id": "R1", "category": "regular"}
                for t in taps]).scalars().all()
            conn.execute(insert(Posting), [
                {"entry_id": i, "account_id": acct, "amount": a} for i in ids
                for a in (-5000, 5000)])
    rate = n / (time.perf_counter() - t0)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM postings WHERE entry_id IN "
                          "(SELECT id FROM entries WHERE idem_key LIKE 'raw:%')"))
        conn.execute(text("DELETE FROM entries WHERE idem_key LIKE 'raw:%'"))
        conn.execute(text("DELETE FROM taps WHERE tap_id LIKE 'raw:%'"))
    engine.dispose()
    return rate


def end_to_end(stack: Stack, payloads: list[tuple[str, bytes]], publishers: int) -> float:
    counter = Counter(stack.broker.port, "transit/v1/dev/+/receipt", len(payloads))
    t0 = now()
    run_processes(publish_all, [(stack.broker.port, part)
                                for part in split(payloads, publishers)])
    t_pub = now()
    counter.done.wait(1800)
    counter.close()
    print(f"    (publishing took {t_pub - t0:.1f}s)")
    return len(payloads) / (counter.last - t0)


def latency_at(stack: Stack, rate: int, seconds: int, start_seq: int) -> list[float]:
    """Publish signed taps at a steady rate; time each until its receipt."""
    sent: dict[tuple[str, int], float] = {}
    lat: list[float] = []
    lock = threading.Lock()
    sub = client(stack.broker.port, "lat")
    ready = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        t = time.perf_counter()
        import json
        body = json.loads(msg.payload)
        with lock:
            s = sent.pop((body["device_id"], body["seq"]), None)
        if s is not None:
            lat.append((t - s) * 1000)

    sub.on_message = on_message
    sub.on_subscribe = lambda *a: ready.set()
    sub.subscribe("transit/v1/dev/+/receipt", qos=1)
    sub.loop_start()
    ready.wait(10)
    pub = client(stack.broker.port, "latpub")
    pub.loop_start()
    devices = list(stack.devices.items())
    total = rate * seconds
    t0 = time.perf_counter()
    for i in range(total):
        target = t0 + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        device_id, secret = devices[i % len(devices)]
        seq = start_seq + i // len(devices)
        tap = Tap(device_id=device_id, seq=seq, vehicle_id="BUS", route_id="R1",
                  card=stack.cards[i % len(stack.cards)], kind="entry", accepted=True,
                  ts=TS0 + 10_000_000 + i, lat_e6=-7257500, lon_e6=112752100).signed(secret)
        with lock:
            sent[(device_id, seq)] = time.perf_counter()
        pub.publish(f"transit/v1/dev/{device_id}/tap", tap.encode(), qos=1)
    deadline = time.perf_counter() + 60
    while len(lat) < total and time.perf_counter() < deadline:
        time.sleep(0.1)
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()
    if len(lat) < total:
        print(f"    WARNING: {total - len(lat)} receipts missing")
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--taps", type=int, default=20_000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--gateways", type=int, default=1)
    ap.add_argument("--latency-seconds", type=int, default=10)
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    args = ap.parse_args()

    stack = Stack.create(args.db)
    try:
        payloads = make_payloads(stack, args.taps)
        print(f"tap payload: {len(payloads[0][1])} bytes; {len(stack.devices)} devices, "
              f"{len(stack.cards)} cards; database {args.db}")
        raw = raw_mqtt_rate(stack, payloads, args.publishers)
        print(f"1. raw Mosquitto QoS 1 publish->subscribe: {raw:,.0f} msg/s "
              f"({args.publishers} paho publishers, 1 paho subscriber)")
        rows = pg_insert_rate(stack, args.taps) if args.db == "postgresql" else float("nan")
        print(f"2. database, a tap's rows inserted 500 taps per transaction: {rows:,.0f} taps/s")
        gateways = [stack.gateway(f"gw{i}") for i in range(args.gateways)]
        e2e = end_to_end(stack, payloads, args.publishers)
        print(f"3. end to end, {args.gateways} gateway(s): {e2e:,.0f} taps/s "
              f"({args.taps} taps, all receipted)")
        lat = latency_at(stack, 1000, args.latency_seconds, start_seq=10_000_000)
        print(f"4. tap-to-receipt at 1,000 taps/s for {args.latency_seconds}s: {summary(lat)}")
        for g in gateways:
            g.stop()
        print(f"   limits: end to end is {e2e / raw:.0%} of raw MQTT and "
              f"{e2e / rows:.0%} of the database's insert rate")
        _ = percentile
    finally:
        stack.close()


if __name__ == "__main__":
    main()
