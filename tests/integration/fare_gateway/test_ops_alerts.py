"""`GET /api/v1/ops/alerts` from outside (contract section 8), on `transit gateway` with
the private Mosquitto, Redis and PostgreSQL: a vehicle whose last position is 100 s old,
validators whose status says online but that have gone quiet (TRANSIT_VALIDATOR_SILENT_S
made 2 s, so that the test need not wait 90), a spool that keeps growing, disputes
escalated and overdue; and what is left out: a revoked validator, disputes open or
answered. Without Redis only the disputes' alerts are told.

A growing spool takes two minutes of status messages kept at most every 15 s: those
samples are written through the tracking store, with the times they would have come at,
into the Redis the gateway reads; everything else goes over MQTT or through the API.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from fare_gateway.adapters.models import Dispute, RiderAccount
from fare_gateway.fares.policy import policy_from_setting
from fare_gateway.ops import OpsOffice
from fare_gateway.riders.dispute_office import DisputeOffice
from ledger.adapters.db import make_engine, session_factory
from ledger.services import Ledger
from testbed.environment import REDIS_URL
from tests.conftest import System
from tests.support.clients import MqttPeer
from tests.support.commands import transit_here
from tests.support.faults import wait_until
from tracking.store import TrackingStore, redis_client
from transit.wire import Position

S = 1000
H = 3_600_000
SILENT_S = 2
CARD = "04F0000000A1"
QUIET, SPOOLING, REVOKED = "SBY-0043-A", "SBY-0044-A", "SBY-0045-A"


@pytest.fixture
def base_env(base_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Validators turn silent after 2 s; the test's Redis keys are removed afterwards."""
    yield {**base_env, "TRANSIT_VALIDATOR_SILENT_S": str(SILENT_S)}
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"transit:{base_env['TRANSIT_TOPIC_PREFIX']}:*",
                                 count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def peer(system: System) -> Iterator[MqttPeer]:
    p = system.peer()
    yield p
    p.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def alerts(system: System, token: str) -> dict[str, Any]:
    status, body = system.http.get("/api/v1/ops/alerts", token=token)
    assert status == 200, body
    assert set(body) == {"alerts", "counts"}, body
    return dict(body)


def add_disputes(env: dict[str, str], ages: dict[str, tuple[int, bool]]) -> dict[str, int]:
    """Disputes on CARD opened `age` ago (answered or not), as a rider's account holds
    them; their ids by name."""
    engine = make_engine(env["TRANSIT_DATABASE_URL"])
    try:
        sessions = session_factory(engine)
        now = now_ms()
        with sessions.begin() as s:
            account = RiderAccount(email=f"{uuid.uuid4().hex[:8]}@example.org",
                                   password_hash=None, created_ms=now - 100 * H)
            s.add(account)
            s.flush()
            made = {name: Dispute(account_id=account.id, card=CARD, tap_id=None,
                                  service_date="2025-11-28", category="wrong_fare",
                                  message=name, created_ms=now - age,
                                  answered_ms=now - H if answered else None,
                                  decision="reject" if answered else None,
                                  answer="ok" if answered else None)
                    for name, (age, answered) in ages.items()}
            s.add_all(made.values())
            s.flush()
            return {name: d.id for name, d in made.items()}
    finally:
        engine.dispose()


def status(system: System, peer: MqttPeer, device: str, **said: Any) -> None:
    peer.publish(f"{system.prefix}/dev/{device}/status", json.dumps(said).encode(),
                 qos=1, retain=False)


