"""Shared set-up for benchmarks: a private broker, a fresh database, devices and cards."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fare_gateway.schema import upgrade  # noqa: E402
from ledger.adapters.db import make_engine, session_factory  # noqa: E402
from testbed.broker import Broker  # noqa: E402
from testbed.gateway import Gateway  # noqa: E402
from testbed.postgres import create_pg_database, drop_pg_database  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> str:
    return (f"p50 {percentile(values, 50):.1f} ms, p99 {percentile(values, 99):.1f} ms, "
            f"max {max(values):.1f} ms, mean {statistics.fmean(values):.1f} ms")


@dataclass
class Stack:
    """A broker, a migrated database with devices and funded cards, ready for gateways."""

    broker: Broker
    db_url: str
    env: dict[str, str]
    devices: dict[str, bytes]
    cards: list[str]
    workdir: Path

    @classmethod
    def create(cls, db: str = "postgresql", n_devices: int = 50, n_cards: int = 2000) -> Stack:
        from fare_gateway.devices import add_device

        workdir = Path(tempfile.mkdtemp(prefix="transit-bench-"))
        broker = Broker(workdir / "mosquitto").start()
        db_url = create_pg_database() if db == "postgresql" else f"sqlite:///{workdir}/b.db"
        engine = make_engine(db_url)
        upgrade(engine)
        sessions = session_factory(engine)
        devices = {}
        with sessions.begin() as s:
            for i in range(n_devices):
                row, _ = add_device(s, f"BENCH-{i:04d}", f"BUS-{i:04d}", key=None)
                devices[row.device_id] = row.plain_secret
        engine.dispose()
        cards = [f"04C0{i:08X}" for i in range(n_cards)]
        fund_cards_batched(db_url, cards, 10_000_000)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
        env.update(TRANSIT_DATABASE_URL=db_url, TRANSIT_MQTT_URL=broker.url,
                   TRANSIT_TOPIC_PREFIX="transit/v1", TRANSIT_SHARE_GROUP="gw",
                   TRANSIT_LOG_LEVEL="WARNING",
                   # the tap benchmarks replay a fixed day of November 2025
                   TRANSIT_TAP_MAX_AGE_DAYS="3650")
        return cls(broker, db_url, env, devices, cards, workdir)

    def gateway(self, name: str) -> Gateway:
        env = dict(self.env, TRANSIT_GATEWAY_ID=f"{name}-{uuid.uuid4().hex[:6]}")
        return Gateway(env, self.workdir / f"{name}.log").start()

    def close(self) -> None:
        """Stop the broker, drop the database and remove the work folder (logs included:
        set TRANSIT_BENCH_KEEP=1 to keep the folder for a look at the gateway's log)."""
        self.broker.stop()
        if self.db_url.startswith("postgresql"):
            drop_pg_database(self.db_url)
        if not os.environ.get("TRANSIT_BENCH_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def _open_cards(db_url: str, cards: list[str], category: str) -> None:
    from ledger.fingerprint import Fingerprints
    from ledger.services import Ledger

    engine = make_engine(db_url)
    ledger = Ledger(engine, "IDR", fingerprints=Fingerprints(None))
    with session_factory(engine).begin() as s:
        for card in cards:
            ledger.open_card(s, card, category)
    engine.dispose()


def fund_cards_batched(db_url: str, cards: list[str], amount: int,
                       category: str = "regular", processes: int = 2,
                       batch: int = 1000) -> None:
    """Issue and fund many cards through the ledger's own services, faster than
    testbed.cards.fund_cards: the same open_card and top-up entry (reference
    `fund-{card}`), the cards opened by `processes` processes at once and the top-ups
    posted `batch` to a transaction. (One by one, 5,000 cards took 43 s on the bench
    machine: 2 ms to open a card, 6.6 ms to top it up alone; batched, 1,000 top-ups
    take 0.35 s.)"""
    from ledger.domain import topup_entry
    from ledger.fingerprint import Fingerprints
    from ledger.services import Ledger

    shares = [(db_url, cards[k::processes], category) for k in range(processes)]
    run_processes(_open_cards, [s for s in shares if s[1]])
    engine = make_engine(db_url)
    ledger = Ledger(engine, "IDR", fingerprints=Fingerprints(None))
    sessions = session_factory(engine)
    for k in range(0, len(cards), batch):
        with sessions.begin() as s:
            ledger.post(s, [topup_entry(card=c, amount=amount, reference=f"fund-{c}",
                                        currency="IDR") for c in cards[k:k + batch]])
    engine.dispose()


def run_processes(target, args_list: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=target, args=args) for args in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


def now() -> float:
    return time.time()
