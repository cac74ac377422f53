"""Service alerts from outside (contract section 8), on a running gateway (PostgreSQL,
Redis, Mosquitto) with a small network imported: an alert made through the API is in
`/gtfs-rt/alerts` (parsed back with gtfs-realtime-bindings) and leaves it once ended,
every change is in the audit trail, bad input is refused with its code, a reference
makes one alert, and a rider sees the alerts of the routes their card rode."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.clients import make_tap
from tests.support.commands import transit_here
from tests.support.feeds import SMALL, write_feed
from tests.support.riders import call, issue, link, rider, rider_system
from transit.wire import Receipt

HOUR = 3_600_000
CARD = "04C1C2C3C4C5C6"
DETOUR = {"header": {"en": "Detour at Waru", "id": "Pengalihan di Waru"},
          "description": {"id": "Bus lewat Jl. Raya Waru.", "en": "Buses run by Jl. Raya Waru."},
          "cause": "CONSTRUCTION", "effect": "DETOUR", "route_ids": ["R1"],
          "stop_ids": ["Terminal Purabaya"]}


@pytest.fixture(scope="module")
def sby(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("alerts")
    url = create_pg_database()
    try:
        with rider_system(url, broker, folder, TRANSIT_AUTH_FAILURES="100000/60") as system:
            transit_here("gtfs", "import", str(write_feed(folder / "feed.zip", SMALL)),
                         env=system.env)
            yield system
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def ops(sby: System) -> str:
    return sby.token("ops")


def now_ms() -> int:
    return int(time.time() * 1000)


def get(system: System, path: str, token: str | None = None,
        language: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(system.gateway.base_url + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if language:
        req.add_header("Accept-Language", language)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def feed(system: System) -> rt.FeedMessage:
    status, headers, body = get(system, "/gtfs-rt/alerts")
    assert status == 200 and headers["Content-Type"] == "application/x-protobuf", body[:200]
    return rt.FeedMessage.FromString(body)


def made(system: System, token: str, body: dict[str, Any]) -> dict[str, Any]:
    status, alert = call(system, "POST", "/api/v1/alerts", body, token)
    assert status == 201, alert
    return dict(alert)


def code_of(answer: tuple[int, Any]) -> tuple[int, str]:
    status, body = answer
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return status, body["error"]["code"]


def test_an_alert_made_is_in_the_feed_until_it_is_ended_and_every_step_is_audited(
        sby: System, ops: str) -> None:
    alert = made(sby, ops, {**DETOUR, "end": now_ms() + HOUR})
    assert alert["state"] == "active" and len(alert["alert_id"]) == 32, alert
    assert list(alert["header"]) == ["id", "en"]  # Indonesian first
    assert alert["route_ids"] == ["R1"] and alert["network_wide"] is False

    (entity,) = [e for e in feed(sby).entity if e.id == alert["alert_id"]]
    a = entity.alert
    assert [(s.route_id, s.stop_id) for s in a.informed_entity] == [
        ("R1", ""), ("", "Terminal Purabaya")]
    assert (a.cause, a.effect) == (rt.Alert.CONSTRUCTION, rt.Alert.DETOUR)
    assert [(t.language, t.text) for t in a.header_text.translation] == [
        ("id", "Pengalihan di Waru"), ("en", "Detour at Waru")]
    assert [t.language for t in a.description_text.translation] == ["id", "en"]
    (period,) = a.active_period
    assert period.start <= time.time() < period.end
    status, _h, doc = get(sby, "/gtfs-rt/alerts?format=json")
    assert status == 200
    assert alert["alert_id"] in {e["id"] for e in json.loads(doc)["entity"]}

    status, listed = call(sby, "GET", "/api/v1/alerts", token=ops)
    assert status == 200 and alert["alert_id"] in [x["alert_id"] for x in listed["alerts"]]

    path = f"/api/v1/alerts/{alert['alert_id']}"
    status, ended = call(sby, "DELETE", path, token=ops)
    assert status == 200 and ended["state"] == "ended" and ended["ended_at"], ended
    assert alert["alert_id"] not in {e.id for e in feed(sby).entity}
    status, again = call(sby, "DELETE", path, token=ops)
    assert status == 200 and again == ended  # ending it again changes nothing
    status, listed = call(sby, "GET", "/api/v1/alerts", token=ops)
    assert alert["alert_id"] not in [x["alert_id"] for x in listed["alerts"]]
    status, everything = call(sby, "GET", "/api/v1/alerts?all=1", token=ops)
    assert status == 200
    assert {x["alert_id"]: x["state"] for x in everything["alerts"]}[alert["alert_id"]] == \
        "ended"

    status, trail = call(sby, "GET", "/api/v1/audit?scope=all", token=sby.token("admin"))
    assert status == 200 and trail["chain"]["verified"], trail["chain"]
    steps = [(r["action"], r["actor"]["role"]) for r in trail["records"]
             if r["subject"] == alert["alert_id"]]
    assert steps == [("alert.created", "ops"), ("alert.ended", "ops")], steps


def test_bad_requests_are_refused_with_their_codes(sby: System, ops: str) -> None:
    cases: list[tuple[Any, tuple[int, str]]] = [
        ({**DETOUR, "route_ids": ["R1", "R7"]}, (422, "unknown_routes")),
        ({**DETOUR, "stop_ids": ["Nowhere"]}, (422, "unknown_stops")),
        ({**DETOUR, "cause": "EARTHQUAKE"}, (422, "bad_cause")),
        ({**DETOUR, "header": {"en": "only English"}}, (422, "bad_header")),
        ({**DETOUR, "start": now_ms() + 2 * HOUR, "end": now_ms() + HOUR}, (422, "bad_period")),
        ({**DETOUR, "start": now_ms() - 2 * HOUR, "end": now_ms() - HOUR}, (422, "end_passed")),
        ({**DETOUR, "start": "tomorrow"}, (422, "bad_start")),
        ({**DETOUR, "routes": ["R1"]}, (422, "unknown_field")),
        (["not", "an", "object"], (400, "malformed_json")),
    ]
    for body, expected in cases:
        assert code_of(call(sby, "POST", "/api/v1/alerts", body, ops)) == expected, body
    status, body = call(sby, "POST", "/api/v1/alerts", {**DETOUR, "route_ids": ["R7", "R9"]},
                        ops)
    assert "R7, R9" in body["error"]["message"], body
    raw = b'{"header": "a", "header": "b", "description": "c"}'
    assert code_of(sby.http.request("POST", "/api/v1/alerts", raw=raw, token=ops)) == (
        400, "duplicate_key")
    assert code_of(call(sby, "DELETE", "/api/v1/alerts/" + "0" * 32, token=ops))[0] == 404
    assert code_of(call(sby, "DELETE", "/api/v1/alerts/nonsense", token=ops))[0] == 404
    assert code_of(call(sby, "GET", "/api/v1/alerts?all=maybe", token=ops)) == (400, "bad_all")
    assert code_of(call(sby, "GET", "/gtfs-rt/alerts?format=xml"))[0] == 400
    # who may: ops (and admin); finance and riders may not; the feed is public
    assert code_of(call(sby, "POST", "/api/v1/alerts", DETOUR))[0] == 401
    assert code_of(call(sby, "POST", "/api/v1/alerts", DETOUR, sby.token("finance")))[0] == 403
    _email, rider_token = rider(sby)
    assert code_of(call(sby, "GET", "/api/v1/alerts", token=rider_token))[0] == 403
    status, listed = call(sby, "GET", "/api/v1/alerts?all=1", token=ops)
    assert all(a["route_ids"] != ["R1", "R7"] for a in listed["alerts"])  # nothing made


def test_a_reference_makes_one_alert_and_another_alert_under_it_is_a_conflict(
        sby: System, ops: str) -> None:
    body = {**DETOUR, "reference": f"waru-{now_ms()}", "end": now_ms() + HOUR}
    first = made(sby, ops, body)
    status, again = call(sby, "POST", "/api/v1/alerts", body, ops)
    assert status == 200 and again["alert_id"] == first["alert_id"], again
    assert code_of(call(sby, "POST", "/api/v1/alerts", {**body, "effect": "NO_SERVICE"},
                        ops)) == (409, "reference_conflict")
    assert [e.id for e in feed(sby).entity].count(first["alert_id"]) == 1
    call(sby, "DELETE", f"/api/v1/alerts/{first['alert_id']}", token=ops)


def tap_on(system: System, route: str, seq: int) -> Receipt:
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic())
        tap = make_tap(system.secret, system.device_id, seq, CARD, ts=now_ms(),
                       route_id=route, lat_e6=-7_350_900, lon_e6=112_724_300)
        peer.publish(system.tap_topic(), tap.encode())
        ((_topic, payload),) = peer.wait_for(lambda m: len(m) >= 1)
        return Receipt.parse(payload)
    finally:
        peer.close()


def test_a_rider_sees_the_alerts_of_the_routes_their_card_rode_in_their_language(
        sby: System, ops: str, tmp_path: Path) -> None:
    admin = sby.token("admin")
    code = issue(sby, admin, CARD, balance=20_000)
    assert tap_on(sby, "R1", 1).status == "charged"
    _email, token = rider(sby)
    assert link(sby, token, CARD, code)[0] == 201
    now = now_ms()
    on_r1 = made(sby, ops, {**DETOUR, "stop_ids": [], "end": now + HOUR})
    on_r2 = made(sby, ops, {**DETOUR, "route_ids": ["R2"], "stop_ids": []})
    at_waru = made(sby, ops, {"header": "Halte Waru ditutup", "description": "Pindah ke "
                              "halte sementara.", "effect": "STOP_MOVED",
                              "stop_ids": ["SBY-WARU"]})  # a stop of R1's trip
    everywhere = made(sby, ops, {"header": "Mogok", "description": "Layanan terbatas.",
                                 "cause": "STRIKE", "effect": "REDUCED_SERVICE"})
    upcoming = made(sby, ops, {**DETOUR, "start": now + HOUR, "end": now + 2 * HOUR})
    gone = made(sby, ops, {**DETOUR, "stop_ids": []})
    call(sby, "DELETE", f"/api/v1/alerts/{gone['alert_id']}", token=ops)

    status, headers, body = get(sby, "/api/v1/rider/alerts", token, language="en")
    assert status == 200 and headers["Content-Language"] == "en", body
    seen = json.loads(body)
    assert seen["routes"] == ["R1"]
    by_id = {a["alert_id"]: a for a in seen["alerts"]}
    assert {on_r1["alert_id"], at_waru["alert_id"], everywhere["alert_id"]} <= set(by_id)
    assert not {on_r2["alert_id"], upcoming["alert_id"], gone["alert_id"]} & set(by_id)
    assert (by_id[on_r1["alert_id"]]["language"], by_id[on_r1["alert_id"]]["header"]) == (
        "en", "Detour at Waru")
    # no English text: the Indonesian one, saying so
    assert (by_id[everywhere["alert_id"]]["language"],
            by_id[everywhere["alert_id"]]["header"]) == ("id", "Mogok")
    assert by_id[everywhere["alert_id"]]["network_wide"] is True
    assert by_id[at_waru["alert_id"]]["stops"] == [{"stop_id": "SBY-WARU",
                                                    "name": "Bundaran Waru"}]
    status, headers, body = get(sby, "/api/v1/rider/alerts", token)
    assert headers["Content-Language"] == "id"
    assert {a["header"] for a in json.loads(body)["alerts"]} >= {"Pengalihan di Waru"}
    assert get(sby, "/api/v1/rider/alerts", ops)[0] == 403  # a rider endpoint
    assert get(sby, "/api/v1/rider/alerts")[0] == 401
    for alert in (on_r1, on_r2, at_waru, everywhere, upcoming):
        call(sby, "DELETE", f"/api/v1/alerts/{alert['alert_id']}", token=ops)
