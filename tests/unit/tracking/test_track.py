"""The durable track: the writer's queue, batches, outages and retention against a
hand-written table, and the SQLite table itself behind the writer and the endpoint."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from fare_gateway.http.errors import register_error_handlers
from ledger.adapters.db import Sessions, make_engine, session_factory
from tracking.adapters.models import vehicle_positions
from tracking.adapters.track_sql import SqlTrack
from tracking.store import VehicleRecord
from tracking.track import (
    DAY_MS,
    Pruned,
    TrackPoint,
    TrackUnavailable,
    TrackWriter,
    day_from_label,
    day_label,
    day_of,
    oldest_kept_day,
)
from tracking.tracks_http import MAX_POINTS, TracksDeps, page, tracks_blueprint
from transit.settings import Settings, SettingsError

NOW_MS = 1_764_547_200_000 + 10 * 3_600_000  # 2025-12-01T10:00Z


def record(ts: int, vehicle: str = "SBY-0042", lat_e6: int = -7_265_000) -> VehicleRecord:
    return VehicleRecord(vehicle, f"{vehicle}-A", "R1", "R1.001", ts, lat_e6, 112_750_000,
                         1250, 90, None, None)


def count(registry: CollectorRegistry, outcome: str) -> float:
    return registry.get_sample_value("transit_track_positions_total",
                                     {"outcome": outcome}) or 0.0


class Table:
    """A track table in memory that can be made unreachable."""

    def __init__(self) -> None:
        self.rows: list[VehicleRecord] = []
        self.batches: list[int] = []
        self.pruned: list[int] = []
        self.prepared: list[tuple[int, ...]] = []
        self.away = threading.Event()
        self.lock = threading.Condition()

    def prepare(self, days: Collection[int]) -> None:
        self.prepared.append(tuple(days))

    def write(self, records: Sequence[VehicleRecord]) -> None:
        if self.away.is_set():
            raise TrackUnavailable("the database is unreachable (test)")
        with self.lock:
            self.rows.extend(records)
            self.batches.append(len(records))
            self.lock.notify_all()

    def wait_rows(self, n: int, timeout: float = 10.0) -> None:
        """Until `n` rows are written (a batch comes from the writer's thread)."""
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.rows) >= n, timeout), self.batches

    def prune(self, before_day: int) -> Pruned:
        if self.away.is_set():
            raise TrackUnavailable("the database is unreachable (test)")
        self.pruned.append(before_day)
        return Pruned(before_day)


def writer(table: Table, keep_days: int = 30, **kwargs: Any
           ) -> tuple[TrackWriter, CollectorRegistry]:
    registry = CollectorRegistry()
    kwargs.setdefault("flush_s", 0.05)
    w = TrackWriter(None, registry, keep_days, table=table,  # type: ignore[arg-type]
                    clock=lambda: NOW_MS / 1000, **kwargs)
    return w, registry


# -- days ----------------------------------------------------------------------------------------

def test_a_day_is_kept_until_all_of_it_is_older_than_the_days_kept() -> None:
    today = day_of(NOW_MS)
    assert day_label(today) == "20251201" and day_from_label("20251201") == today
    assert oldest_kept_day(NOW_MS, 2) == today - 2  # 2025-11-29 10:00 is only 2 days old
    assert oldest_kept_day(today * DAY_MS, 2) == today - 2
    assert oldest_kept_day(today * DAY_MS - 1, 2) == today - 3
    assert Pruned(today, days=(today - 2, today - 1)).describe() == (
        "dropped 2 days of tracks before 2025-12-01: 2025-11-29, 2025-11-30")
    assert Pruned(today).describe() == "nothing to drop: no day of tracks before 2025-12-01"
    assert Pruned(today, positions=1200).describe() == (
        "deleted 1,200 positions dated before 2025-12-01")


# -- the writer ----------------------------------------------------------------------------------

def test_a_full_queue_drops_the_oldest_and_counts_them() -> None:
    table = Table()
    w, registry = writer(table, capacity=3)
    w.append([record(NOW_MS + i) for i in range(5)])
    assert count(registry, "dropped") == 2
    assert registry.get_sample_value("transit_track_queued") == 3
    w.start()
    table.wait_rows(1)
    w.stop()
    assert [r.ts for r in table.rows] == [NOW_MS + 2, NOW_MS + 3, NOW_MS + 4]
    assert count(registry, "written") == 3


