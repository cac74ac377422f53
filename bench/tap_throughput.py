"""End-to-end tap throughput and tap-to-receipt latency, beside the limits they approach.

    python -m bench.tap_throughput [--taps 20000] [--gateways 1] [--rates 1000]

Measures, in one run on one machine:
  1. raw Mosquitto QoS 1 publish->subscribe rate (same publishers, same payloads);
  2. PostgreSQL's rate for the same rows a tap writes, inserted in batches of 500;
  3. signed taps -> Mosquitto -> gateway(s) -> PostgreSQL -> receipts: taps/s sustained;
  4. tap-to-receipt latency p50/p99 at steady rates (default 1,000 taps/s);
  5. CPU per tap in the end-to-end burst, from /proc: the gateway process(es), the
     broker, and the PostgreSQL backends connected to the benchmark's database.

The load generator costs almost nothing, so that the figures are the gateway's: every
tap is signed before the clock starts, one C `mosquitto_pub -l` per device publishes the
lines written to its stdin (one line, one QoS 1 message), and one C `mosquitto_sub`
prints each message with its arrival time. Python only writes bytes into pipes and
counts lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from collections import Counter
from typing import Any

from bench.common import Stack, now, percentile, summary
from bench.results import write_figures
from transit.wire import Tap

TS0 = 1764313202123
PROBE = b"probe"


CARD_GAP_MS = 2 * 3_600_000
"""How far apart in `ts` one card's taps are: a rider's next trip, not a repeat."""


def make_payloads(stack: Stack, n: int, start_seq: int = 1, ts0: int = TS0
                  ) -> list[tuple[str, bytes]]:
    """`n` signed taps as (device_id, payload), devices and cards taken in turn.

    A card's taps are `CARD_GAP_MS` apart, as a rider's trips are: each is priced as a
    new trip (a fare, a transfer, a capped ride), none as a repeat of the one before.
    (Until 2026-12-04 they were 1 ms apart per tap: a card's second tap onwards was a
    repeat within `repeat_tap_seconds`, answered `not_charged` with no entry posted,
    so the burst measured mostly the path that posts nothing.)
    """
    devices = list(stack.devices.items())
    n_cards = len(stack.cards)
    out = []
    for i in range(n):
        device_id, secret = devices[i % len(devices)]
        seq = start_seq + i // len(devices)
        card = stack.cards[i % n_cards]
        tap = Tap(device_id=device_id, seq=seq, vehicle_id=f"BUS-{device_id[-4:]}",
                  route_id="R1", card=card, kind="entry", accepted=True,
                  ts=ts0 + (i // n_cards) * CARD_GAP_MS + i, lat_e6=-7257500,
                  lon_e6=112752100).signed(secret)
        out.append((device_id, tap.encode()))
    return out


class Publishers:
    """One `mosquitto_pub -l` per device: each line written to its stdin is one message."""

    def __init__(self, port: int, topic_of: dict[str, str], nodelay: bool = False) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for device_id, topic in topic_of.items():
            cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                   "-t", topic, "-l", "-M", "1000", "-i", f"pub-{uuid.uuid4().hex[:10]}"]
            if nodelay:
                cmd.append("--nodelay")
            self.procs[device_id] = subprocess.Popen(cmd, stdin=subprocess.PIPE, bufsize=0)
        time.sleep(1.0)  # let every publisher connect before the clock starts

    def send(self, device_id: str, line: bytes) -> None:
        """Hand one payload to its device's publisher (it publishes on reading the line)."""
        stdin = self.procs[device_id].stdin
        assert stdin is not None
        stdin.write(line + b"\n")

    def send_all(self, payloads: list[tuple[str, bytes]]) -> None:
        """Write every device's payloads at once (a thread per pipe), then close the pipes."""
        per_device: dict[str, list[bytes]] = {d: [] for d in self.procs}
        for device_id, payload in payloads:
            per_device[device_id].append(payload + b"\n")

        def write(device_id: str) -> None:
            stdin = self.procs[device_id].stdin
            assert stdin is not None
            stdin.write(b"".join(per_device[device_id]))

        threads = [threading.Thread(target=write, args=(d,)) for d in self.procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        """Close the pipes; each publisher exits once its broker has all its messages."""
        for proc in self.procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs.values():
            proc.wait(timeout=600)


def wait_for_probe(probed: threading.Event, port: int, probe_topic: str) -> None:
    """Publish PROBE on `probe_topic` until a subscriber's reader sets `probed` (it is
    subscribed once its own probe comes back); RuntimeError after 10 s."""
    deadline = time.monotonic() + 10
    while not probed.is_set():
        if time.monotonic() > deadline:
            raise RuntimeError("the subscriber never saw its probe message")
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                        "-t", probe_topic, "-m", PROBE.decode()], check=True)
        probed.wait(0.2)


