"""The `transit` command of contract section 4, run as a user runs it: a subprocess with
settings in the environment, on PostgreSQL and on SQLite. A failure must be one clear
`Error:` line and a non-zero exit, never a Python traceback."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fare_gateway.schema import revisions
from testbed.broker import Broker
from testbed.environment import PG_ADMIN_URL, REDIS_URL
from testbed.gateway import transit, transit_exe
from testbed.ports import free_port
from tests.conftest import System
from tests.integration.commands import Result, clean_env, failed, ok
from tests.support.clients import make_tap
from transit.wire import Receipt

CARD = "04A1B2C3D4E5F6"
STUDENT = "04B1B2C3D4E5F6"
UNKNOWN = "0400000000DEAD"
HEX64 = re.compile(r"[0-9a-f]{64}")


def run_all(env: dict[str, str], commands: Sequence[Sequence[str]]) -> list[Result]:
    """Independent commands, a few at a time (each one is a fresh Python process)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda args: transit(*args, env=env, check=False), commands))


def card_json(result: Result) -> dict[str, object]:
    data = json.loads(ok(result).stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


# -- no database needed ---------------------------------------------------------------


def test_help_and_unusable_settings(tmp_path: Path) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/unused.db")
    helptext = ok(transit("--help", env=env)).stdout
    commands = set(re.findall(r"^  ([a-z][a-z-]*)\s", helptext, re.MULTILINE))
    # The subcommands implemented so far; contract section 4 lists the rest
    # (demo, agent, gtfs, settle) as they arrive.
    assert {"gateway", "db", "devices", "cards", "tokens"} <= commands, helptext
    for group, subs in (("db", ["upgrade"]), ("devices", ["add"]),
                        ("cards", ["issue", "topup", "show"]), ("tokens", ["create"])):
        text = ok(transit(group, "--help", env=env)).stdout
        for sub in subs:
            assert re.search(rf"^\s+{sub}\s", text, re.MULTILINE), (group, sub, text)
    assert ok(transit("--version", env=env)).stdout.strip()
    assert not (tmp_path / "unused.db").exists(), "--help must not touch the database"
    failed(transit("no-such-command", env=env, check=False), "no-such-command")

    # A database that cannot be reached, does not exist, or a URL that is not one:
    # one clear line naming the problem, not a stack trace.
    bad_urls = [
        "postgresql://postgres@127.0.0.1:1/transit",                 # nothing listening
        PG_ADMIN_URL.rsplit("/", 1)[0] + f"/no_such_db_{uuid.uuid4().hex[:8]}",
        f"sqlite:///{tmp_path}/no/such/dir/transit.db",              # cannot create the file
        "nonsense://somewhere/transit",                               # unknown dialect
        "not a url at all",                                           # unparseable
    ]
    url_commands = [("db", "upgrade"), ("cards", "show", CARD)]
    jobs = [(url, cmd) for url in bad_urls for cmd in url_commands]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda job: transit(*job[1], env=clean_env(TRANSIT_DATABASE_URL=job[0]), check=False),
            jobs))
    problems = []
    for (url, cmd), result in zip(jobs, results, strict=True):
        try:
            line = failed(result)
            assert "database" in line.lower() or "TRANSIT_DATABASE_URL" in line, line
        except AssertionError as exc:
            problems.append(f"TRANSIT_DATABASE_URL={url!r} transit {' '.join(cmd)}: "
                            f"{str(exc).splitlines()[0][:300]}\n  last stderr line: "
                            f"{(result.stderr.strip().splitlines() or [''])[-1][:300]}")
    assert not problems, "\n".join(problems)

    # Other settings that cannot work are named too.
    good_db = f"sqlite:///{tmp_path}/ok.db"
    for name, value in (("TRANSIT_MQTT_URL", "http://127.0.0.1:1883"),
                        ("TRANSIT_HTTP", "no-port")):
        env = clean_env(TRANSIT_DATABASE_URL=good_db, **{name: value})
        failed(transit("cards", "show", CARD, env=env, check=False), name)


# -- input checked before anything is written (database-independent, run once) ---------


