"""Changes made behind the gateway's back to the tables that decide money, on a real
PostgreSQL database, each named by `transit reconcile` (contract section 9).

One honest database is built from outside: the `transit` commands (CliRunner on the
`transit` group) for the network, tokens and cards; the HTTP API (Flask's client, on
the same database) to block a card; the real tap service for charged, forged and
refused taps. It reconciles clean. It is then changed with plain SQL, each change the way
the attacker of the issue made it (one per table, so that one reconcile shows them all),
and reconcile must exit 1 naming every one; a token row inserted opens nothing (401).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import psycopg
from click.testing import CliRunner, Result
from flask.testing import FlaskClient

from fare_gateway.devices import DeviceDirectory
from fare_gateway.http import ApiDeps, create_app
from fare_gateway.routes import RouteDirectory
from fare_gateway.taps import Inbound, TapService
from fare_gateway.taps.sql import sql_units
from fare_gateway.wiring import Core
from ledger.fingerprint import Fingerprints
from tests.support.clients import make_tap
from tests.support.feeds import SMALL, write_feed
from tracking.integrity import route_mac
from transit.cli import cli
from transit.settings import Settings
from transit.topics import Topics

KEY = "5a" * 32  # TRANSIT_SECRET_KEY of this test: the keyed path
DEVICE, VEHICLE = "SBY-0042-A", "SBY-0042"
# POOR has no money: its tap is charged all the same (the reader had let it ride), and
# it stays on the deny list.
RICH, POOR, BLOCKED = "04A1000000000001", "04A1000000000002", "04A1000000000003"
FORGED_KEY = b"\x07" * 32
TAMPERED_DATE = "2020-01-01"


def plain_url(url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def run(runner: CliRunner, *args: str) -> Result:
    result = runner.invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def ok(runner: CliRunner, *args: str) -> str:
    result = run(runner, *args)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def runner_for(url: str) -> CliRunner:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=url, TRANSIT_SECRET_KEY=KEY,
               TRANSIT_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}/v1")
    return CliRunner(env=env)


def settings_of(url: str) -> Settings:
    return Settings.from_env({"TRANSIT_DATABASE_URL": url, "TRANSIT_SECRET_KEY": KEY})


def api(core: Core) -> FlaskClient:
    """The gateway's HTTP API on `core`'s database, in process."""
    app = create_app(ApiDeps(core.sessions, core.ledger, core.policy, core.metrics,
                             broker_ok=lambda: True, secret_key=core.settings.secret_key))
    return app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reconcile_names_each_change_behind_the_gateway_s_back(
        pg_url: str, tmp_path: Path) -> None:
    cli_ = runner_for(pg_url)

    # -- the honest database, built from outside ----------------------------------------
    ok(cli_, "db", "upgrade")
    feed = write_feed(tmp_path / "surabaya.zip", SMALL)
    assert "2 routes" in ok(cli_, "gtfs", "import", str(feed))
    secret = bytes.fromhex(ok(cli_, "devices", "add", DEVICE, "--vehicle", VEHICLE).strip())
    admin = ok(cli_, "tokens", "create", "--role", "admin", "--name", "Siti Rahma").strip()
    finance = ok(cli_, "tokens", "create", "--role", "finance").strip()  # --name optional
    finance_id = finance.split("_")[1]
    ok(cli_, "tokens", "revoke", finance_id)
    listing = ok(cli_, "tokens", "list")
    assert f"{admin.split('_')[1]}\tadmin\tSiti Rahma\t" in listing, listing
    assert f"{finance_id}\tfinance\t-\t" in listing, listing
    for card in (RICH, POOR, BLOCKED):
        ok(cli_, "cards", "issue", card)  # no money yet: on the deny list
    ok(cli_, "cards", "topup", RICH, "50000", "--reference", "fund-rich")  # off it again
    ok(cli_, "cards", "topup", BLOCKED, "50000", "--reference", "fund-blocked")

    core = Core.build(settings_of(pg_url))
    client = api(core)
    answer = client.post(f"/api/v1/cards/{BLOCKED}/block", headers=bearer(admin))
    assert answer.status_code == 200 and answer.get_json()["status"] == "blocked", answer.data
    assert client.get(f"/api/v1/cards/{RICH}", headers=bearer(finance)).status_code == 401

    service = TapService(sql_units(core.sessions, core.ledger, core.policy), core.policy,
                         DeviceDirectory(core.sessions, key=core.settings.secret_key),
                         RouteDirectory(core.sessions), Topics(), core.metrics)
    ts = int(time.time() * 1000) - 60_000
    charged = make_tap(secret, DEVICE, 1, RICH, ts=ts, vehicle_id=VEHICLE)
    taps = [charged, make_tap(secret, DEVICE, 2, POOR, ts=ts + 1, vehicle_id=VEHICLE),
            make_tap(FORGED_KEY, DEVICE, 3, RICH, ts=ts + 2, vehicle_id=VEHICLE),
            make_tap(secret, DEVICE, 4, RICH, ts=ts + 3, vehicle_id="SBY-0099")]
    outcomes = service.handle([Inbound(f"transit/v1/dev/{DEVICE}/tap", t.encode())
                               for t in taps])
    assert [(o.status, o.reason) for o in outcomes] == [
        ("charged", None), ("charged", None), ("quarantined", "bad_signature"),
        ("rejected", "wrong_vehicle")], outcomes
    with core.engine.connect() as conn:
        kept = conn.exec_driver_sql("SELECT chain_seq, reason FROM quarantine "
                                    "ORDER BY chain_seq").all()
    assert [tuple(r) for r in kept] == [(1, "bad_signature"), (2, "wrong_vehicle")]
    core.engine.dispose()

    report = run(cli_, "reconcile")
    assert report.exit_code == 0, report.output
    for line in ("ok       3 tap(s) match their fingerprints",
                 "ok       the quarantine's chain of 2 record(s) is whole",
                 "ok       2 route(s) and their operators match their fingerprints and "
                 "the set the last GTFS import recorded",
                 "ok       2 API token(s) match their fingerprints"):
        assert line in report.stdout.splitlines(), report.output
    assert any(line.startswith("ok       ") and "deny-list change(s)" in line
               for line in report.stdout.splitlines()), report.output
    with psycopg.connect(plain_url(pg_url)) as conn:
        imported = conn.execute("SELECT subject, detail FROM audit_log "
                                "WHERE action = 'gtfs.imported'").fetchall()
        created = conn.execute("SELECT action, actor_kind, detail FROM audit_log "
                               "WHERE action LIKE 'token.%' ORDER BY seq").fetchall()
        admin_mac = conn.execute("SELECT mac FROM api_tokens WHERE role = 'admin'").fetchone()[0]
        poor_balance = conn.execute("SELECT balance FROM cards WHERE card = %s",
                                    (POOR,)).fetchone()[0]
    lowest = core.policy.lowest_fare("regular")
    assert poor_balance < 0 < lowest, poor_balance  # charged on an empty card
    assert [(s, json.loads(d)["routes"], json.loads(d)["sha256"],
             json.loads(d)["operators"]["routes"]) for s, d in imported] == [
        ("surabaya.zip", 2, hashlib.sha256(feed.read_bytes()).hexdigest(), 2)]
    assert [(a, k, json.loads(d)) for a, k, d in created] == [
        ("token.created", "command",
         {"role": "admin", "name": "Siti Rahma", "token_id": admin.split("_")[1]}),
        ("token.created", "command", {"role": "finance", "name": "", "token_id": finance_id}),
        ("token.revoked", "command", {"role": "finance", "name": "", "token_id": finance_id})]

    # -- then changed with plain SQL -----------------------------------------------------
    forged_token = f"tt_{'f00d' * 4}_{'A' * 43}"
    copied_token = f"tt_{'beef' * 4}_{'B' * 43}"
    now = int(time.time() * 1000)
    with psycopg.connect(plain_url(pg_url)) as conn:
        # The tap moved to another service day (whose fares the gateway would then
        # reprice, posting corrections).
        conn.execute("UPDATE taps SET service_date = %s WHERE tap_id = %s",
                     (TAMPERED_DATE, charged.tap_id))
        # Revenue of R1 to another operator, its fingerprint recomputed the unkeyed way.
        conn.execute("UPDATE routes SET agency_id = 'TSS', mac = %s WHERE route_id = 'R1'",
                     (route_mac(Fingerprints(None), {
                         "route_id": "R1", "agency_id": "TSS", "short_name": "R1",
                         "long_name": "Terminal Purabaya - Rajawali", "color": "E4002B",
                         "text_color": ""}),))
        # The blocked card dropped from the list validators are sent.
        version = conn.execute(
            "INSERT INTO denylist_changes (card, op, reason, changed_ms) "
            "VALUES (%s, '-', 'cleared', %s) RETURNING version", (BLOCKED, now)).fetchone()[0]
        # A route gone, its fares then credited to `unassigned`: no row left to mismatch.
        conn.execute("DELETE FROM routes WHERE route_id = 'R2'")
        # The card without money taken off what validators are sent, every trace of it
        # on the list deleted: list and replay still agree.
        conn.execute("DELETE FROM denylist WHERE card = %s", (POOR,))
        conn.execute("DELETE FROM denylist_changes WHERE card = %s", (POOR,))
        # The evidence of the forged tap.
        conn.execute("DELETE FROM quarantine WHERE reason = 'bad_signature'")
        # Admin tokens of the attacker's own: one bare, one with a genuine row's mac.
        for token, mac in ((forged_token, None), (copied_token, admin_mac)):
            conn.execute(
                "INSERT INTO api_tokens (id, role, token_hash, label, name, created_ms, mac) "
                "VALUES (%s, 'admin', %s, '', '', %s, %s)",
                (token.split("_")[1], hashlib.sha256(token.encode()).hexdigest(), now, mac))

    report = run(cli_, "reconcile")
    assert report.exit_code == 1, report.output
    mismatches = [line for line in report.stdout.splitlines() if line.startswith("MISMATCH")]
    for expected in (
            f"tap {charged.tap_id} (card {RICH}, service date {TAMPERED_DATE}, route R1, "
            "charged) was changed behind the application's back",
            "route R1 (operator TSS) was changed behind the application's back",
            f"deny-list change {version} (- card {BLOCKED}) is unfingerprinted",
            f"card {BLOCKED} is on the deny list, but its last change ({version}) takes "
            "it off",
            f"card {BLOCKED} is blocked, but its last deny-list change ({version}) takes "
            "it off",
            "the routes and their operators are not those the last GTFS import recorded "
            "(audit record",
            f"card {POOR} holds {poor_balance}, below its lowest fare ({lowest}), but no "
            "deny-list change puts it on the list: validators are sent a list without it",
            "quarantine records 1 to 1 are missing",
            "API token f00df00df00df00d (admin) is unfingerprinted",
            "API token beefbeefbeefbeef (admin) was changed behind the application's back"):
        assert any(expected in line for line in mismatches), (expected, report.output)

    core = Core.build(settings_of(pg_url))
    client = api(core)
    assert client.get(f"/api/v1/cards/{RICH}", headers=bearer(admin)).status_code == 200
    for token in (forged_token, copied_token):
        answer = client.get(f"/api/v1/cards/{RICH}", headers=bearer(token))
        assert answer.status_code == 401, (token, answer.data)
    core.engine.dispose()