class Subscriber:
    """`mosquitto_sub` (QoS 1) printing `arrival-time payload` per message; kept in memory."""

    def __init__(self, port: int, topic: str, probe_topic: str) -> None:
        self.lines: list[bytes] = []
        self.probed = threading.Event()
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", topic,
             "-F", "@s.@N %p", "-i", f"sub-{uuid.uuid4().hex[:10]}"],
            stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for_probe(self.probed, port, probe_topic)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith(b" " + PROBE + b"\n"):
                self.probed.set()
                continue
            self.lines.append(line)

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def arrival(self, index: int) -> float:
        """Wall-clock arrival time of the index-th message."""
        return float(self.lines[index].split(b" ", 1)[0])

    def messages(self) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for line in self.lines:
            stamp, payload = line.split(b" ", 1)
            out.append((float(stamp), json.loads(payload)))
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def timed_burst(stack: Stack, payloads: list[tuple[str, bytes]], prefix: str,
                answer: str, statuses: Counter[str] | None = None) -> tuple[float, float]:
    """Publish every payload at once on `{prefix}/{device}/tap`; count `answer` messages
    (and, given `statuses`, add the receipts' statuses to it).

    Returns (messages per second from the first write to the last arrival, seconds the
    publishing took).
    """
    port = stack.broker.port
    sub = Subscriber(port, f"{prefix}/+/{answer}", f"{prefix}/PROBE/{answer}")
    pubs = Publishers(port, {d: f"{prefix}/{d}/tap" for d in stack.devices})
    t0 = now()
    pubs.send_all(payloads)
    pubs.close()
    t_pub = now() - t0
    ok = sub.wait_for(len(payloads), 1800)
    sub.close()
    if not ok:
        raise RuntimeError(f"only {len(sub.lines)} of {len(payloads)} answers arrived")
    if statuses is not None:
        statuses.update(body.get("status", "?") for _, body in sub.messages())
    return len(payloads) / (sub.arrival(len(payloads) - 1) - t0), t_pub


def _raw_rows(tag: str, start: int, stop: int) -> tuple[list[dict], list[dict]]:  # type: ignore[type-arg]
    """Inbox rows and fare entries of charged taps `tag:start` .. `tag:stop-1`."""
    taps = [{"tap_id": f"{tag}:{i}", "device_id": "RAW", "seq": i, "digest": "0" * 64,
             "card": "04FFFFFFFF", "kind": "entry", "accepted": True, "reason": None,
             "ts": TS0, "vehicle_id": "V", "route_id": "R1", "trip_id": None,
             "lat_e6": 0, "lon_e6": 0, "service_date": "2025-11-28",
             "status": "charged", "fare": 5000, "received_ms": TS0}
            for i in range(start, stop)]
    entries = [{"idem_key": t["tap_id"], "kind": "fare", "digest": "0" * 64,
                "amount": 5000, "posted_ms": TS0, "currency": "IDR", "card": None,
                "tap_id": t["tap_id"], "reference": None, "service_date": "2025-11-28",
                "operator_id": "x", "route_id": "R1", "category": "regular"} for t in taps]
    return taps, entries


def _drop_raw_rows(engine, tag: str) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM postings WHERE entry_id IN "
                          f"(SELECT id FROM entries WHERE idem_key LIKE '{tag}:%')"))
        conn.execute(text(f"DELETE FROM entries WHERE idem_key LIKE '{tag}:%'"))
        conn.execute(text(f"DELETE FROM taps WHERE tap_id LIKE '{tag}:%'"))


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
            taps, entries = _raw_rows("raw", b, min(n, b + 500))
            conn.execute(insert(TapRecord), taps)
            ids = conn.execute(insert(Entry).returning(Entry.id, sort_by_parameter_order=True),
                               entries).scalars().all()
            conn.execute(insert(Posting), [
                {"entry_id": i, "account_id": acct, "amount": a} for i in ids
                for a in (-5000, 5000)])
    rate = n / (time.perf_counter() - t0)
    _drop_raw_rows(engine, "raw")
    engine.dispose()
    return rate