def test_positions_are_written_in_batches_and_stop_writes_what_is_held() -> None:
    table = Table()
    w, registry = writer(table, batch_rows=100, flush_s=30)
    w.start()
    w.append([record(NOW_MS + i) for i in range(250)])  # two full batches at once ...
    table.wait_rows(200)  # two full batches
    w.append([record(NOW_MS + 1000)])  # ... and one position, written at stop
    w.stop()
    assert len(table.rows) == 251 and table.batches[-1] <= 51, table.batches
    assert count(registry, "written") == 251 and count(registry, "dropped") == 0
    # retention ran at start, and today's and tomorrow's days were made ready
    assert table.pruned == [oldest_kept_day(NOW_MS, 30)]
    assert table.prepared == [(day_of(NOW_MS), day_of(NOW_MS) + 1)]


def test_an_outage_keeps_the_positions_logs_once_and_writes_them_when_back(
        caplog: pytest.LogCaptureFixture) -> None:
    table = Table()
    table.away.set()
    w, registry = writer(table)
    with caplog.at_level(logging.INFO, logger="tracking.track"):
        w.start()
        for i in range(5):
            w.append([record(NOW_MS + i)])
            time.sleep(0.06)  # several batches meet the outage
        assert table.rows == [] and count(registry, "written") == 0
        table.away.clear()
        table.wait_rows(5)
        w.stop()
    assert [r.ts for r in table.rows] == [NOW_MS + i for i in range(5)]
    said = [r.getMessage() for r in caplog.records]
    assert sum("not written" in m for m in said) == 1, said
    assert sum("written again" in m for m in said) == 1, said
    assert count(registry, "dropped") == 0


def test_positions_of_a_day_past_retention_are_not_written_but_counted() -> None:
    table = Table()
    w, registry = writer(table, keep_days=2)
    old = (oldest_kept_day(NOW_MS, 2) * DAY_MS) - 1  # the last ms of the day dropped
    w.append([record(old), record(old + 1), record(NOW_MS)])
    w.start()
    w.stop()
    assert [r.ts for r in table.rows] == [old + 1, NOW_MS]
    assert count(registry, "expired") == 1 and count(registry, "written") == 2


def test_no_days_kept_means_no_track_at_all() -> None:
    table = Table()
    w, registry = writer(table, keep_days=0)
    w.start()
    w.append([record(NOW_MS)])
    w.stop()
    assert not w.enabled and table.rows == [] and table.pruned == []
    assert registry.get_sample_value("transit_track_queued") == 0


def test_the_setting_takes_0_for_no_track_but_nothing_below() -> None:
    assert Settings.from_env({"TRANSIT_TRACK_DAYS": "0"}).track_days == 0
    assert Settings.from_env({}).track_days == 30
    with pytest.raises(SettingsError, match="TRANSIT_TRACK_DAYS: must be 0 or more"):
        Settings.from_env({"TRANSIT_TRACK_DAYS": "-1"})


def test_stopping_with_the_database_away_gives_up_and_counts_what_is_lost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tracking.track

    monkeypatch.setattr(tracking.track, "STOP_WITHIN_S", 0.3)
    table = Table()
    table.away.set()
    w, registry = writer(table)
    w.start()
    w.append([record(NOW_MS + i) for i in range(7)])
    started = time.monotonic()
    w.stop()
    assert time.monotonic() - started < 3
    assert count(registry, "dropped") == 7 and table.rows == []


# -- a page of the track -------------------------------------------------------------------------

def point(ts: int) -> TrackPoint:
    return TrackPoint(ts, -7_265_000, 112_750_000, None, None, "R1", None)


def test_a_page_never_ends_inside_a_millisecond() -> None:
    points = [point(t) for t in (1, 2, 3, 3, 4)]
    assert page(points, 5) == (points, None)
    assert page(points[:4], 3) == (points[:2], 3)  # both positions of ms 3 come next
    same = [point(7)] * 4
    assert page(same, 3) == (same[:3], 8)  # a page of one millisecond only: go on after it


# -- the SQLite table behind the writer and the endpoint -----------------------------------------

@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Sessions]:
    engine = make_engine(f"sqlite:///{tmp_path}/track.db")
    vehicle_positions.metadata.create_all(engine, tables=[vehicle_positions])
    yield session_factory(engine)
    engine.dispose()


