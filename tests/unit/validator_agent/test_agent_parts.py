"""The agent's pure parts and its spool: decision, repeat memory, GPS parsing, cadence,
what the passenger is shown."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from transit.wire import Receipt, Tap
from validator_agent.domain import Decision, RecentEntries, decide
from validator_agent.feedback import ConsoleFeedback, SignalFeedback
from validator_agent.gps import Cadence, Fix, due, parse_rmc
from validator_agent.spool import Spool, SpoolFull


def tap(seq: int, card: str = "04A1B2C3D4") -> Tap:
    return Tap(device_id="D", seq=seq, vehicle_id="V", route_id="R1", card=card,
               kind="entry", accepted=True, ts=1_000 + seq, lat_e6=0, lon_e6=0
               ).signed(b"k" * 32)


def test_decision_at_the_reader() -> None:
    assert decide("C", 1_000_000, False, None, 120, False) == Decision(True)
    assert decide("C", 1_000_000, True, None, 120, False) == Decision(False, "denylisted")
    assert decide("C", 1_120_000, False, 1_000_000, 120, False) == Decision(False, "repeat")
    assert decide("C", 1_120_001, False, 1_000_000, 120, False) == Decision(True)
    assert decide("C", 1_000_000, False, None, 120, True) == Decision(False, "spool_full")


def test_recent_entries_are_bounded() -> None:
    recent = RecentEntries(capacity=2)
    for i, card in enumerate("ABC"):
        recent.remember(card, i)
    assert recent.last("A") is None and recent.last("C") == 2


def test_spool_numbers_taps_and_never_reuses_a_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", capacity=3)
    assert [spool.append(tap).seq for _ in range(3)] == [1, 2, 3]
    with pytest.raises(SpoolFull):
        spool.append(tap)
    assert spool.full and spool.depth == 3
    assert spool.receipted(2) and not spool.receipted(2)
    assert [s for s, _ in spool.due(0, 10)] == [1, 3]
    spool.close()
    again = Spool(tmp_path / "s.db", capacity=3)
    assert again.depth == 2 and again.append(tap).seq == 4


def test_spool_backs_off_and_retries_everything_after_a_reconnect(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", first_retry_ms=1000, jitter=0.0)
    spool.append(tap)
    spool.sent([1], now_ms=0)
    assert spool.due(999, 10) == [] and len(spool.due(1000, 10)) == 1
    spool.sent([1], now_ms=1000)
    assert spool.due(2999, 10) == [] and len(spool.due(3000, 10)) == 1
    spool.sent([1], now_ms=3000)
    spool.retry_all_now()
    assert len(spool.due(3000, 10)) == 1


def test_spool_spreads_its_retries(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db", first_retry_ms=1000, jitter=0.2)
    for _ in range(200):
        spool.append(tap)
    spool.sent(list(range(1, 201)), now_ms=0)
    waits = [int(r[0]) for r in spool._db.execute("SELECT next_ms FROM taps")]
    assert min(waits) >= 800 and max(waits) <= 1200
    assert len(set(waits)) > 50, "retries not spread"
    assert len(spool.due(799, 500)) == 0 and len(spool.due(1200, 500)) == 200


def _append_forever(path: str, ready: mp.synchronize.Event) -> None:
    spool = Spool(path)
    ready.set()
    while True:
        spool.append(tap)


def _committed(path: str) -> int:
    """Taps the spool holds as another process sees them (WAL: readers do not block it)."""
    db = sqlite3.connect(path, timeout=5)
    try:
        return int(db.execute("SELECT count(*) FROM taps").fetchone()[0])
    except sqlite3.OperationalError:  # the writer has not made its tables yet
        return 0
    finally:
        db.close()


def test_a_killed_writer_leaves_a_consistent_spool(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_append_forever, args=(path, ready))
    proc.start()
    ready.wait(10)
    # Killed mid-stream: once it has committed a few hundred taps, not at a fixed time.
    deadline = time.monotonic() + 30
    while _committed(path) < 300:
        assert time.monotonic() < deadline and proc.is_alive(), "the writer is not writing"
        time.sleep(0.01)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join()
    spool = Spool(path)
    seqs = [s for s, _ in spool.due(0, 1_000_000)]
    assert seqs == list(range(1, len(seqs) + 1)) and seqs
    assert spool.next_seq == len(seqs) + 1


def test_nmea_rmc_sentences() -> None:
    fix = parse_rmc("$GPRMC,123519,A,0715.450,S,11245.126,E,010.0,084.4,230394,003.1,W*7E", 5)
    assert fix is None  # wrong checksum
    body = "GPRMC,123519,A,0715.450,S,11245.126,E,010.0,084.4,230394,003.1,W"
    check = 0
    for ch in body:
        check ^= ord(ch)
    fix = parse_rmc(f"${body}*{check:02X}", 5)
    assert fix == Fix(5, -7257500, 112752100, 514, 84)
    void = "GPRMC,123519,V,,,,,,,230394,,"
    check = 0
    for ch in void:
        check ^= ord(ch)
    assert parse_rmc(f"${void}*{check:02X}", 5) is None


def test_position_cadence() -> None:
    cadence = Cadence(moving_s=5, standing_s=30)
    moving = Fix(10_000, 0, 0, 800, 90)
    standing = Fix(10_000, 0, 0, 0, None)
    assert due(None, standing, cadence)
    assert due(5_000, moving, cadence) and not due(5_001, moving, cadence)
    assert not due(-19_999, standing, cadence) and due(-20_000, standing, cadence)


def test_the_console_shows_a_rejection_and_a_receipt_without_a_balance() -> None:
    out = io.StringIO()
    feedback = ConsoleFeedback(out)
    feedback.receipted(Receipt(device_id="D", seq=3, status="rejected", fare=0,
                               currency="IDR", reason="wrong_vehicle"))
    feedback.receipted(Receipt(device_id="D", seq=4, status="charged", fare=5000,
                               currency="IDR", balance=45_000))
    shown = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["seq"], e["status"], e["reason"], e["balance"]) for e in shown] == [
        (3, "rejected", "wrong_vehicle", None), (4, "charged", None, 45_000)]
    # On a board: amber, as for every receipt that is not a plain charge or refusal.
    lit: list[str] = []
    SignalFeedback(lit.append, lambda _n: None).receipted(Receipt(
        device_id="D", seq=3, status="rejected", fare=0, currency="IDR", reason="x"))
    assert lit == ["amber"]
