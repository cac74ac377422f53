"""Rows written before the gateway's tables carried fingerprints: `transit reconcile`
names each as unfingerprinted, `transit db upgrade --seal-legacy` seals them (once: a
second run seals nothing), and the quarantine's chain goes on from the sealed records.
(And a holder's name that does not fit is refused in one line.)

On the embedded SQLite, in process (CliRunner on the `transit` group): the point is
the sealing's bookkeeping, which is the same on PostgreSQL (the tamper cases run there,
tests/integration/test_tampering_gateway.py). The legacy rows are the application's
own, stripped of their fingerprints with plain SQL, as an upgrade from 0010 finds them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from click.testing import CliRunner, Result

from fare_gateway.devices import DeviceDirectory
from fare_gateway.routes import RouteDirectory
from fare_gateway.taps import Inbound, TapService
from fare_gateway.taps.sql import sql_units
from fare_gateway.wiring import Core
from tests.support.clients import make_tap
from tests.support.feeds import SMALL, write_feed
from transit.cli import cli
from transit.settings import Settings
from transit.topics import Topics

KEY = "c3" * 32
DEVICE, VEHICLE, CARD = "SBY-0042-A", "SBY-0042", "04A1B2C3D4E5F6"
LEGACY = ("UPDATE taps SET mac = NULL", "UPDATE routes SET mac = NULL",
          "UPDATE api_tokens SET mac = NULL", "UPDATE denylist SET mac = NULL",
          "UPDATE denylist_changes SET mac = NULL",
          "UPDATE quarantine SET chain_seq = NULL, prev_mac = NULL, mac = NULL",
          "DELETE FROM chain_heads WHERE name = 'quarantine'")


def run(runner: CliRunner, *args: str) -> Result:
    result = runner.invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def quarantine(core: Core, secret: bytes, seq: int) -> None:
    """A tap signed with another key than its device's, and a genuine one beside it,
    through the real tap service."""
    service = TapService(sql_units(core.sessions, core.ledger, core.policy), core.policy,
                         DeviceDirectory(core.sessions, key=core.settings.secret_key),
                         RouteDirectory(core.sessions), Topics(), core.metrics)
    forged = make_tap(bytes(32), DEVICE, seq, CARD, ts=int(time.time() * 1000),
                      vehicle_id=VEHICLE)
    honest = make_tap(secret, DEVICE, seq + 1, CARD, ts=int(time.time() * 1000),
                      vehicle_id=VEHICLE)
    outcomes = service.handle([Inbound(f"transit/v1/dev/{DEVICE}/tap", t.encode())
                               for t in (forged, honest)])
    assert outcomes[0].status == "quarantined" and outcomes[1].receipt is not None, outcomes


def test_rows_without_fingerprints_are_named_then_sealed_once(tmp_path: Path) -> None:
    db = tmp_path / "transit.db"
    url = f"sqlite:///{db}"
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=url, TRANSIT_SECRET_KEY=KEY)
    runner = CliRunner(env=env)
    assert run(runner, "db", "upgrade").exit_code == 0
    assert run(runner, "gtfs", "import", str(write_feed(tmp_path / "f.zip", SMALL))
               ).exit_code == 0
    added = run(runner, "devices", "add", DEVICE, "--vehicle", VEHICLE)
    secret = bytes.fromhex(added.stdout.strip())
    assert run(runner, "tokens", "create", "--role", "ops", "--name", "Budi").exit_code == 0
    too_long = run(runner, "tokens", "create", "--role", "ops", "--name", "B" * 101)
    assert too_long.exit_code == 1 and too_long.stderr.count("Error:") == 1, too_long.output
    assert "at most 100 printable characters" in too_long.stderr, too_long.output
    assert run(runner, "cards", "issue", CARD).exit_code == 0
    core = Core.build(Settings.from_env({"TRANSIT_DATABASE_URL": url,
                                         "TRANSIT_SECRET_KEY": KEY}))
    quarantine(core, secret, 1)

    with sqlite3.connect(db) as conn:
        for statement in LEGACY:
            conn.execute(statement)
    report = run(runner, "reconcile")
    assert report.exit_code == 1, report.output
    unsealed = [line for line in report.stdout.splitlines()
                if line.startswith("MISMATCH") and "unfingerprinted" in line]
    for named in (f"tap {DEVICE}:2 (card {CARD}", "route R1 (operator SBY)",
                  "route R2 (operator TSS)", "(ops, Budi) is unfingerprinted",
                  f"deny-list change 1 (+ card {CARD})", f"deny-list entry of card {CARD}",
                  "quarantine record id 1 (bad_signature) is off the chain"):
        assert sum(named in line for line in unsealed) == 1, (named, report.output)

    sealed = run(runner, "db", "upgrade", "--seal-legacy")
    assert sealed.exit_code == 0, sealed.output
    assert "fingerprinted the rows written before fingerprints" in sealed.stdout, sealed.output
    report = run(runner, "reconcile")
    assert report.exit_code == 0, report.output
    assert "ok       the quarantine's chain of 1 record(s) is whole" in report.stdout
    again = run(runner, "db", "upgrade", "--seal-legacy")
    assert again.exit_code == 0 and "fingerprinted" not in again.stdout, again.output

    quarantine(core, secret, 3)  # the chain goes on from the sealed record
    core.engine.dispose()
    report = run(runner, "reconcile")
    assert report.exit_code == 0, report.output
    assert "ok       the quarantine's chain of 2 record(s) is whole" in report.stdout
