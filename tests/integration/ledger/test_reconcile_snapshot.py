"""`transit reconcile` reads one snapshot of the database: an honest ledger stays clean
while top-ups and quarantined taps are committed beside it, and on SQLite it holds no
write lock, so the gateways' writes go on while it runs (`ledger.adapters.db.snapshot`).

A write committed from another session in the middle of a run (through a check the run
is given) is not seen by the checks after it, and on SQLite commits at once; then, on
PostgreSQL, reconcile runs over and over while a thread writes audited top-ups, charged
taps and quarantined ones, each of which moves two tables in one transaction (an entry
and its clearing posting, an audit record and the chain's head).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from fare_gateway.cards import issue_card, topup_card
from fare_gateway.devices import DeviceDirectory, add_device
from fare_gateway.integrity import gateway_checks
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from fare_gateway.taps import Inbound, TapService
from fare_gateway.taps.sql import sql_units
from fare_gateway.wiring import Core
from ledger.adapters.models import AuditRecord, Entry
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.reconcile import CheckResult, reconcile
from ledger.settlement import BusinessCalendar, Settler
from tests.support.clients import make_tap
from tracking.integrity import check_routes, new_route
from transit.cli import cli
from transit.settings import Settings
from transit.topics import Topics

pytestmark = pytest.mark.sqlite_too

KEY = bytes(range(100, 132))
SECRET = b"\x01" * 32
CARD = "04A0000000000001"
RUNS_S = 3.0  # how long reconcile runs beside the writer


def _core(url: str) -> Core:
    env = {k: None for k in os.environ if k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=url, TRANSIT_SECRET_KEY=KEY.hex())
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    return Core.build(Settings.from_env({"TRANSIT_DATABASE_URL": url,
                                         "TRANSIT_SECRET_KEY": KEY.hex()}))


def _counts(session: Session) -> tuple[int, int]:
    return (int(session.scalar(select(func.count()).select_from(Entry)) or 0),
            int(session.scalar(select(func.count()).select_from(AuditRecord)) or 0))


def test_reconcile_reads_one_snapshot_and_blocks_no_writer(db_url: str) -> None:
    core = _core(db_url)
    fp: Fingerprints = core.ledger.fingerprints
    if core.engine.dialect.name == "sqlite":
        # A writer that waited for a lock reconcile held would fail in half a second
        # here, instead of after the 30 s every gateway waits.
        @event.listens_for(core.engine, "connect")
        def _impatient(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.execute("PRAGMA busy_timeout=500")
    with core.sessions.begin() as s:
        add_device(s, "DEV-1", "BUS-1", SECRET.hex(), key=core.settings.secret_key)
        s.add(new_route(fp, "R1", "SBY", short_name="R1"))
        issue_card(s, core.ledger, core.policy, CARD, "regular", actor=Actor.command())
        topup_card(s, core.ledger, core.policy, CARD, 9_000_000, "init",
                   actor=Actor.command())
    # The gateway's checks but the routes': the route is made here, not imported from a
    # feed, so no import recorded its operator.
    checks = [c for c in gateway_checks(core.policy) if c is not check_routes]
    settler = Settler(BusinessCalendar(core.policy.timezone,
                                       core.policy.service_day_start_min),
                      core.policy.currency, fingerprints=fp)

    # 1. A top-up committed in the middle of a run: it commits at once, and the run's
    # later checks still see the ledger as it was when the run began.
    seen: dict[str, Any] = {}

    def write_meanwhile(session: Session, _fp: Fingerprints) -> CheckResult:
        seen["before"] = _counts(session)
        started = time.monotonic()
        with core.sessions.begin() as other:
            topup_card(other, core.ledger, core.policy, CARD, 1000, "meanwhile",
                       actor=Actor.command())
        seen["write_s"] = time.monotonic() - started
        with core.sessions() as other:
            seen["committed"] = _counts(other)
        seen["after"] = _counts(session)
        return CheckResult()

    with core.sessions() as s:
        report = reconcile(s, settler, fingerprints=fp, checks=[write_meanwhile])
    assert report.ok, report.text()
    assert seen["committed"] == (seen["before"][0] + 1, seen["before"][1] + 1), seen
    assert seen["after"] == seen["before"], seen  # one snapshot for the whole run
    assert seen["write_s"] < 0.4, seen  # no lock of reconcile's in the writer's way
    with core.sessions() as s:
        report = reconcile(s, settler, fingerprints=fp, checks=checks)
    assert report.ok, report.text()

    if core.engine.dialect.name != "postgresql":
        core.engine.dispose()
        return
    # 2. Reconcile over and over while top-ups, charged taps and quarantined ones are
    # committed beside it: every run clean.
    stop = threading.Event()
    written = {"topups": 0, "taps": 0}
    failure: list[BaseException] = []

    def load() -> None:
        service = TapService(sql_units(core.sessions, core.ledger, core.policy),
                             core.policy,
                             DeviceDirectory(core.sessions, key=core.settings.secret_key),
                             RouteDirectory(core.sessions), Topics(), Metrics())
        n = 0
        try:
            while not stop.is_set():
                n += 1
                with core.sessions.begin() as s:
                    topup_card(s, core.ledger, core.policy, CARD, 1000, f"load-{n}",
                               actor=Actor.command())
                now = int(time.time() * 1000)
                good = make_tap(SECRET, "DEV-1", n, CARD, ts=now - 1000, route_id="R1",
                                vehicle_id="BUS-1")
                forged = make_tap(b"\x02" * 32, "DEV-1", 10**6 + n, CARD, ts=now,
                                  route_id="R1", vehicle_id="BUS-1")  # quarantined
                statuses = [o.status for o in service.handle(
                    [Inbound("transit/v1/dev/DEV-1/tap", good.encode()),
                     Inbound("transit/v1/dev/DEV-1/tap", forged.encode())])]
                # the first tap charged, the others repeats of it (not charged, but in
                # the inbox all the same)
                assert statuses == ["charged" if n == 1 else "not_charged",
                                    "quarantined"], statuses
                written["topups"] += 1
                written["taps"] += 1
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)

    writer = threading.Thread(target=load)
    writer.start()
    runs, problems = 0, []
    try:
        deadline = time.monotonic() + RUNS_S
        while time.monotonic() < deadline or runs < 5:
            with core.sessions() as s:
                report = reconcile(s, settler, fingerprints=fp, checks=checks)
            runs += 1
            problems += report.problems
    finally:
        stop.set()
        writer.join()
    assert not failure, failure
    assert written["topups"] >= runs, (written, runs)  # the runs did overlap the writes
    assert problems == [], problems[:5]
    with core.sessions() as s:
        report = reconcile(s, settler, fingerprints=fp, checks=checks)
    assert report.ok, report.text()
    core.engine.dispose()