def test_bad_input_is_refused_before_the_database(tmp_path: Path) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db")
    ok(transit("db", "upgrade", env=env))
    ok(transit("cards", "issue", CARD, env=env))
    bad = [
        # device secrets
        (("devices", "add", "DEV-S1", "--vehicle", "V1", "--secret", "zz" * 32), "secret"),
        (("devices", "add", "DEV-S2", "--vehicle", "V1", "--secret", "ab" * 31), "secret"),
        (("devices", "add", "DEV-S3", "--vehicle", "V1", "--secret", "ab" * 33), "secret"),
        (("devices", "add", "DEV-S5", "--vehicle", "V1", "--secret", ""), "secret"),
        # device and vehicle ids
        (("devices", "add", "bad id", "--vehicle", "V1"), "device"),
        (("devices", "add", "x" * 65, "--vehicle", "V1"), "device"),
        (("devices", "add", "bus\u00e9", "--vehicle", "V1"), "device"),
        (("devices", "add", "", "--vehicle", "V1"), "device"),
        (("devices", "add", "DEV-V1", "--vehicle", "bus 1"), "vehicle"),
        (("devices", "add", "DEV-V2", "--vehicle", ""), "vehicle"),
        (("devices", "add", "DEV-U1"), "vehicle"),                        # --vehicle required
        # card tokens and categories
        (("cards", "issue", "04a1b2c3d4e5f6"), "card"),                   # lower case
        (("cards", "issue", "04A1B2C"), "card"),                          # too short
        (("cards", "issue", "0" * 33), "card"),                           # too long
        (("cards", "issue", "04C1B2C3D4E5F6", "--category", "vip"), "category"),
        (("cards", "issue", "04C1B2C3D4E5F6", "--category", "Regular"), "category"),
        # top-up amounts and references
        (("cards", "topup", CARD, "0", "--reference", "zero"), "amount"),
        (("cards", "topup", CARD, "--reference", "neg", "--", "-5"), ""),
        (("cards", "topup", CARD, "12.5", "--reference", "frac"), "amount"),
        (("cards", "topup", CARD, "lots", "--reference", "word"), "amount"),
        (("cards", "topup", CARD, "99999999999999999999", "--reference", "huge"), "amount"),
        (("cards", "topup", CARD, "1000", "--reference", "has space"), "reference"),
        (("cards", "topup", CARD, "1000", "--reference", "x" * 65), "reference"),
        (("cards", "topup", CARD, "1000", "--reference", ""), "reference"),
        (("cards", "topup", CARD, "1000"), "reference"),                  # --reference required
        (("cards", "show", "not-a-card"), ""),
        # token roles
        (("tokens", "create", "--role", "root"), "role"),
        (("tokens", "create"), "role"),
    ]
    results = run_all(env, [cmd for cmd, _ in bad])
    for (cmd, word), result in zip(bad, results, strict=True):
        failed(result, *([word] if word else []))
        assert not HEX64.search(result.stdout), f"{cmd}: printed a secret yet failed"
    # Nothing was written: the card is as issued, the refused ids register fine now.
    assert card_json(transit("cards", "show", CARD, env=env))["balance"] == 0
    ok(transit("devices", "add", "DEV-S1", "--vehicle", "V1", "--secret", "01" * 32, env=env))


# -- schema ---------------------------------------------------------------------------


def test_db_upgrade_and_an_unmigrated_database(base_env: dict[str, str]) -> None:
    # Before `db upgrade`, every command that needs the schema says so.
    for result in run_all(base_env, [("cards", "issue", CARD),
                                     ("cards", "show", CARD),
                                     ("cards", "topup", CARD, "1000", "--reference", "r1"),
                                     ("tokens", "create", "--role", "admin"),
                                     ("devices", "add", "DEV-1", "--vehicle", "BUS-1")]):
        line = failed(result)
        assert "db upgrade" in line or "database" in line.lower(), line

    # Create, then run again (deploys do that): both fine, and data survives the second.
    ok(transit("db", "upgrade", env=base_env))
    ok(transit("cards", "issue", CARD, env=base_env))
    ok(transit("db", "upgrade", env=base_env))
    assert card_json(transit("cards", "show", CARD, env=base_env))["card"] == CARD


# -- devices --------------------------------------------------------------------------


