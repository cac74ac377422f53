"""The database fails over to its standby under a steady stream of taps.

A private primary streams its WAL to a standby of its own (tests/support/standby.py);
the gateway and the accounting reach them through one multi-host URL with
`target_session_attrs=read-write`, so every connection lands on whichever server
accepts writes. While taps flow, the primary is crashed (`pg_ctl -m immediate stop`)
and the standby promoted; afterwards every tap a reader accepted must be in the
promoted server's ledger exactly once, as in tests/integration/test_faults.py.

Why the replication must be synchronous: the gateway acknowledges a tap to the broker
and publishes its receipt once the primary has committed, and a validator forgets a tap
once it holds its receipt. With asynchronous replication the primary acknowledges a
commit before the standby has it, so a commit acknowledged just before the crash can be
missing on the standby that takes over: the receipt is out, the validator has deleted
the tap, and nobody is left to send it again: a lost tap. With synchronous replication
(`synchronous_standby_names` naming the standby's application_name, `synchronous_commit
= on`) a commit returns only once the standby has its commit record on disk, so
whatever was acknowledged survives the promotion; a commit cut short by the crash was
never acknowledged, its tap is sent again and the inbox keeps it from being charged twice.

As in test_faults.py, the sleeps are the length of the outage and of the stream after
it, passengers tapping throughout; `finish` then waits for the outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_faults import finish, under_way
from tests.support.faults import Fleet
from tests.support.standby import STANDBY_NAME, ReplicatedPostgres


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[Fleet, ReplicatedPostgres]]:
    pg = ReplicatedPostgres(synchronous=True).start()
    fleet: Fleet | None = None
    try:
        fleet = Fleet(pg.url, tmp_path, cluster=pg.primary)
        yield fleet, pg
    finally:
        if fleet is not None:
            fleet.close()
            for name, text in fleet.logs():
                print(f"--- {name}:\n{text[-4000:]}")  # shown by pytest when a test fails
        pg.close()
    assert fleet is not None
    for name, text in fleet.logs():
        assert "Traceback (most recent call last)" not in text, f"{name}:\n{text[-4000:]}"


def test_postgresql_fails_over_to_its_synchronous_standby(
        replicated: tuple[Fleet, ReplicatedPostgres],
        record_property: Callable[[str, object], None]) -> None:
    f, pg = replicated
    assert pg.replication() == [(STANDBY_NAME, "streaming", "sync")]
    under_way(f, gateways=1)
    # Still synchronous when the crash comes: every commit so far is on the standby.
    assert pg.replication() == [(STANDBY_NAME, "streaming", "sync")]
    pg.primary.crash()  # immediate stop: the primary is gone, mid-stream
    time.sleep(3)  # readers keep accepting; the gateway retries against both servers
    pg.promote()
    assert not pg.standby.in_recovery()
    time.sleep(10)  # the stream goes on against the promoted standby
    # Account against the promoted server alone: the old primary must not be needed.
    f.db_url = pg.standby.url
    f.env["TRANSIT_DATABASE_URL"] = pg.standby.url
    finish(f, "PostgreSQL primary crashed, synchronous standby promoted", record_property)
