"""Two first writes of one row at once, on PostgreSQL: another transaction has inserted
the row and not committed yet while the code under test writes it too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


def against_a_first_insert(pg_url: str, insert: str, params: Mapping[str, Any],
                           write: Callable[[], T], timeout: float = 30.0
                           ) -> T | BaseException:
    """Run `write` while another transaction holds the uncommitted `insert` of the same
    row; commit that one once `write` waits on it. What `write` returned or raised."""
    url = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    out: list[T | BaseException] = []

    def run() -> None:
        try:
            out.append(write())
        except BaseException as exc:  # the race lost: what the caller checks for
            out.append(exc)

    with psycopg.connect(url) as first, psycopg.connect(url, autocommit=True) as watch:
        first.execute(insert, dict(params))  # its transaction stays open
        writer = threading.Thread(target=run, daemon=True)
        writer.start()
        deadline = time.monotonic() + timeout
        while True:
            row = watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND wait_event_type = 'Lock'"
                                ).fetchone()
            if row and row[0]:
                break
            if not writer.is_alive():
                break  # it did not wait: its answer says why
            assert time.monotonic() < deadline, "the write never met the first insert"
            time.sleep(0.05)
        first.commit()
    writer.join(timeout)
    assert out, "the write did not finish"
    return out[0]
