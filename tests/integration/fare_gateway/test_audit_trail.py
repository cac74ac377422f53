"""The audit trail from outside (contract section 9), on one gateway over PostgreSQL with
a TRANSIT_SECRET_KEY (the keyed path): changes made through the HTTP API by staff and by
a rider and through the `transit` commands (CliRunner on the `transit` group), each read
back once, in order, from `GET /api/v1/audit` as an admin, with who (the token's id and
its holder's name, the rider's account, the command's user), from where, the action and
its subject; requests that change nothing record nothing; no secret, check code or
e-mail is ever in it; the chain is verified, pages and time windows work, other roles
are refused, and records changed or removed with plain SQL are named."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from fare_gateway.fares.loaded import record_loaded
from fare_gateway.fares.policy import load_policy, policy_from_setting
from ledger.adapters.db import make_engine, session_factory
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.riders import FLAT_FARES, PASSWORD, call, log_in, rider_system
from transit.cli import cli
from transit.denylist import key_id

KEY = "3c" * 32
CARD_A, CARD_B, CARD_C = "04AA000000000001", "04AA000000000002", "04AA000000000003"
ADMIN_FROM, OPS_FROM, PHONE = "127.0.0.9", "127.0.0.10", "127.0.0.77"
SECOND_DEVICE = "SBY-0077-A"


@pytest.fixture(scope="module")
def trail_system(broker: Broker, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[System]:
    url = create_pg_database()
    try:
        with rider_system(url, broker, tmp_path_factory.mktemp("audit"),
                          TRANSIT_SECRET_KEY=KEY, TRANSIT_AUTH_FAILURES="100000/60"
                          ) as system:
            yield system
    finally:
        drop_pg_database(url)


def runner(system: System) -> CliRunner:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRANSIT_")}
    env.update(system.env)
    return CliRunner(env=env)


def ok(cli_runner: CliRunner, *args: str) -> str:
    result: Result = cli_runner.invoke(cli, list(args))
    assert result.exit_code == 0 and "Traceback" not in result.output, (args, result.output)
    return result.stdout


def audit(system: System, token: str, query: str = "") -> tuple[int, Any]:
    return call(system, "GET", f"/api/v1/audit{query}", token=token)


def test_every_change_is_recorded_once_in_order_and_the_chain_is_verified(
        trail_system: System, tmp_path: Path) -> None:
    system = trail_system
    commands = runner(system)
    admin = ok(commands, "tokens", "create", "--role", "admin", "--name", "Siti Rahayu").strip()
    ops = ok(commands, "tokens", "create", "--role", "ops", "--name", "Budi Santoso").strip()
    finance = ok(commands, "tokens", "create", "--role", "finance").strip()
    admin_id, ops_id = admin.split("_")[1], ops.split("_")[1]
    secrets_seen: list[str] = []  # nothing of these may reach the trail

    # -- staff through the API -----------------------------------------------------------
    def staff(method: str, path: str, body: Any = None, token: str = admin,
              source: str = ADMIN_FROM) -> tuple[int, Any]:
        return call(system, method, path, body, token, source)

    status, issued = staff("POST", "/api/v1/cards", {"card": CARD_A})
    assert status == 201, issued
    secrets_seen.append(issued["check_code"])
    topup = {"amount": 20_000, "reference": "ref-a-1"}
    status, credited = staff("POST", f"/api/v1/cards/{CARD_A}/topups", topup)
    assert status == 201, credited
    # Nothing changes, nothing is recorded: a replay, a conflict, a card issued twice, a
    # card blocked twice.
    assert staff("POST", f"/api/v1/cards/{CARD_A}/topups", topup)[0] == 200
    assert staff("POST", f"/api/v1/cards/{CARD_A}/topups",
                 {"amount": 1, "reference": "ref-a-1"})[0] == 409
    assert staff("POST", "/api/v1/cards", {"card": CARD_A})[0] == 409
    assert staff("POST", f"/api/v1/cards/{CARD_A}/block")[0] == 200
    assert staff("POST", f"/api/v1/cards/{CARD_A}/block")[0] == 200
    assert staff("POST", f"/api/v1/cards/{CARD_A}/unblock")[0] == 200
    status, reissued = staff("POST", f"/api/v1/cards/{CARD_A}/check-code")
    assert status == 201, reissued
    code_a = reissued["check_code"]
    secrets_seen.append(code_a)

    # -- the commands --------------------------------------------------------------------
    secrets_seen.append(ok(commands, "cards", "issue", CARD_B).split()[2])
    ok(commands, "cards", "topup", CARD_B, "5000", "--reference", "cli-b-1")
    ok(commands, "cards", "topup", CARD_B, "5000", "--reference", "cli-b-1")  # a replay
    ok(commands, "devices", "move", system.device_id, "--vehicle", "SBY-0099")
    ok(commands, "devices", "move", system.device_id, "--vehicle", "SBY-0099")  # no change
    secrets_seen.append(ok(commands, "devices", "rotate", system.device_id).strip())
    secrets_seen.append(ok(commands, "devices", "add", SECOND_DEVICE, "--vehicle",
                           "SBY-0077").strip())
    ok(commands, "devices", "revoke", SECOND_DEVICE)
    ok(commands, "devices", "revoke", SECOND_DEVICE)  # revoked already
    new_key = ok(commands, "denylist", "rotate-key").strip()

    # -- a rider through the API ---------------------------------------------------------
    email = f"ani.{uuid.uuid4().hex[:8]}@contoh.id"
    status, account = call(system, "POST", "/api/v1/rider/accounts",
                           {"email": email, "password": PASSWORD}, source=PHONE)
    assert status == 201, account
    account_id = account["account_id"]
    rider = log_in(system, email, source=PHONE)

    def own(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return call(system, method, path, body, rider, PHONE)

    link = {"card": CARD_A, "check_code": code_a}
    assert own("POST", "/api/v1/rider/cards", link)[0] == 201
    assert own("POST", "/api/v1/rider/cards", link)[0] == 200  # linked already
    status, dispute = own("POST", "/api/v1/rider/disputes",
                          {"card": CARD_A, "category": "other", "message": "Saldo aneh"})
    assert status == 201, dispute
    assert own("POST", f"/api/v1/rider/cards/{CARD_A}/lost")[0] == 200
    assert own("POST", f"/api/v1/rider/cards/{CARD_A}/lost")[0] == 200  # blocked already
    status, issued_c = staff("POST", "/api/v1/cards", {"card": CARD_C})
    assert status == 201, issued_c
    secrets_seen.append(issued_c["check_code"])
    replace = {"new_card": CARD_C, "check_code": issued_c["check_code"]}
    status, replaced = own("POST", f"/api/v1/rider/cards/{CARD_A}/replace", replace)
    assert (status, replaced["moved"]) == (201, 20_000), replaced
    assert own("POST", f"/api/v1/rider/cards/{CARD_A}/replace", replace)[0] == 200
    status, answered = staff("POST", f"/api/v1/disputes/{dispute['dispute_id']}/answer",
                             {"decision": "reject", "message": "Saldo sudah benar."},
                             token=ops, source=OPS_FROM)
    assert status == 200, answered
    assert own("POST", "/api/v1/rider/logout")[0] == 200
    rider = log_in(system, email, source=PHONE)
    assert own("DELETE", "/api/v1/rider/account")[0] == 200

    # -- the fare policy: recorded when it changes, not at every start ------------------
    engine = make_engine(system.env["TRANSIT_DATABASE_URL"])
    try:
        sessions = session_factory(engine)
        fingerprints = Fingerprints(bytes.fromhex(KEY))
        gateway = Actor.system(system.env["TRANSIT_GATEWAY_ID"])
        # The gateway recorded the built-in policy at its start: the same again is no news.
        assert not record_loaded(sessions, fingerprints, gateway, "", policy_from_setting(""))
        flat = tmp_path / "flat.toml"
        flat.write_text(FLAT_FARES)
        assert record_loaded(sessions, fingerprints, gateway, str(flat), load_policy(flat))
        assert not record_loaded(sessions, fingerprints, gateway, str(flat),
                                 load_policy(flat))
    finally:
        engine.dispose()

    # -- read back as an admin -----------------------------------------------------------
    status, page = audit(system, admin)
    assert status == 200, page
    records = page["records"]
    assert page["next"] is None and page["chain"] == {
        "verified": True, "problems": [], "scope": "page",
        "records_checked": len(records)}, page["chain"]
    # Numbered without gaps, each linked to the one before by its hash.
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert all(r["prev_hash"] == before["hash"] for before, r in
               zip(records, records[1:], strict=False))
    assert records[0]["prev_hash"] == "" and all(re.fullmatch("[0-9a-f]{64}", r["hash"])
                                                  for r in records)
    # Tokens are recorded by their own command (`token.created`), not looked at here.
    mine = [r for r in records if not r["action"].startswith("token.")]
    dispute_subject = f"dispute:{dispute['dispute_id']}"
    account_subject = f"account:{account_id}"
    assert [(r["action"], r["subject"]) for r in mine] == [
        ("device.added", system.device_id),      # by the set-up, before the gateway ran
        ("fares.loaded", "built-in"),             # the gateway's start
        ("card.issued", CARD_A),
        ("card.topped_up", CARD_A),
        ("card.blocked", CARD_A),
        ("card.unblocked", CARD_A),
        ("card.check_code_reissued", CARD_A),
        ("card.issued", CARD_B),
        ("card.topped_up", CARD_B),
        ("device.moved", system.device_id),
        ("device.key_rotated", system.device_id),
        ("device.added", SECOND_DEVICE),
        ("device.revoked", SECOND_DEVICE),
        ("denylist.key_rotated", "denylist"),
        ("rider.signed_up", account_subject),
        ("rider.card_linked", CARD_A),
        ("dispute.opened", dispute_subject),
        ("rider.card_lost", CARD_A),
        ("card.issued", CARD_C),
        ("rider.card_replaced", CARD_A),
        ("dispute.answered", dispute_subject),
        ("rider.deleted", account_subject),
        ("fares.loaded", str(flat)),
    ], [(r["action"], r["subject"]) for r in mine]
    by_action = {}
    for r in mine:
        by_action.setdefault(r["action"], []).append(r)

    # Who and from where: the admin token with its holder's name, the ops token, the
    # rider's account (never an e-mail), the command's user on this host, the gateway.
    named_admin = {"kind": "token", "id": admin_id, "name": "Siti Rahayu", "role": "admin"}
    for r in (*by_action["card.issued"][::2], *by_action["card.blocked"],
              *by_action["card.topped_up"][:1], *by_action["card.check_code_reissued"]):
        assert (r["actor"], r["source"]) == (named_admin, ADMIN_FROM), r
    answer = by_action["dispute.answered"][0]
    assert (answer["actor"], answer["source"]) == (
        {"kind": "token", "id": ops_id, "name": "Budi Santoso", "role": "ops"}, OPS_FROM)
    assert answer["detail"] == {"card": CARD_A, "decision": "reject", "amount": 0,
                                "entry_id": None}, answer
    rider_actor = {"kind": "rider", "id": account_subject, "name": "", "role": "rider"}
    for action in ("rider.signed_up", "rider.card_linked", "dispute.opened",
                   "rider.card_lost", "rider.card_replaced", "rider.deleted"):
        r = by_action[action][0]
        assert (r["actor"], r["source"]) == (rider_actor, PHONE), r
    for action in ("device.added", "device.moved", "device.key_rotated", "device.revoked",
                   "denylist.key_rotated"):
        for r in by_action[action]:
            assert r["actor"]["kind"] == "command" and r["source"].startswith("cli@"), r
    assert by_action["card.issued"][1]["actor"]["kind"] == "command"
    loaded = by_action["fares.loaded"][0]
    assert loaded["actor"]["kind"] == "system" and loaded["actor"]["id"] == \
        system.env["TRANSIT_GATEWAY_ID"], loaded
    assert re.fullmatch("[0-9a-f]{64}", loaded["detail"]["sha256"]), loaded
    assert by_action["fares.loaded"][1]["detail"]["sha256"] != loaded["detail"]["sha256"]

    # What each change was.
    assert by_action["card.issued"][0]["detail"] == {"category": "regular"}
    assert by_action["card.topped_up"][0]["detail"] == {
        "amount": 20_000, "reference": "ref-a-1", "entry_id": credited["entry_id"]}
    assert by_action["card.topped_up"][1]["detail"]["reference"] == "cli-b-1"
    assert by_action["card.blocked"][0]["detail"] == {"from": "active", "to": "blocked"}
    moved = by_action["device.moved"][0]["detail"]
    assert (moved["from"], moved["to"]) == ("SBY-0042", "SBY-0099"), moved
    assert by_action["device.added"][1]["detail"]["vehicle_id"] == "SBY-0077"
    assert by_action["denylist.key_rotated"][0]["detail"] == {
        "key_id": key_id(bytes.fromhex(new_key))}
    assert by_action["rider.card_replaced"][0]["detail"]["moved"] == 20_000
    assert by_action["rider.card_replaced"][0]["detail"]["new"] == CARD_C
    assert by_action["dispute.opened"][0]["detail"]["category"] == "other"
    # Never a secret, a check code, a password, an e-mail or what the rider wrote.
    text = json.dumps(page)
    for secret in (*secrets_seen, PASSWORD, email, email.split("@")[0], "Saldo"):
        assert secret not in text, secret

    # Pages: `next` is where the next one starts.
    status, first = audit(system, admin, "?limit=5")
    assert [r["seq"] for r in first["records"]] == [1, 2, 3, 4, 5] and first["next"] == 5
    assert first["chain"]["verified"]
    status, second = audit(system, admin, f"?limit=5&after={first['next']}")
    assert [r["seq"] for r in second["records"]] == [6, 7, 8, 9, 10], second
    # A time window, [from, to), with an offset as well as Z.
    moved_at = by_action["device.moved"][0]["at"]
    rotated_at = by_action["denylist.key_rotated"][0]["at"]
    start = datetime.fromisoformat(moved_at).astimezone(timezone(timedelta(hours=7)))
    status, window = audit(system, admin,
                           f"?from={start.isoformat().replace('+', '%2B')}&to={rotated_at}")
    assert status == 200, window
    actions = [r["action"] for r in window["records"]]
    assert actions[0] == "device.moved" and "denylist.key_rotated" not in actions and \
        "device.revoked" in actions, actions
    everything = audit(system, admin, "?scope=all")[1]["chain"]
    assert everything == {"verified": True, "problems": [], "scope": "all",
                          "records_checked": len(records)}, everything

    # Refused: other roles, no token, times that are not instants, a window backwards.
    for token in (ops, finance):
        status, body = audit(system, token)
        assert (status, body["error"]["code"]) == (403, "forbidden"), body
    assert audit(system, "")[0] == 401
    for query, code in (("?from=2026-13-01T00:00:00Z", "bad_time"),
                        ("?to=yesterday", "bad_time"),
                        ("?from=2026-01-01T10:00:00", "bad_time"),
                        ("?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "bad_range"),
                        ("?limit=0", "bad_limit"), ("?limit=10001", "bad_limit"),
                        ("?after=-1", "bad_after"), ("?scope=some", "bad_scope")):
        status, body = audit(system, admin, query)
        assert (status, body["error"]["code"]) == (400, code), (query, body)

    # -- behind the application's back --------------------------------------------------
    forged = by_action["card.topped_up"][0]
    plain = system.env["TRANSIT_DATABASE_URL"].replace("postgresql+psycopg://",
                                                       "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("UPDATE audit_log SET detail = %s WHERE seq = %s",
                     (json.dumps({"amount": 9_000_000, "entry_id": credited["entry_id"],
                                  "reference": "ref-a-1"}, separators=(",", ":")),
                      forged["seq"]))
    changed = (f"audit record {forged['seq']} was changed after it was written (its "
               "fingerprint does not match)")
    status, page = audit(system, admin)
    assert status == 200 and page["chain"]["verified"] is False, page["chain"]
    assert page["chain"]["problems"] == [changed], page["chain"]
    # It still shows, as it now reads, so that whoever reads it sees what was done.
    assert page["records"][forged["seq"] - 1]["detail"]["amount"] == 9_000_000
    assert audit(system, admin, "?scope=all")[1]["chain"]["problems"] == [changed]
    # The newest record deleted: every page sees it through the chain's head.
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq = %s", (len(records),))
    status, page = audit(system, admin, "?limit=2")
    assert page["chain"]["verified"] is False and page["chain"]["problems"] == [
        f"the audit records' chain ends at {len(records) - 1}, its head at "
        f"{len(records)}: audit records were removed from its end"], page["chain"]
    assert datetime.fromisoformat(records[0]["at"]).tzinfo == UTC
