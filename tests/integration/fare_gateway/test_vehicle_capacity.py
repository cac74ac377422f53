"""`transit vehicles capacity` when another first setting of the same vehicle is under
way (PostgreSQL): it waits for that one's row and updates it, in one line, with no key
violation and no traceback, and the audit trail says what it replaced."""

from __future__ import annotations

import json

from sqlalchemy import select

from ledger.adapters.db import make_engine, session_factory
from ledger.audit import AuditRecord
from testbed.gateway import transit
from tests.integration.commands import clean_env, ok
from tests.support.row_race import against_a_first_insert


def test_two_first_settings_of_a_vehicle_at_once_both_succeed(pg_url: str) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=pg_url)
    ok(transit("db", "upgrade", env=env))
    got = against_a_first_insert(
        pg_url, "INSERT INTO vehicle_capacities (vehicle_id, capacity, set_ms, set_by) "
        "VALUES (%(v)s, 40, 1, 'first')", {"v": "SBY-0042"},
        lambda: transit("vehicles", "capacity", "SBY-0042", "20", env=env, check=False))
    assert not isinstance(got, BaseException), got
    assert ok(got).stdout.strip() == "vehicle SBY-0042 carries 20 riders"
    assert ok(transit("vehicles", "capacity", "SBY-0042", env=env)).stdout.strip() == \
        "vehicle SBY-0042 carries 20 riders"
    engine = make_engine(pg_url)
    try:
        with session_factory(engine)() as session:
            [row] = session.scalars(select(AuditRecord).where(
                AuditRecord.action == "vehicle.capacity_set")).all()
        assert (row.subject, json.loads(row.detail)) == ("SBY-0042", {"from": 40, "to": 20})
    finally:
        engine.dispose()
    # A first setting with no other under way inserts the row.
    assert ok(transit("vehicles", "capacity", "SBY-0043", "30", env=env)).stdout.strip() \
        == "vehicle SBY-0043 carries 30 riders"
