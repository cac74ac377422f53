"""The gateway's background work, per run of each: what the occupancy thread, the
TripUpdates feed, the headways and the schedule cost in CPU on the Transjakarta network
with a fleet of live vehicles in Redis.

    .venv/bin/python -m bench.background [--vehicles 4300] [--db FILE] [--rounds 5]

`--db`: a SQLite database with the Transjakarta feed imported (made there when it is
not, in a temporary directory when not given; about a minute). Each figure is the thread CPU time
(`time.thread_time`) of one run, the median of `--rounds`, beside the one Redis read of
every vehicle (`TrackingStore.vehicles`) it is to be compared with.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.environment import REDIS_URL, transjakarta_feed


def cpu_ms(run: Callable[[], Any], rounds: int) -> float:
    """The median thread CPU of `rounds` runs, in ms."""
    spent = []
    for _ in range(rounds):
        started = time.thread_time()
        run()
        spent.append((time.thread_time() - started) * 1000)
    return statistics.median(spent)


class NoTaps:
    """No taps: the occupancy thread's own reads are what is measured."""

    def charged_since(self, received_ms: int, limit: int) -> Sequence[Any]:
        return []

    def charged_recent(self, since_ms: int, limit: int) -> Sequence[Any]:
        return []

    def charged_ids(self, since_ms: int, before_ms: int) -> set[str]:
        return set()

    def charged_taps(self, tap_ids: Collection[str]) -> Sequence[Any]:
        return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.background")
    ap.add_argument("--vehicles", type=int, default=4300)
    ap.add_argument("--db", help="SQLite file with the Transjakarta feed imported")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from fare_gateway.schema import upgrade
    from ledger.adapters.db import make_engine, session_factory
    from tracking.gtfs import import_feed
    from tracking.headways_http import HeadwayOffice
    from tracking.occupancy_live import LiveOccupancy, VehicleProgress
    from tracking.predict import ConstantSpeed
    from tracking.predictions_http import PredictionsDeps
    from tracking.schedule_load import ScheduleSource, feed_stamp, read_schedule
    from tracking.store import TrackingStore, VehicleRecord, redis_client

    with tempfile.TemporaryDirectory(prefix="transit-bench-bg-") as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "tj.db"
        fresh = not path.exists()
        engine = make_engine(f"sqlite:///{path}")
        sessions = session_factory(engine)
        upgrade(engine)  # a database made by an older version: migrated first
        if fresh:
            with sessions.begin() as s:
                import_feed(s, transjakarta_feed())
        with sessions() as s:
            started = time.thread_time()
            schedule = read_schedule(s)
            read_ms = (time.thread_time() - started) * 1000
            check_ms = cpu_ms(lambda: feed_stamp(s), 20)

        store = TrackingStore(redis_client(REDIS_URL), f"bench-bg-{uuid.uuid4().hex[:8]}")
        rng = random.Random(7)
        now = int(time.time() * 1000)
        day = datetime.now(schedule.zone).strftime("%Y%m%d")
        trips = sorted(schedule.trips.values(), key=lambda t: t.trip_id)
        records = []
        for i in range(args.vehicles):
            trip = trips[i % len(trips)]
            pattern = schedule.patterns[trip.pattern_id]
            dist = rng.uniform(0, pattern.length_m * 0.9)
            lat, lon = pattern.shape.point_at(dist)
            progress = " ".join(f"{now - k * 5000}:{int(dist - k * 50)}"
                                for k in range(5, -1, -1))
            records.append(VehicleRecord(
                f"BUS-{i:04d}", f"BUS-{i:04d}-A", trip.route_id, trip.feed_trip_id,
                now - 2000, lat, lon, 800, 90, None, None, pattern.pattern_id, int(dist),
                day, "matched", progress))
        try:
            for k in range(0, len(records), 500):
                store.save(records[k:k + 500])
            source = ScheduleSource(sessions)
            source()
            times = ConstantSpeed()
            occupancy = LiveOccupancy(NoTaps(), VehicleProgress(store), dict, source)
            occupancy.tick()  # the first: every vehicle
            feed = PredictionsDeps(store, source, lambda: times, lambda *a, **k: lambda v: v,
                                   cache_s=0.0)
            office = HeadwayOffice(sessions, store, source, lambda: times)
            route = records[0].route_id
            figures = [
                ("schedule read (read_schedule + build)", read_ms),
                ("schedule check (the import's stamp)", check_ms),
                ("every vehicle read from Redis (TrackingStore.vehicles)",
                 cpu_ms(store.vehicles, args.rounds)),
                ("occupancy tick, nothing new", cpu_ms(occupancy.tick, args.rounds)),
                ("occupancy: every vehicle's trip and progress (HMGET)",
                 cpu_ms(VehicleProgress(store).vehicles, args.rounds)),
                ("one route's headways, the vehicles read again",
                 cpu_ms(lambda: (setattr(office, "_fleet", None), office.route(route)),
                        args.rounds)),
                ("TripUpdates build (protobuf)", cpu_ms(lambda: feed.feed(), args.rounds)),
                ("TripUpdates build and its JSON",
                 cpu_ms(lambda: feed.feed(as_json=True), args.rounds)),
                ("one route's headways", cpu_ms(lambda: office.route(route),
                                                args.rounds)),
            ]
        finally:
            keys = list(store.redis.scan_iter(match=f"{store.ns}:*", count=1000))
            for k in range(0, len(keys), 1000):
                store.redis.delete(*keys[k:k + 1000])
            engine.dispose()
    print(f"{args.vehicles} vehicles on {len(schedule.trips)} trips of the Transjakarta "
          f"feed; thread CPU per run, median of {args.rounds}")
    for name, ms in figures:
        print(f"  {name:<58} {ms:9.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
