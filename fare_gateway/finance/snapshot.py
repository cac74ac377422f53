"""One consistent view of the ledger for a read that adds many rows up.

The float sums three things (every card posting, the postings since the day began, the
cards' balances) and the detail export streams a day's entries for as long as the
client reads: with taps committing meanwhile, each statement of a READ COMMITTED
transaction could see another ledger, and the figures would not tie out. On PostgreSQL
the transaction is REPEATABLE READ and READ ONLY (one snapshot, taken at its first
statement, which waits for no writer and holds no lock a writer waits for); SQLite in
WAL mode gives a deferred read transaction one snapshot already.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ledger.adapters.db import READS_ONLY

PG_SNAPSHOT: dict[str, Any] = {"isolation_level": "REPEATABLE READ",
                               "postgresql_readonly": True}


def snapshot(session: Session) -> Connection:
    """The session's connection, begun as one read-only snapshot (call it first)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.connection(execution_options=PG_SNAPSHOT)
    return session.connection(execution_options=READS_ONLY)