def test_devices_add(base_env: dict[str, str]) -> None:
    env = base_env
    ok(transit("db", "upgrade", env=env))

    # Generated secrets: 32 random bytes as 64 lower-case hex digits, on stdout alone.
    first = ok(transit("devices", "add", "SBY-0001-A", "--vehicle", "SBY-0001", env=env))
    second = ok(transit("devices", "add", "SBY-0001-B", "--vehicle", "SBY-0001", env=env))
    secrets = [r.stdout.strip() for r in (first, second)]
    for s in secrets:
        assert HEX64.fullmatch(s), f"not a 64-hex secret: {s!r}"
    assert secrets[0] != secrets[1]
    assert len(set(bytes.fromhex(secrets[0]))) > 8  # random, not a constant pattern

    # A given secret is taken as it is (upper-case hex is hex) and not echoed as generated.
    given = ok(transit("devices", "add", "SBY-0002-A", "--vehicle", "SBY-0002",
                       "--secret", "AB" * 32, env=env))
    for printed in HEX64.findall(given.stdout.lower()):
        assert printed == "ab" * 32, "a secret other than the given one was printed"

    # Duplicates, with the same or another vehicle and secret (format errors are checked
    # once, in test_bad_input_is_refused_before_the_database).
    bad = [
        (("devices", "add", "SBY-0001-A", "--vehicle", "SBY-0001"), "SBY-0001-A"),
        (("devices", "add", "SBY-0001-A", "--vehicle", "SBY-0099"), "SBY-0001-A"),
        (("devices", "add", "SBY-0002-A", "--vehicle", "SBY-0002", "--secret", "cd" * 32),
         "SBY-0002-A"),
        (("devices", "add", "DEV-S1", "--vehicle", "V1", "--secret", "zz" * 32), "secret"),
        (("devices", "add", "DEV-V1", "--vehicle", "bus 1"), "vehicle"),
    ]
    results = run_all(env, [cmd for cmd, _ in bad])
    for (cmd, word), result in zip(bad, results, strict=True):
        failed(result, word)
        assert not HEX64.search(result.stdout), f"{cmd}: printed a secret yet failed"

    # Refused registrations left nothing behind: the same ids register fine afterwards.
    ok(transit("devices", "add", "DEV-S1", "--vehicle", "V1", "--secret", "01" * 32, env=env))
    assert HEX64.fullmatch(ok(transit("devices", "add", "DEV-V1", "--vehicle", "V1",
                                      env=env)).stdout.strip())


# -- cards ----------------------------------------------------------------------------


def test_cards_issue_topup_show(base_env: dict[str, str]) -> None:
    env = base_env
    ok(transit("db", "upgrade", env=env))

    issued = card_json(transit("cards", "issue", CARD, env=env))
    assert issued == {"card": CARD, "category": "regular", "status": "active", "balance": 0,
                      "currency": "IDR"}
    assert card_json(transit("cards", "issue", STUDENT, "--category", "student", env=env))[
        "category"] == "student"

    # Idempotent top-up: the reference is the key.
    first = card_json(transit("cards", "topup", CARD, "5000", "--reference", "bank-1", env=env))
    assert (first["card"], first["balance"], first["currency"]) == (CARD, 5000, "IDR")
    again = card_json(transit("cards", "topup", CARD, "5000", "--reference", "bank-1", env=env))
    assert again["balance"] == 5000
    if "created" in first:
        assert (first["created"], again["created"]) == (True, False)
    more = card_json(transit("cards", "topup", CARD, "2500", "--reference", "bank-2", env=env))
    assert more["balance"] == 7500

    bad = [
        (("cards", "issue", CARD), CARD),                                 # exists
        (("cards", "issue", CARD, "--category", "senior"), CARD),
        (("cards", "issue", "04C1B2C3D4E5F6", "--category", "vip"), "category"),
        (("cards", "topup", CARD, "6000", "--reference", "bank-1"), "bank-1"),  # conflict
        (("cards", "topup", CARD, "1", "--reference", "bank-2"), "bank-2"),
        (("cards", "topup", UNKNOWN, "1000", "--reference", "bank-9"), UNKNOWN),
        (("cards", "show", UNKNOWN), UNKNOWN),
    ]
    results = run_all(env, [cmd for cmd, _ in bad])
    for (_cmd, word), result in zip(bad, results, strict=True):
        failed(result, word)

    # Nothing above changed anything.
    shown = card_json(transit("cards", "show", CARD, env=env))
    assert shown == {"card": CARD, "category": "regular", "status": "active", "balance": 7500,
                     "currency": "IDR"}
    failed(transit("cards", "show", "04C1B2C3D4E5F6", env=env, check=False))  # refused issue
    failed(transit("cards", "show", UNKNOWN, env=env, check=False))  # top-up made no card


# -- tokens and provisioned secrets, against a running gateway ----------------------------


