"""`GET /api/v1/exceptions` from outside (contract section 8): taps of an unknown card,
badly signed, malformed and hostile messages, a tap naming another vehicle, published
over MQTT into `transit gateway` (private Mosquitto; PostgreSQL and SQLite), each listed
once with its reason, newest first, with the counts per reason; the `since`, `reason`,
`limit` and `before` parameters, and a 400 for each malformed one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import System
from tests.support.clients import MqttPeer, make_tap
from tests.support.faults import wait_until

pytestmark = pytest.mark.sqlite_too  # the cursor compares tap ids in the database

KNOWN, UNKNOWN, FORGED = "04E0000000A1", "04E0000000B2", "04E0000000C3"
OTHER_BUS = "SBY-0099"
EXPECTED = {"unknown_card": 2, "bad_signature": 1, "malformed": 2, "wrong_vehicle": 1,
            "unknown_device": 1}


@pytest.fixture
def validators(system: System) -> Iterator[MqttPeer]:
    """A client publishing as the validators do, and hearing their receipts."""
    client = system.peer()
    client.subscribe(f"{system.prefix}/dev/+/receipt")
    yield client
    client.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def exceptions(system: System, token: str, query: str = "") -> dict[str, Any]:
    status, body = system.http.get(f"/api/v1/exceptions{query}", token=token)
    assert status == 200, body
    assert set(body) == {"exceptions", "counts", "since", "next"}, body
    return dict(body)


def publish_trouble(system: System, peer: MqttPeer) -> int:
    """One of each kind of exception, and a charged tap that is none; returns when the
    first was sent."""
    system.issue(KNOWN, 20_000)
    start = now_ms()
    t = start - 60_000
    dev, secret, topic = system.device_id, system.secret, system.tap_topic()
    peer.publish_many([
        (topic, make_tap(secret, dev, 1, UNKNOWN, ts=t).encode()),
        (topic, make_tap(secret, dev, 2, UNKNOWN, ts=t + 1, accepted=False,
                         reason="repeat").encode()),
        (topic, make_tap(bytes(32), dev, 3, FORGED, ts=t + 2).encode()),
        (topic, b"{not json"),
        # Hostile: JSON nested deeper than any parser here goes, within the 4 KiB.
        (topic, b'{"card": ' + b"[" * 2000 + b"]" * 2000 + b"}"),
        (topic, make_tap(secret, dev, 4, KNOWN, ts=t + 3, vehicle_id=OTHER_BUS).encode()),
        (system.tap_topic("NO-SUCH-DEV"),
         make_tap(secret, "NO-SUCH-DEV", 1, KNOWN, ts=t + 4).encode()),
        (topic, make_tap(secret, dev, 5, KNOWN, ts=t + 5).encode()),  # charged
    ])
    # Receipts for the four taps the gateway can answer (the others have no key to sign).
    peer.wait_for(lambda m: sum(x.endswith("/receipt") for x, _ in m) >= 4, timeout=30)
    return start


def test_each_exception_is_listed_once_with_its_reason_and_counted(
        system: System, validators: MqttPeer) -> None:
    ops = system.token("ops")
    start = publish_trouble(system, validators)
    wait_until(lambda: exceptions(system, ops)["counts"] == EXPECTED, 30,
               "every exception counted")
    body = exceptions(system, ops)
    listed = body["exceptions"]
    assert len(listed) == sum(EXPECTED.values()) and body["next"] is None, listed
    assert [e["ts"] for e in listed] == sorted((e["ts"] for e in listed), reverse=True)
    assert all(start <= e["ts"] <= now_ms() for e in listed), listed
    assert list(body["counts"]) == ["malformed", "unknown_card", "bad_signature",
                                    "unknown_device", "wrong_vehicle"]
    assert now_ms() - 86_400_000 - 60_000 < body["since"] <= start - 86_400_000 + 60_000
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for e in listed:
        assert set(e) == {"ts", "device_id", "reason", "tap_id", "card", "tap_ts", "source",
                          "topic", "detail", "vehicle_id", "route_id"}, e
        assert e["detail"], e
        by_reason.setdefault(e["reason"], []).append(e)

    dev = system.device_id
    unknown = sorted(by_reason["unknown_card"], key=lambda e: e["tap_id"])
    assert [(e["source"], e["tap_id"], e["card"], e["device_id"], e["vehicle_id"],
             e["topic"]) for e in unknown] == [
        ("tap", f"{dev}:1", UNKNOWN, dev, "SBY-0042", None),
        ("tap", f"{dev}:2", UNKNOWN, dev, "SBY-0042", None)]
    assert "denied at the reader (repeat)" in unknown[1]["detail"]
    assert unknown[0]["tap_ts"] == start - 60_000

    (forged,) = by_reason["bad_signature"]
    assert (forged["source"], forged["tap_id"], forged["card"], forged["device_id"],
            forged["topic"], forged["tap_ts"], forged["route_id"]) == (
        "quarantine", f"{dev}:3", FORGED, dev, system.tap_topic(), start - 60_000 + 2, "R1")

    malformed = sorted(by_reason["malformed"], key=lambda e: e["detail"])
    for e in malformed:  # the device the topic names; nothing read from the bytes
        assert (e["source"], e["device_id"], e["card"], e["tap_id"], e["tap_ts"]) == (
            "quarantine", dev, None, None, None), e
    assert any("not JSON" in e["detail"] for e in malformed), malformed

    # A rejected tap is kept in the inbox and the quarantine, and listed once.
    (wrong,) = by_reason["wrong_vehicle"]
    assert (wrong["source"], wrong["tap_id"], wrong["card"], wrong["vehicle_id"]) == (
        "tap", f"{dev}:4", KNOWN, OTHER_BUS)
    (stranger,) = by_reason["unknown_device"]
    assert (stranger["device_id"], stranger["card"], stranger["tap_id"]) == (
        "NO-SUCH-DEV", KNOWN, "NO-SUCH-DEV:1")
    assert f"{dev}:5" not in {e["tap_id"] for e in listed}  # charged: no exception

    # reason: only those, the counts still of every reason
    only = exceptions(system, ops, "?reason=bad_signature")
    assert [e["tap_id"] for e in only["exceptions"]] == [f"{dev}:3"]
    assert only["counts"] == EXPECTED
    assert [e["tap_id"] for e in exceptions(system, ops, "?reason=unknown_card")[
        "exceptions"]] == [e["tap_id"] for e in listed if e["reason"] == "unknown_card"]
    assert exceptions(system, ops, "?reason=no_such_reason")["exceptions"] == []

    # since: epoch ms or ISO-8601; the counts follow it
    later = max(e["ts"] for e in listed)
    iso = datetime.fromtimestamp(later / 1000, UTC).isoformat(timespec="milliseconds")
    for query in (f"?since={later}", f"?since={iso.replace('+00:00', 'Z')}"):
        newest = exceptions(system, ops, query)
        assert newest["since"] == later
        assert newest["exceptions"] == [e for e in listed if e["ts"] >= later], query
        assert sum(newest["counts"].values()) == len(newest["exceptions"])
    future = exceptions(system, ops, f"?since={now_ms() + 3_600_000}")
    assert (future["exceptions"], future["counts"]) == ([], {})

    # pages of two, through `before`, give the same list
    paged: list[dict[str, Any]] = []
    query = "?limit=2"
    while True:
        page = exceptions(system, ops, query)
        assert len(page["exceptions"]) <= 2 and page["counts"] == EXPECTED
        paged += page["exceptions"]
        if page["next"] is None:
            break
        query = f"?limit=2&before={page['next']}"
    assert paged == listed
    malformed_parameters_are_400_and_the_role_is_ops(system, ops)


def malformed_parameters_are_400_and_the_role_is_ops(system: System, ops: str) -> None:
    """A 400 with its code for each malformed parameter (on the same gateway: a gateway
    of its own would cost seconds)."""
    for query, code in (("?since=yesterday", "bad_since"),
                        ("?since=2026-02-30T00:00:00Z", "bad_since"),
                        ("?since=2026-01-01T10:00:00", "bad_since"),
                        ("?reason=Bad-Signature", "bad_reason"), ("?reason=", "bad_reason"),
                        ("?reason=" + "a" * 65, "bad_reason"),
                        ("?before=17", "bad_before"), ("?before=1:q:x", "bad_before"),
                        ("?limit=0", "bad_limit"), ("?limit=1001", "bad_limit"),
                        ("?limit=ten", "bad_limit")):
        status, body = system.http.get(f"/api/v1/exceptions{query}", token=ops)
        assert status == 400 and body["error"]["code"] == code, (query, body)
        assert body["error"]["message"], body
    assert system.http.get("/api/v1/exceptions")[0] == 401
    assert system.http.get("/api/v1/exceptions", token=system.token("finance"))[0] == 403
    assert system.http.get("/api/v1/exceptions?limit=1000",
                           token=system.token("admin"))[0] == 200
    status, body = system.http.get("/api/v1/exceptions?before=1764313202123:t:A:1",
                                   token=ops)
    assert status == 200 and body["exceptions"] == [], body