def pg_unnest_rate(stack: Stack, n: int) -> float:
    """The same rows through the gateway's own write path: the inbox rows in one
    `unnest` statement, entries, postings and balances in one more, 500 taps a
    transaction (no reads, no pricing)."""
    from sqlalchemy import text

    from fare_gateway.adapters.models import TapRecord
    from ledger.adapters.bulk import bulk_insert, insert_entries_pg
    from ledger.adapters.db import make_engine, session_factory
    from ledger.adapters.models import Card, Entry, Posting

    engine = make_engine(stack.db_url)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        acct = s.execute(text("SELECT min(id) FROM accounts")).scalar()
    t0 = time.perf_counter()
    for b in range(0, n, 500):
        with sessions.begin() as s:
            taps, entries = _raw_rows("raw2", b, min(n, b + 500))
            bulk_insert(s, TapRecord.__table__, taps)
            insert_entries_pg(s, Entry.__table__, Posting.__table__, Card.__table__, entries,
                              [(e["idem_key"], acct, a) for e in entries
                               for a in (-5000, 5000)], {})
    rate = n / (time.perf_counter() - t0)
    _drop_raw_rows(engine, "raw2")
    engine.dispose()
    return rate


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads) so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name, which is in parentheses and may hold spaces.
        after = stat.read().rsplit(")", 1)[1].split()
    return (int(after[11]) + int(after[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU spent by the gateways, the broker and the database's backends over a span.

    PostgreSQL's backends are those connected to the benchmark's database (the gateways'
    pooled connections), found in `pg_stat_activity` at each reading: one that starts
    during the span counts from zero; the server's shared background processes (WAL
    writer, checkpointer) are not counted, since other databases share them.
    """

    def __init__(self, stack: Stack, gateway_pids: list[int]) -> None:
        import psycopg

        self.gateway_pids = gateway_pids
        self.broker_pid = stack.broker.proc.pid if stack.broker.proc else None
        url = stack.db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.conn = psycopg.connect(url, autocommit=True) \
            if stack.db_url.startswith("postgresql") else None

    def _backends(self) -> dict[int, float]:
        if self.conn is None:
            return {}
        pids = [row[0] for row in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()]
        out = {}
        for pid in pids:
            try:
                out[pid] = cpu_seconds(pid)
            except OSError:  # gone since the query
                pass
        return out

    def reading(self) -> dict[str, Any]:
        """CPU seconds so far: per gateway, the broker, per database backend."""
        return {"gateways": [cpu_seconds(p) for p in self.gateway_pids],
                "broker": cpu_seconds(self.broker_pid) if self.broker_pid else 0.0,
                "backends": self._backends()}

    @staticmethod
    def spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        """CPU seconds spent between two readings, by part."""
        return {
            "gateway": sum(a - b for a, b in zip(after["gateways"], before["gateways"],
                                                 strict=True)),
            "broker": after["broker"] - before["broker"],
            "postgresql": sum(cpu - before["backends"].get(pid, 0.0)
                              for pid, cpu in after["backends"].items())}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def latency_at(stack: Stack, rate: int, seconds: int, start_seq: int,
               prefix: str = "transit/v1/dev", answer: str = "receipt"
               ) -> tuple[list[float], int]:
    """Publish signed taps at a steady rate on `{prefix}/{device}/tap`; time each from its
    write until its answer (the receipt; with `answer="tap"` the tap itself, unprocessed).

    Returns the latencies in ms and how many answers never came."""
    total = rate * seconds
    payloads = make_payloads(stack, total, start_seq, ts0=TS0 + 10_000_000)
    port = stack.broker.port
    sub = Subscriber(port, f"{prefix}/+/{answer}", f"{prefix}/PROBE/{answer}")
    pubs = Publishers(port, {d: f"{prefix}/{d}/tap" for d in stack.devices}, nodelay=True)
    n_devices = len(stack.devices)
    sent: list[float] = [0.0] * total
    t0 = time.perf_counter()
    for i, (device_id, payload) in enumerate(payloads):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)
        sent[i] = now()
        pubs.send(device_id, payload)
    sub.wait_for(total, 60)
    pubs.close()
    sub.close()
    index = {d: k for k, d in enumerate(stack.devices)}
    lat = []
    for arrived, body in sub.messages():
        i = (body["seq"] - start_seq) * n_devices + index[body["device_id"]]
        if 0 <= i < total:
            lat.append((arrived - sent[i]) * 1000)
    missing = total - len(lat)
    if missing:
        what = "receipts" if answer == "receipt" else "messages"
        print(f"    WARNING: {missing} {what} missing")
    return lat, missing


def _latency_figures(rate: int, seconds: int, lat: list[float], missing: int
                     ) -> dict[str, Any]:
    return {"rate_taps_s": rate, "seconds": seconds,
            "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
            "max_ms": round(max(lat), 1) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
            "receipts_missing": missing}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--taps", type=int, default=20_000)
    ap.add_argument("--gateways", type=int, default=1)
    ap.add_argument("--rates", default="1000", help="steady rates for latency, e.g. 100,500,1000")
    ap.add_argument("--latency-seconds", type=int, default=10)
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--cards", type=int, default=0,
                    help="funded cards, taken in turn (default: a third of the taps, at "
                         "least 2,000: a rider's three trips)")
    ap.add_argument("--json", metavar="FILE", help="also write the key figures to FILE")
    args = ap.parse_args()
    figures: dict[str, Any] = {"gateways": args.gateways, "taps": args.taps,
                               "raw_latency": [], "latency": []}

    stack = Stack.create(args.db, n_cards=args.cards or max(2000, args.taps // 3))
    try:
        payloads = make_payloads(stack, args.taps)
        print(f"tap payload: {len(payloads[0][1])} bytes; {len(stack.devices)} devices, "
              f"{len(stack.cards)} cards; database {args.db}; publishers: one mosquitto_pub "
              f"per device; subscriber: mosquitto_sub")
        raw, _ = timed_burst(stack, payloads, "bench/raw", "tap")
        figures["raw_mqtt_msg_s"] = round(raw)
        print(f"1. raw Mosquitto QoS 1 publish->subscribe: {raw:,.0f} msg/s")
        rates = [int(r) for r in args.rates.split(",")]
        start_seq = 10_000_000
        for rate in rates:
            lat, _ = latency_at(stack, rate, min(args.latency_seconds, 5), start_seq,
                                "bench/raw", "tap")
            figures["raw_latency"].append(_latency_figures(rate, min(args.latency_seconds, 5),
                                                           lat, 0))
            print(f"   raw Mosquitto publish->subscribe at {rate:,} msg/s: {summary(lat)}")
        rows = pg_insert_rate(stack, args.taps) if args.db == "postgresql" else float("nan")
        figures["db_insert_taps_s"] = None if rows != rows else round(rows)
        print(f"2. database, a tap's rows inserted 500 taps per transaction: {rows:,.0f} taps/s")
        if args.db == "postgresql":
            unnest = pg_unnest_rate(stack, args.taps)
            figures["db_unnest_taps_s"] = round(unnest)
            print(f"   the same rows through the gateway's unnest statements: "
                  f"{unnest:,.0f} taps/s")
        gateways = [stack.gateway(f"gw{i}") for i in range(args.gateways)]
        meter = CpuMeter(stack, [g.proc.pid for g in gateways if g.proc is not None])
        before = meter.reading()
        statuses: Counter[str] = Counter()
        e2e, t_pub = timed_burst(stack, payloads, "transit/v1/dev", "receipt", statuses)
        spent = CpuMeter.spent(before, meter.reading())
        meter.close()
        figures.update(end_to_end_taps_s=round(e2e), publish_s=round(t_pub, 2))
        print(f"    (publishing took {t_pub:.1f}s)")
        figures["receipts"] = dict(statuses)
        print(f"3. end to end, {args.gateways} gateway(s): {e2e:,.0f} taps/s "
              f"({args.taps} taps, all receipted: {dict(sorted(statuses.items()))})")
        per_tap = {part: round(seconds / args.taps * 1e6, 1) for part, seconds in spent.items()}
        figures["cpu_us_per_tap"] = per_tap
        print(f"5. CPU per tap in that burst (/proc): gateway{'s' if args.gateways > 1 else ''} "
              f"{per_tap['gateway']:.0f} us (goal <= 100), broker {per_tap['broker']:.0f} us, "
              f"PostgreSQL backends {per_tap['postgresql']:.0f} us; all three "
              f"{sum(per_tap.values()):.0f} us, so {os.cpu_count()} cores carry at most "
              f"{os.cpu_count() * 1e6 / max(1.0, sum(per_tap.values())):,.0f} taps/s")
        for rate in rates:
            lat, missing = latency_at(stack, rate, args.latency_seconds, start_seq)
            figures["latency"].append(_latency_figures(rate, args.latency_seconds, lat,
                                                       missing))
            start_seq += rate * args.latency_seconds
            print(f"4. tap-to-receipt at {rate:,} taps/s for {args.latency_seconds}s: "
                  f"{summary(lat)}")
        for g in gateways:
            g.stop()
        db_limit = figures.get("db_unnest_taps_s") or rows
        print(f"   limits: end to end is {e2e / raw:.0%} of raw MQTT and "
              f"{e2e / db_limit:.0%} of the database's rate for the same rows through the "
              f"gateway's statements")
        write_figures(args.json, "tap_throughput", figures)
    finally:
        stack.close()


if __name__ == "__main__":
    main()