def test_tokens_and_given_secrets_work_against_the_gateway(system: System) -> None:
    http = system.http
    system.issue(CARD, 20_000)

    tokens = {}
    for role in ("admin", "ops", "finance"):
        out = ok(system.transit("tokens", "create", "--role", role)).stdout.strip()
        assert len(out.splitlines()) == 1 and " " not in out and len(out) >= 32, out
        tokens[role] = out
    assert len(set(tokens.values())) == 3

    status, card = http.get(f"/api/v1/cards/{CARD}", tokens["finance"])
    assert status == 200 and card["balance"] == 20_000, (status, card)
    assert http.get(f"/api/v1/cards/{CARD}/taps", tokens["finance"])[0] == 200
    assert http.post(f"/api/v1/cards/{CARD}/block", {}, tokens["finance"])[0] == 403
    assert http.get(f"/api/v1/cards/{CARD}", tokens["ops"])[0] == 403
    status, topped = http.post(f"/api/v1/cards/{CARD}/topups",
                               {"amount": 1000, "reference": "via-api"}, tokens["admin"])
    assert status == 201 and topped["balance"] == 21_000
    # The CLI sees what the API did, and the reverse.
    assert card_json(system.transit("cards", "show", CARD))["balance"] == 21_000

    # A device registered with --secret signs with exactly that secret: the gateway charges
    # its tap and signs the receipt with it.
    secret = bytes(range(32))
    ok(system.transit("devices", "add", "SBY-0077-A", "--vehicle", "SBY-0077",
                      "--secret", secret.hex()))
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic("SBY-0077-A"))
        tap = make_tap(secret, "SBY-0077-A", 1, CARD, vehicle_id="SBY-0077")
        peer.publish(system.tap_topic("SBY-0077-A"), tap.encode())
        got = [Receipt.parse(p) for _t, p in peer.wait_for(lambda m: len(m) >= 1)]
    finally:
        peer.close()
    assert got[0].status == "charged", got[0]
    assert got[0].verify(secret)
    assert got[0].balance == 21_000 - got[0].fare


# -- what a new user meets: each failure one line, no traceback ----------------------------


def migrated(tmp_path: Path, **settings: str) -> dict[str, str]:
    """Settings of a migrated SQLite database in `tmp_path` (and the shared Redis)."""
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db",
                    TRANSIT_REDIS_URL=REDIS_URL, TRANSIT_HTTP=f"127.0.0.1:{free_port()}",
                    TRANSIT_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}/v1",
                    TRANSIT_GATEWAY_ID=f"gw-{uuid.uuid4().hex[:8]}", **settings)
    ok(transit("db", "upgrade", env=env))
    return env


def test_db_upgrade_to_a_revision_that_does_not_exist(tmp_path: Path) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=f"sqlite:///{tmp_path}/transit.db")
    result = transit("db", "upgrade", "--revision", "nope", env=env, check=False)
    assert result.returncode == 2
    failed(result, "'nope'", "--revision", "head", "0001")
    assert not (tmp_path / "transit.db").exists()


def test_db_upgrade_says_the_revision_it_reached_and_never_goes_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/transit.db"
    env = clean_env(TRANSIT_DATABASE_URL=url)
    assert ok(transit("db", "upgrade", "--revision", "0003", env=env)).stdout == \
        f"database at 0003: {url}\n"
    head = revisions()[0]
    assert ok(transit("db", "upgrade", env=env)).stdout == f"database at {head}: {url}\n"
    for target in ("0003", "base"):
        result = transit("db", "upgrade", "--revision", target, env=env, check=False)
        assert result.returncode == 1
        failed(result, f"the database {url} is at revision {head}, past {target}",
               "only migrates forward")
        assert result.stdout == ""
    assert revision_of(tmp_path / "transit.db") == head  # nothing was changed
    # Asked for the revision it is at: nothing to do, and it says where it is.
    assert ok(transit("db", "upgrade", "--revision", head, env=env)).stdout == \
        f"database at {head}: {url}\n"


