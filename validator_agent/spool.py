"""The durable spool: every tap is on disk before the passenger sees "accepted", and stays
there until its Receipt comes back.

SQLite in WAL mode with `synchronous=FULL`: a tap whose `append` returned survives a
kill -9 or a power cut. The next `seq` lives in the same database and moves in the same
transaction as the tap it numbers, so a `seq` is never reused.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transit.wire import Tap

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS taps (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    accepted INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL DEFAULT 0
);
"""

FIRST_RETRY_MS = 10_000
MAX_RETRY_MS = 300_000
# Each wait is spread by up to this fraction either way, so that validators (and the taps
# of one validator) that went quiet together do not come back in lockstep, and so that a
# re-published tap does not keep meeting the same turn of a broker's round robin.
RETRY_JITTER = 0.2


class SpoolFull(Exception):
    """The spool holds as many taps as it may; the oldest are kept, nothing is dropped."""


class SpoolUnusable(Exception):
    """The spool's file cannot be opened or used (no folder, no permission, not SQLite)."""


class Spool:
    """Taps waiting for their receipts, in `seq` order, plus small pieces of agent state."""

    def __init__(self, path: str | Path, capacity: int = 100_000,
                 first_retry_ms: int = FIRST_RETRY_MS, jitter: float = RETRY_JITTER) -> None:
        self.path = str(path)
        self.capacity = capacity
        self.first_retry_ms = first_retry_ms
        self.jitter = jitter
        self._random = random.Random()
        self._lock = threading.Lock()
        self._db = self._open()
        self._depth = self._count()

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                 timeout=30)
        except sqlite3.Error as exc:
            raise SpoolUnusable(self._why(exc)) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.execute("SELECT count(*) FROM taps").fetchone()
        except sqlite3.Error as exc:
            db.close()
            raise SpoolUnusable(self._why(exc)) from None
        return db

    def _why(self, exc: sqlite3.Error) -> str:
        """What is wrong with the spool's file, as a line for people."""
        folder = Path(self.path).expanduser().resolve().parent
        if not folder.is_dir():
            return (f"cannot open the spool {self.path}: there is no folder {folder} "
                    "(create it, or give another path)")
        return f"cannot open the spool {self.path}: {exc}"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM taps").fetchone()[0])

    @property
    def depth(self) -> int:
        """Taps still waiting for a receipt."""
        return self._depth

    @property
    def full(self) -> bool:
        return self._depth >= self.capacity

    def append(self, make: Callable[[int], Tap]) -> Tap:
        """Number a new tap with the next `seq` and store it durably, in one transaction."""
        with self._lock:
            if self._depth >= self.capacity:
                raise SpoolFull(f"spool holds {self._depth} taps (capacity {self.capacity})")
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
                seq = int(row[0]) if row else 1
                tap = make(seq)
                db.execute("INSERT INTO taps (seq, payload, accepted, created_ms) "
                           "VALUES (?, ?, ?, ?)",
                           (seq, tap.encode(), int(tap.accepted), int(time.time() * 1000)))
                db.execute("INSERT INTO meta (key, value) VALUES ('next_seq', ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           (str(seq + 1),))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._depth += 1
            return tap

    def due(self, now_ms: int, limit: int) -> list[tuple[int, bytes]]:
        """Taps to (re-)publish now, lowest `seq` first."""
        with self._lock:
            return [(int(s), bytes(p)) for s, p in self._db.execute(
                "SELECT seq, payload FROM taps WHERE next_ms <= ? ORDER BY seq LIMIT ?",
                (now_ms, limit)).fetchall()]

    def sent(self, seqs: list[int], now_ms: int) -> None:
        """Note a publish; without a receipt, try again later, backing off each time."""
        with self._lock:
            self._db.execute("BEGIN")
            for seq in seqs:
                spread = 1.0 + self.jitter * (2.0 * self._random.random() - 1.0)
                self._db.execute(
                    "UPDATE taps SET attempts = attempts + 1, next_ms = ? + CAST(min(?, ? * "
                    "(1 << min(attempts, 10))) * ? AS INTEGER) WHERE seq = ?",
                    (now_ms, MAX_RETRY_MS, self.first_retry_ms, spread, seq))
            self._db.execute("COMMIT")

    def retry_all_now(self) -> None:
        """After a reconnect: everything waiting goes out again at once, in order."""
        with self._lock:
            self._db.execute("UPDATE taps SET next_ms = 0")

    def receipted(self, seq: int) -> bool:
        """Forget a tap whose receipt arrived; True if it was still held."""
        with self._lock:
            cur = self._db.execute("DELETE FROM taps WHERE seq = ?", (seq,))
            if cur.rowcount:
                self._depth -= 1
            return bool(cur.rowcount)

    # -- small state kept beside the taps (deny list, counters) ---------------------
    def load_state(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"state:{key}",)
                                   ).fetchone()
        return None if row is None else json.loads(row[0])

    def save_state(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                             "DO UPDATE SET value = excluded.value",
                             (f"state:{key}", json.dumps(value)))

    @property
    def next_seq(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(row[0]) if row else 1
