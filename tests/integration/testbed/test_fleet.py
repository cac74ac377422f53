"""The fleet of gateways the device-change tests run (tests/support/fleet.py): its own
reads of the database hold one pool of connections, which it closes."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import text

from testbed.broker import Broker
from testbed.environment import PG_ADMIN_URL
from tests.support.fleet import Fleet


def others_connected(db_url: str) -> int:
    """How many sessions are open on the database named in `db_url`, besides this count's."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                           "AND pid <> pg_backend_pid()", (name,)).fetchone()
    assert row is not None
    return int(row[0])


def test_a_fleet_reads_through_one_pool_and_closes_it(pg_url: str, broker: Broker) -> None:
    fleet = Fleet({}, {}, b"", broker, pg_url)
    for _ in range(3):
        with fleet.sessions()() as s:
            assert s.execute(text("SELECT 1")).scalar() == 1
    assert others_connected(pg_url) == 1  # the pool's one connection, used three times
    fleet.close()
    # A backend leaves pg_stat_activity a moment after its client hung up.
    deadline = time.monotonic() + 30
    while (left := others_connected(pg_url)) != 0:
        assert time.monotonic() < deadline, f"{left} connection(s) still open"
        time.sleep(0.1)