def test_sqlite_writes_reads_in_order_and_deletes_by_day(sessions: Sessions) -> None:
    table = SqlTrack(sessions)
    w = TrackWriter(sessions, CollectorRegistry(), 2, table=table, flush_s=0.05,
                    clock=lambda: NOW_MS / 1000)
    three_days_ago, two_days_ago = NOW_MS - 3 * DAY_MS, NOW_MS - 2 * DAY_MS
    w.append([record(three_days_ago), record(NOW_MS - 5000, lat_e6=-7_264_000),
              record(NOW_MS, lat_e6=-7_263_000), record(NOW_MS, vehicle="SBY-0043"),
              record(two_days_ago)])
    w.start()
    w.stop()
    got = table.read("SBY-0042", two_days_ago - DAY_MS, NOW_MS + 1, 100)
    # the day of three days ago was past retention: never written
    assert [p.ts for p in got] == [two_days_ago, NOW_MS - 5000, NOW_MS]
    assert got[-1] == TrackPoint(NOW_MS, -7_263_000, 112_750_000, 1250, 90, "R1", "R1.001")
    assert [p.ts for p in table.read("SBY-0042", NOW_MS - 5000, NOW_MS, 100)] == [
        NOW_MS - 5000]  # `end` is exclusive
    assert len(table.read("SBY-0042", 0, NOW_MS + 1, 2)) == 2

    pruned = table.prune(day_of(NOW_MS - DAY_MS))
    assert pruned.positions == 1, pruned
    assert [p.ts for p in table.read("SBY-0042", 0, NOW_MS + 1, 100)] == [
        NOW_MS - 5000, NOW_MS]


def test_a_database_that_cannot_be_reached_is_an_outage_not_a_fault() -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:1/transit")  # nothing listens
    table = SqlTrack(session_factory(engine))
    try:
        with pytest.raises(TrackUnavailable, match="unreachable"):
            table.write([record(NOW_MS)])
        with pytest.raises(TrackUnavailable, match="unreachable"):
            table.prune(day_of(NOW_MS))
    finally:
        engine.dispose()


@pytest.fixture
def client(sessions: Sessions) -> FlaskClient:
    def passthrough(*_a: Any, **_k: Any) -> Callable[[Any], Any]:
        return lambda view: view

    app = Flask(__name__)
    register_error_handlers(app, 1 << 16)
    app.register_blueprint(tracks_blueprint(TracksDeps(sessions, passthrough, passthrough,
                                                       clock=lambda: NOW_MS / 1000)))
    table = SqlTrack(sessions)
    table.write([record(NOW_MS - 30 * 3_600_000), record(NOW_MS - 60_000),
                 record(NOW_MS - 5000), record(NOW_MS - 5000, lat_e6=-7_260_000),
                 record(NOW_MS)])
    return app.test_client()


def track(client: FlaskClient, query: str = "") -> tuple[int, Any]:
    resp = client.get(f"/api/v1/vehicles/SBY-0042/track{query}")
    return resp.status_code, resp.get_json()


def test_the_track_endpoint_defaults_to_the_last_day_and_pages(client: FlaskClient) -> None:
    status, body = track(client)
    assert status == 200, body
    assert body["from"] == NOW_MS - 24 * 3_600_000 and body["to"] == NOW_MS
    assert [p["ts"] for p in body["positions"]] == [NOW_MS - 60_000, NOW_MS - 5000,
                                                    NOW_MS - 5000]
    assert body["positions"][0] == {"ts": NOW_MS - 60_000, "lat": -7.265, "lon": 112.75,
                                    "speed_mps": 12.5, "bearing": 90, "route_id": "R1",
                                    "trip_id": "R1.001"}
    assert body["truncated"] is False and body["next_from"] is None

    status, body = track(client, f"?from=2025-11-30T00:00:00Z&to={NOW_MS + 1}&limit=2")
    assert status == 200, body
    assert [p["ts"] for p in body["positions"]] == [NOW_MS - 30 * 3_600_000,
                                                    NOW_MS - 60_000]
    assert body["truncated"] is True and body["next_from"] == NOW_MS - 5000
    status, body = track(client, f"?from={body['next_from']}&to={NOW_MS + 1}")
    assert [p["ts"] for p in body["positions"]] == [NOW_MS - 5000, NOW_MS - 5000, NOW_MS]
    status, body = track(client, "?from=2025-12-01T09:59:00%2B00:00")  # an offset
    assert body["to"] == NOW_MS and len(body["positions"]) == 3, body


def test_bad_times_and_ranges_are_400s(client: FlaskClient) -> None:
    for query, code in (("?from=yesterday", "bad_time"), ("?to=2025-12-01", "bad_time"),
                        ("?from=2025-12-01T10:00:00", "bad_time"),  # no offset
                        ("?from=-5", "bad_time"),
                        (f"?from={NOW_MS}&to={NOW_MS - 1}", "bad_range"),
                        (f"?from={NOW_MS - 49 * 3_600_000}&to={NOW_MS}", "bad_range"),
                        (f"?limit={MAX_POINTS + 1}", "bad_limit"), ("?limit=0", "bad_limit")):
        status, body = track(client, query)
        assert status == 400 and body["error"]["code"] == code, (query, body)


def test_a_vehicle_id_that_is_not_one_is_a_400(client: FlaskClient) -> None:
    resp = client.get("/api/v1/vehicles/%C2%84/track")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "bad_vehicle"