def test_stale_silent_spooling_and_disputes_are_alerted_newest_first(
        system: System, peer: MqttPeer) -> None:
    ops = system.token("ops")
    for device, vehicle in ((QUIET, "SBY-0043"), (SPOOLING, "SBY-0044"),
                            (REVOKED, "SBY-0045")):
        system.add_device(device, vehicle)
    system.issue(CARD)
    ids = add_disputes(system.env, {"overdue": (50 * H, False), "escalated": (30 * H, False),
                                    "answered": (50 * H, True), "open": (H, False)})
    sent = now_ms()
    # A position 100 s old is accepted (inside the window) and makes the vehicle stale.
    position_ts = sent - 100 * S
    peer.publish(f"{system.prefix}/dev/{system.device_id}/pos", Position(
        device_id=system.device_id, vehicle_id="SBY-0042", route_id="R1", ts=position_ts,
        lat_e6=-7_257_500, lon_e6=112_752_100).signed(system.secret).encode())
    status(system, peer, QUIET, online=True, spool_depth=0)
    status(system, peer, REVOKED, online=True, spool_depth=0)
    transit_here("devices", "revoke", REVOKED, env=system.env)
    # Ten samples 15 s apart, one tap more each time, the last one now.
    store = TrackingStore(redis_client(REDIS_URL), system.prefix)
    first_sample = sent - 135 * S
    for i in range(10):
        store.save_status(SPOOLING, {"online": True, "spool_depth": 10 + i},
                          first_sample + i * 15 * S)

    expected = {("vehicle_stale", "SBY-0042"), ("validator_silent", system.device_id),
                ("validator_silent", QUIET), ("validator_silent", SPOOLING),
                ("spool_growing", SPOOLING), ("dispute_overdue", str(ids["overdue"])),
                ("dispute_escalated", str(ids["escalated"]))}

    def told() -> bool:
        return {(a["kind"], a["subject"]) for a in alerts(system, ops)["alerts"]} == expected

    wait_until(told, 20, "every alert")
    body = alerts(system, ops)
    found = {(a["kind"], a["subject"]): a for a in body["alerts"]}
    assert [a["since"] for a in body["alerts"]] == sorted(
        (a["since"] for a in body["alerts"]), reverse=True)
    assert body["counts"] == {"dispute_overdue": 1, "validator_silent": 3,
                              "spool_growing": 1, "vehicle_stale": 1, "bunching": 0,
                              "dispute_escalated": 1}
    for a in body["alerts"]:
        assert set(a) == {"kind", "subject", "since", "detail", "detail_id", "data"}, a
        assert a["detail"] and a["detail_id"] and a["detail"] != a["detail_id"], a

    stale = found["vehicle_stale", "SBY-0042"]
    assert stale["since"] == position_ts + 90 * S
    assert stale["data"]["last_position_ts"] == position_ts
    assert stale["data"]["device_id"] == system.device_id
    quiet = found["validator_silent", QUIET]
    assert sent + SILENT_S * S <= quiet["since"] <= now_ms(), quiet
    assert quiet["since"] == quiet["data"]["last_seen_ms"] + SILENT_S * S
    spool = found["spool_growing", SPOOLING]
    assert spool["since"] == first_sample and spool["data"]["spool_depth"] == 19, spool
    assert found["validator_silent", SPOOLING]["data"]["last_seen_ms"] == sent
    engine = system.engine()
    try:
        with session_factory(engine)() as s:
            opened = dict(s.execute(select(Dispute.id, Dispute.created_ms).where(
                Dispute.id.in_(list(ids.values())))).all())
            assert s.scalar(select(func.count()).select_from(Dispute)) == len(ids)
    finally:
        engine.dispose()
    overdue = found["dispute_overdue", str(ids["overdue"])]
    assert overdue["since"] == opened[ids["overdue"]] + 48 * H
    assert overdue["data"]["card"] == CARD and overdue["data"]["category"] == "wrong_fare"
    assert found["dispute_escalated", str(ids["escalated"])]["since"] == \
        opened[ids["escalated"]] + 24 * H

    # A fresh position clears the vehicle and its validator; the rest stands.
    peer.publish(f"{system.prefix}/dev/{system.device_id}/pos", Position(
        device_id=system.device_id, vehicle_id="SBY-0042", route_id="R1", ts=now_ms(),
        lat_e6=-7_257_600, lon_e6=112_752_100).signed(system.secret).encode())
    wait_until(lambda: ("vehicle_stale", "SBY-0042") not in {
        (a["kind"], a["subject"]) for a in alerts(system, ops)["alerts"]}, 20,
        "the stale vehicle cleared")
    # The revoked validator is never an alert; finance may not look.
    assert REVOKED not in {a["subject"] for a in alerts(system, ops)["alerts"]}
    assert system.http.get("/api/v1/ops/alerts", token=system.token("finance"))[0] == 403
    assert system.http.get("/api/v1/ops/alerts")[0] == 401


def test_without_redis_only_the_disputes_are_alerted(tmp_path: Path) -> None:
    env = {"TRANSIT_DATABASE_URL": f"sqlite:///{tmp_path}/transit.db"}
    transit_here("db", "upgrade", env=env)
    transit_here("cards", "issue", CARD, env=env)
    ids = add_disputes(env, {"overdue": (49 * H, False), "open": (H, False)})
    engine = make_engine(env["TRANSIT_DATABASE_URL"])
    try:
        sessions = session_factory(engine)
        policy = policy_from_setting("")
        office = OpsOffice(sessions, None, DisputeOffice(
            sessions, Ledger(engine, policy.currency), policy))
        (alert,) = office.alerts()
        assert (alert.kind, alert.subject) == ("dispute_overdue", str(ids["overdue"]))
        later = OpsOffice(sessions, None, office.disputes, clock=lambda: now_ms() + 48 * H)
        assert sorted(a.kind for a in later.alerts()) == ["dispute_overdue",
                                                          "dispute_overdue"]
    finally:
        engine.dispose()
