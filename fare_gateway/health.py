"""Whether this gateway can do its work: its database and its broker answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from ledger.adapters.db import Sessions


@dataclass(frozen=True)
class Health:
    """Each dependency's state: `ok`, or what is wrong with it."""

    database: str
    broker: str

    @property
    def ok(self) -> bool:
        return self.database == "ok" and self.broker == "ok"


def check_health(sessions: Sessions, broker_ok: Callable[[], bool]) -> Health:
    """Ask the database for a row and the consumer whether it is connected."""
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # any failure to reach the database is "unhealthy"
        database = f"unreachable: {exc.__class__.__name__}"
    return Health(database, "ok" if broker_ok() else "unreachable")

