"""A PostgreSQL primary and its streaming standby, of the test's own, for failover.

`ReplicatedPostgres` starts a private primary (`tests.support.postgres.PrivatePostgres`)
set up for streaming replication, makes a standby from it with `pg_basebackup -R` on a
port of its own, and turns replication synchronous once the standby streams. Its `url`
names both servers, so that a client reaches whichever one accepts writes: the primary
now, the standby once it has been promoted.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.support.postgres import PrivatePostgres, pg_bin

STANDBY_NAME = "transit_standby"  # the standby's application_name, as the primary sees it

PRIMARY_SETTINGS = """
# streaming replication to a standby (tests/support/standby.py)
wal_level = replica
max_wal_senders = 4
max_replication_slots = 4
wal_keep_size = 256MB
synchronous_commit = on
"""


def _sql(port: int, query: str) -> list[tuple[object, ...]]:
    """Run one statement outside a transaction (ALTER SYSTEM needs that) and fetch rows."""
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                         autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query)
        return list(cur.fetchall()) if cur.description else []


class Primary(PrivatePostgres):
    """A private cluster that accepts replication connections from 127.0.0.1."""

    def start(self) -> Primary:
        if not self.data.exists():
            self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync")
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(PRIMARY_SETTINGS)
            hba = self.data / "pg_hba.conf"
            if not _replication_trusted(hba):
                with hba.open("a") as f:
                    f.write("host    replication     all     127.0.0.1/32    trust\n")
        super().start()
        return self


def _replication_trusted(hba: Path) -> bool:
    for line in hba.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields[:4] == ["host", "replication", "all", "127.0.0.1/32"] and fields[4:] == ["trust"]:
            return True
    return False


class Standby(PrivatePostgres):
    """A hot standby cloned from `primary` by pg_basebackup, streaming under `name`."""

    def __init__(self, primary: PrivatePostgres, name: str = STANDBY_NAME) -> None:
        super().__init__()
        self.primary = primary
        self.name = name

    def start(self) -> Standby:
        if not self.data.exists():
            self._run(pg_bin("pg_basebackup"), "-D", str(self.data), "-h", "127.0.0.1",
                      "-p", str(self.primary.port), "-U", "postgres", "-X", "stream", "-R",
                      "--checkpoint=fast", "--no-sync")
            with (self.data / "postgresql.auto.conf").open("a") as conf:
                # Later lines win: name the walreceiver so that the primary can wait for
                # it, and never wait for a standby of its own once promoted.
                conf.write(f"primary_conninfo = 'host=127.0.0.1 port={self.primary.port} "
                           f"user=postgres application_name={self.name}'\n"
                           "synchronous_standby_names = ''\n")
        super().start()
        return self

    def promote(self) -> None:
        """End recovery and accept writes (what a failover manager would do)."""
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote")

    def in_recovery(self) -> bool:
        return bool(_sql(self.port, "SELECT pg_is_in_recovery()")[0][0])


class ReplicatedPostgres:
    """A primary and one standby; `synchronous=True` makes every commit wait for the
    standby to have the commit record on disk before it is acknowledged."""

    def __init__(self, *, synchronous: bool = True) -> None:
        self.synchronous = synchronous
        self.primary = Primary()
        self.standby = Standby(self.primary)

    @property
    def url(self) -> str:
        """Both servers; psycopg (libpq) tries them in order and keeps the writable one."""
        hosts = "&".join(f"host=127.0.0.1:{pg.port}" for pg in (self.primary, self.standby))
        return (f"postgresql+psycopg://postgres@/postgres?{hosts}"
                "&target_session_attrs=read-write&connect_timeout=5")

    def start(self, timeout: float = 30.0) -> ReplicatedPostgres:
        self.primary.start()
        self.standby.start()
        if self.synchronous:
            _sql(self.primary.port,
                 f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ({STANDBY_NAME})'")
            _sql(self.primary.port, "SELECT pg_reload_conf()")
        self.wait_streaming("sync" if self.synchronous else "async", timeout)
        return self

    def replication(self) -> list[tuple[object, ...]]:
        """(application_name, state, sync_state) of each standby, from the primary."""
        return _sql(self.primary.port, "SELECT application_name, state, sync_state "
                                       "FROM pg_stat_replication")

    def wait_streaming(self, sync_state: str, timeout: float) -> None:
        want = (STANDBY_NAME, "streaming", sync_state)
        deadline = time.monotonic() + timeout
        while want not in (seen := self.replication()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"standby not {sync_state} within {timeout}s: {seen}")
            time.sleep(0.2)

    def promote(self) -> None:
        """Promote the standby and wait until it accepts writes."""
        self.standby.promote()
        deadline = time.monotonic() + 30
        while self.standby.in_recovery():
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not leave recovery")
            time.sleep(0.2)

    def close(self) -> None:
        self.standby.close()
        self.primary.close()
