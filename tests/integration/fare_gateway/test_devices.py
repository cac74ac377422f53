"""Device lifecycle against the real gateway: rotate with a grace period, revoke, list,
secrets encrypted at rest, and replay/spoofing of signed messages (issue 8, points 1-2).

Every test here runs with TRANSIT_SECRET_KEY set, so the secrets are stored encrypted."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from sqlalchemy import func, select, text

from fare_gateway.adapters.models import QuarantineRecord
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from testbed.gateway import transit
from tests.conftest import System
from tests.support.clients import TS_BASE, make_tap
from transit.wire import Receipt

CARD = "04A1B2C3D4E5F6"
AT_REST_KEY = "5e" * 32
# DeviceDirectory's time to live. The tests below sleep it out: not to wait for the
# gateway to process something (they then wait for the tap's quarantine record), but
# because the rule under test is a span of wall-clock time.
CACHE_S = 5.0


@pytest.fixture
def base_env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "TRANSIT_SECRET_KEY": AT_REST_KEY}


def receipts(messages: list[tuple[str, bytes]]) -> list[Receipt]:
    return [Receipt.parse(p) for t, p in messages if t.endswith("/receipt")]


def quarantined(system: System) -> list[tuple[str, str | None]]:
    with session_factory(system.engine())() as s:
        return [(r, t) for r, t in s.execute(select(QuarantineRecord.reason,
                                                    QuarantineRecord.tap_id)).all()]


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def fares(system: System) -> int:
    with session_factory(system.engine())() as s:
        return int(s.scalar(select(func.count()).select_from(Entry).where(
            Entry.kind == "fare")) or 0)


def test_rotation_keeps_the_old_key_for_the_grace_period_only(system: System) -> None:
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    old = system.secret
    new = bytes.fromhex(system.transit("devices", "rotate", system.device_id).stdout.strip())
    assert len(new) == 32 and new != old

    # Within the grace period: a tap signed with the old key is charged; the receipt is
    # signed with the CURRENT key. The new key works too.
    peer.publish(system.tap_topic(), make_tap(old, system.device_id, 1, CARD).encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 1))
    assert (got[0].seq, got[0].status) == (1, "charged")
    assert got[0].verify(new) and not got[0].verify(old)
    peer.publish(system.tap_topic(), make_tap(new, system.device_id, 2, CARD,
                                              ts=TS_BASE + 3 * 3_600_000).encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 2))
    assert (got[1].seq, got[1].status) == (2, "charged")

    # Rotate again with no grace: the key before (`new`) stops working once the
    # directory's cache has expired.
    newest_hex = "c3" * 32
    out = system.transit("devices", "rotate", system.device_id, "--secret", newest_hex,
                         "--grace-hours", "0")
    assert newest_hex not in out.stdout + out.stderr
    time.sleep(CACHE_S + 0.5)
    late = make_tap(new, system.device_id, 3, CARD, ts=TS_BASE + 6 * 3_600_000)
    peer.publish(system.tap_topic(), late.encode())
    wait_until(lambda: ("bad_signature", late.tap_id) in quarantined(system))
    fresh = make_tap(bytes.fromhex(newest_hex), system.device_id, 4, CARD,
                     ts=TS_BASE + 9 * 3_600_000)
    peer.publish(system.tap_topic(), fresh.encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 3))
    assert [(r.seq, r.status) for r in got] == [(1, "charged"), (2, "charged"),
                                                (4, "charged")]
    assert got[2].verify(bytes.fromhex(newest_hex))
    assert fares(system) == 3
    peer.close()


def test_a_revoked_device_is_refused_within_the_cache_time(system: System) -> None:
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 1, CARD).encode())
    assert receipts(peer.wait_for(lambda m: len(m) >= 1))[0].status == "charged"

    system.transit("devices", "revoke", system.device_id)
    time.sleep(CACHE_S + 0.5)
    after = make_tap(system.secret, system.device_id, 2, CARD, ts=TS_BASE + 3 * 3_600_000)
    peer.publish(system.tap_topic(), after.encode())
    wait_until(lambda: ("inactive_device", after.tap_id) in quarantined(system))
    assert fares(system) == 1
    assert len(receipts(peer.messages)) == 1
    # A revoked device cannot be rotated back into service.
    r = system.transit("devices", "rotate", system.device_id, check=False)
    assert r.returncode != 0 and "revoked" in r.stderr
    peer.close()


def test_list_shows_devices_and_never_a_secret(system: System) -> None:
    other = system.transit("devices", "add", "SBY-0043-A", "--vehicle", "SBY-0043").stdout.strip()
    rotated = system.transit("devices", "rotate", system.device_id).stdout.strip()
    system.transit("devices", "revoke", "SBY-0043-A")
    out = system.transit("devices", "list").stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["DEVICE", "VEHICLE", "STATUS", "KEY", "CREATED"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {system.device_id, "SBY-0043-A"}
    assert rows[system.device_id].split()[1:3] == ["SBY-0042", "active"]
    assert "until" in rows[system.device_id]
    assert rows["SBY-0043-A"].split()[1:3] == ["SBY-0043", "revoked"]
    assert rows["SBY-0043-A"].endswith(" no")
    as_json = system.transit("devices", "list", "--json").stdout
    assert '"previous_in_grace": true' in as_json and '"encrypted": true' in as_json
    for secret in (system.secret.hex(), other, rotated):
        assert secret not in out and secret not in as_json


def test_secrets_are_not_in_the_clear_in_a_database_dump(system: System) -> None:
    rotated = system.transit("devices", "rotate", system.device_id).stdout.strip()
    # A device registered without the key is stored plain, still works, and is encrypted
    # when rotated.
    plain_env = {k: v for k, v in system.env.items() if k != "TRANSIT_SECRET_KEY"}

    legacy = transit("devices", "add", "SBY-0050-A", "--vehicle", "SBY-0050",
                     env=plain_env).stdout.strip()
    with system.engine().connect() as c:
        stored = dict(c.execute(text("SELECT device_id, secret_hex FROM devices")).all())
    assert stored["SBY-0050-A"] == legacy
    legacy_new = system.transit("devices", "rotate", "SBY-0050-A").stdout.strip()
    with system.engine().connect() as c:
        dump = c.execute(text("SELECT device_id, secret_hex, previous_secret FROM devices")
                         ).all()
    blob = repr(dump)
    for secret in (system.secret.hex(), rotated, legacy, legacy_new):
        assert secret not in blob and secret.upper() not in blob
    for _device, current, previous in dump:
        assert current.startswith("v1:") and previous.startswith("v1:")
    # Without the key, an encrypted row is a clear error, not a traceback.
    r = transit("devices", "rotate", "SBY-0050-A", env=plain_env, check=False)
    assert r.returncode != 0 and "TRANSIT_SECRET_KEY is not set" in r.stderr
    assert "Traceback" not in r.stderr
    r = transit("devices", "rotate", "SBY-0050-A", env={**plain_env,
                "TRANSIT_SECRET_KEY": "00" * 32}, check=False)
    assert r.returncode != 0 and "wrong TRANSIT_SECRET_KEY" in r.stderr

    # The legacy device's current (encrypted) key verifies at the gateway.
    system.issue(CARD, 50_000)
    peer = system.peer()
    peer.subscribe(system.receipt_topic("SBY-0050-A"))
    peer.publish(system.tap_topic("SBY-0050-A"), make_tap(
        bytes.fromhex(legacy_new), "SBY-0050-A", 1, CARD, vehicle_id="SBY-0050").encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 1))
    assert got[0].status == "charged" and got[0].verify(bytes.fromhex(legacy_new))
    peer.close()
    log = system.gateway.log_path.read_text()
    for secret in (system.secret.hex(), rotated, legacy, legacy_new):
        assert secret not in log


def test_replay_is_a_duplicate_and_a_foreign_key_or_topic_is_refused(system: System) -> None:
    system.issue(CARD, 50_000)
    b_id = "SBY-0077-B"
    b_secret = bytes.fromhex(system.transit("devices", "add", b_id, "--vehicle",
                                            "SBY-0077").stdout.strip())
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    peer.subscribe(system.receipt_topic(b_id))

    tap = make_tap(system.secret, system.device_id, 1, CARD)
    peer.publish(system.tap_topic(), tap.encode())
    peer.wait_for(lambda m: len(m) >= 1)
    peer.publish(system.tap_topic(), tap.encode())  # replayed verbatim
    got = receipts(peer.wait_for(lambda m: len(m) >= 2))
    assert [(r.status, r.fare, r.balance) for r in got] == [("charged", 5000, 45_000),
                                                            ("duplicate", 5000, 45_000)]

    # Signed with A's key, published on B's topic: with A's id in the body ...
    as_a = make_tap(system.secret, system.device_id, 2, CARD, ts=TS_BASE + 3 * 3_600_000)
    peer.publish(system.tap_topic(b_id), as_a.encode())
    # ... and with B's id in the body.
    as_b = make_tap(system.secret, b_id, 1, CARD, ts=TS_BASE + 3 * 3_600_000,
                    vehicle_id="SBY-0077")
    peer.publish(system.tap_topic(b_id), as_b.encode())
    wait_until(lambda: len(quarantined(system)) >= 2)
    reasons = sorted(quarantined(system))
    assert reasons == sorted([("topic_mismatch", as_a.tap_id), ("bad_signature", as_b.tap_id)])
    # B's own key is fine on B's topic.
    real_b = make_tap(b_secret, b_id, 1, CARD, ts=TS_BASE + 3 * 3_600_000,
                      vehicle_id="SBY-0077")
    peer.publish(system.tap_topic(b_id), real_b.encode())
    got = receipts(peer.wait_for(lambda m: len(m) >= 3))
    assert [(r.device_id, r.status) for r in got][2] == (b_id, "charged")
    assert fares(system) == 2
    peer.close()