def test_a_database_newer_than_this_version(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    with sqlite3.connect(tmp_path / "transit.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0099'")
    gateway = transit("gateway", env=env, check=False)
    said = failed(gateway, "is at revision 0099, newer than this version knows")
    for args in (("db", "upgrade"), ("db", "upgrade", "--revision", "0003")):
        result = transit(*args, env=env, check=False)
        assert result.returncode == 1
        assert failed(result) == said  # the gateway's own words
        assert "Can't locate revision" not in result.stderr
    assert revision_of(tmp_path / "transit.db") == "0099"


def revision_of(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_a_redis_url_that_is_not_one(tmp_path: Path) -> None:
    env = dict(migrated(tmp_path), TRANSIT_REDIS_URL="notredis://x")
    result = transit("gateway", env=env, check=False)
    assert result.returncode == 1
    failed(result, "TRANSIT_REDIS_URL", "redis://, rediss:// or unix://", "not notredis://")


def test_usage_errors_are_one_line_and_typos_are_not_swallowed(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    ok(transit("cards", "issue", CARD, env=env))
    for args, line in (
            (("cards", "topup", CARD, "1000"),
             "Error: Missing option '--reference' (see 'transit cards topup --help')"),
            (("cards", "topup", CARD, "1000", "--refrence", "r1"),
             "Error: No such option '--refrence'. Did you mean '--reference'? (see 'transit "
             "cards topup --help')"),
            (("cards", "topup", CARD, "-500", "--refrence", "r1"),
             "Error: No such option '--refrence'. Did you mean '--reference'? (see 'transit "
             "cards topup --help')"),
            (("db", "upgrade", "--revision"),
             "Error: Option '--revision' requires an argument"),  # click names no command
    ):
        result = transit(*args, env=env, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr == line + "\n"
        assert result.stdout == ""
    assert card_json(transit("cards", "show", CARD, env=env))["balance"] == 0


def test_the_gateway_on_a_database_without_the_schema(pg_url: str, tmp_path: Path) -> None:
    env = clean_env(TRANSIT_DATABASE_URL=pg_url, TRANSIT_REDIS_URL=REDIS_URL,
                    TRANSIT_HTTP=f"127.0.0.1:{free_port()}")
    result = transit("gateway", env=env, check=False)
    assert result.returncode == 1
    failed(result, "has no schema", "run transit db upgrade")
    # On SQLite, a file that is not there is not made: the same advice, and no empty file.
    env["TRANSIT_DATABASE_URL"] = f"sqlite:///{tmp_path}/transit.db"
    failed(transit("gateway", env=env, check=False), f"no database at {tmp_path}/transit.db",
           "run transit db upgrade")
    assert not (tmp_path / "transit.db").exists()


def test_the_gateway_on_a_port_in_use(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    host, _, port = env["TRANSIT_HTTP"].partition(":")
    with socket.socket() as taken:
        taken.bind((host, int(port)))
        taken.listen()
        result = transit("gateway", env=env, check=False)
    assert result.returncode == 1
    failed(result, f"TRANSIT_HTTP {host}:{port} is already in use", "set TRANSIT_HTTP")


def test_the_gateway_with_no_broker(tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens there
    env = migrated(tmp_path, TRANSIT_MQTT_URL=f"mqtt://127.0.0.1:{nobody}",
                   TRANSIT_BROKER_WAIT_S="1")
    result = transit("gateway", env=env, check=False)
    assert result.returncode == 1
    failed(result, f"the broker at 127.0.0.1:{nobody} did not answer within 1 s",
           "connection refused", "TRANSIT_MQTT_URL")


def test_a_gateway_told_not_to_wait_for_its_broker_says_so_once(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "mosquitto")  # its port is chosen; it is not started yet
    env = migrated(tmp_path, TRANSIT_MQTT_URL=broker.url, TRANSIT_BROKER_WAIT_S="0")
    base = f"http://{env['TRANSIT_HTTP']}"
    log_path = tmp_path / "gateway.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([transit_exe(), "gateway"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        warned = wait_for(lambda: "deny list not published" in log_path.read_text(), 30,
                          proc, log_path)
        # The outage lasts several of the publisher's one-second retries, the gateway
        # serving meanwhile and saying the broker is down.
        assert wait_for(lambda: time.monotonic() - warned > 3.5 and health(base) == 503, 30,
                        proc, log_path)
        broker.start()
        wait_for(lambda: health(base) == 200
                 and "deny list publishing again" in log_path.read_text(), 60, proc, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        broker.stop()
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.count("deny list not published") == 1, text[-3000:]
    assert f"the broker at 127.0.0.1:{broker.port} is not reachable (connection refused)" \
        in text, text[-3000:]
    assert f"broker 127.0.0.1:{broker.port} (retrying)" in text, text[-3000:]


def health(base: str) -> int | None:
    """The status `/healthz` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def wait_for(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes],
             log_path: Path) -> float:
    """Poll `condition` until it holds (the time it did) while the gateway runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.1)
    return time.monotonic()


def test_card_tokens_and_amounts_are_refused_in_the_api_s_words(tmp_path: Path) -> None:
    env = migrated(tmp_path)
    ok(transit("cards", "issue", CARD, env=env))
    for result, words in zip(run_all(env, [
            ("cards", "show", CARD.lower()),
            ("cards", "topup", CARD, "-500", "--reference", "neg-1"),
            ("cards", "topup", CARD, "0", "--reference", "zero-1")]), [
            ("card must be 8-32 upper-case hex digits",),
            ("amount must be between 1 and 10000000", "-500"),
            ("amount must be between 1 and 10000000",)], strict=True):
        failed(result, *words)
        assert "no such option" not in result.stderr.lower()
    assert card_json(transit("cards", "show", CARD, env=env))["balance"] == 0
