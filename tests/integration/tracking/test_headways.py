"""Headways and bunching from outside (contract section 8): the real Transjakarta feed
imported into a running gateway, buses driven over MQTT onto one route's direction;
`/api/v1/routes/{route_id}/headways` shows them in order with their gaps, two close
together raise `bunching` in `/api/v1/ops/alerts` and spread apart it clears, and the
thresholds an operator sets change the verdict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy.orm import Session

from testbed.broker import Broker
from testbed.environment import REDIS_URL, transjakarta_feed
from tests.conftest import System
from tests.integration.tracking.test_positions import now_ms, sent, vehicles, wait_until
from tests.support.commands import transit_here
from tests.support.riders import call, rider_system
from tracking.schedule import Pattern, Schedule
from tracking.schedule_load import read_schedule


@pytest.fixture(scope="module")
def tj(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A gateway on the Transjakarta network (SQLite: the headways read the same rows on
    either database, and SQLite imports the network in a third of the time)."""
    folder = tmp_path_factory.mktemp("tj")
    with rider_system(f"sqlite:///{folder}/transit.db", broker, folder) as system:
        transit_here("gtfs", "import", str(transjakarta_feed()), env=system.env)
        # A gateway reads its schedule again within seconds of the first import.
        ops = system.token("ops")
        wait_until("the imported schedule", lambda: system.http.get(
            "/api/v1/routes/1/headways", token=ops)[0] == 200, timeout=30)
        yield system
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"transit:{system.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def schedule(tj: System) -> Schedule:
    engine = tj.engine()
    try:
        with Session(engine) as session:
            return read_schedule(session)
    finally:
        engine.dispose()


def one_pattern_direction(schedule: Schedule) -> tuple[Pattern, str]:
    """A pattern of 5 to 8 km alone in its route's direction, and a trip id of it the
    feed knows."""
    for route_id in sorted(schedule.route_patterns):
        for pattern in schedule.patterns_of(route_id):
            same = [p for p in schedule.patterns_of(route_id)
                    if p.direction_id == pattern.direction_id]
            trips = schedule.trips_of(pattern.pattern_id)
            if len(same) == 1 and 5000 < pattern.length_m < 8000 and trips and \
                    pattern.direction_id == 0:
                return pattern, trips[0].feed_trip_id
    raise AssertionError("no route direction with one long pattern")


def place(tj: System, pattern: Pattern, trip_id: str, where: dict[str, float],
          ts: int) -> None:
    """Each vehicle at its fraction of the pattern's length, at `ts`."""
    items = []
    for vehicle, fraction in where.items():
        lat_e6, lon_e6 = pattern.shape.point_at(fraction * pattern.length_m)
        items.append(sent(tj, vehicle, lat_e6 / 1e6, lon_e6 / 1e6, ts,
                          route=pattern.route_id, trip_id=trip_id))
    peer = tj.peer()
    try:
        peer.publish_many(items, qos=1)
    finally:
        peer.close()


def headways(tj: System, token: str, route_id: str) -> dict[str, Any]:
    status, body = tj.http.get(f"/api/v1/routes/{route_id}/headways", token=token)
    assert status == 200, body
    return body


def bunching(tj: System, token: str) -> list[dict[str, Any]]:
    status, body = tj.http.get("/api/v1/ops/alerts", token=token)
    assert status == 200, body
    return [a for a in body["alerts"] if a["kind"] == "bunching"]


def test_buses_close_together_are_bunched_until_spread_and_thresholds_move_the_verdict(
        tj: System, schedule: Schedule) -> None:
    ops, admin = tj.token("ops"), tj.token("admin")
    pattern, trip_id = one_pattern_direction(schedule)
    route = pattern.route_id
    length = pattern.length_m

    # Two buses 200 m apart, and one with a position 3 minutes old. A
    # minute ago: spreading them apart later must not be a jump faster than a bus goes.
    ts = now_ms() - 65_000
    place(tj, pattern, trip_id, {"TJ-OLD": 0.3}, ts - 180_000)
    place(tj, pattern, trip_id, {"TJ-A": 0.40, "TJ-B": 0.40 - 200 / length}, ts)
    wait_until("the buses' positions", lambda: {"TJ-A", "TJ-B", "TJ-OLD"} <= set(
        vehicles(tj, ops)))
    body = headways(tj, ops, route)
    assert body["route_id"] == route
    assert body["thresholds"] == {"route_id": route, "bunched_pct": 50, "gapped_pct": 150,
                                  "from": None}
    by_direction = {d["direction_id"]: d for d in body["directions"]}
    assert set(by_direction) == {p.direction_id for p in schedule.patterns_of(route)}
    north = by_direction[0]
    assert north["reference_pattern_id"] == pattern.pattern_id
    assert [v["vehicle_id"] for v in north["vehicles"]] == ["TJ-A", "TJ-B"]  # not stale
    lead, follower = north["vehicles"]
    assert lead["gap_m"] is None and lead["gap_s"] is None and lead["ahead"] is None
    assert follower["ahead"] == "TJ-A" and abs(follower["gap_m"] - 200) <= 10, follower
    assert follower["bunched"] and not follower["gapped"]
    assert north["headway_source"] == "observed" and north["headway_s"] > 300
    for other, d in by_direction.items():
        if other != 0:
            assert d["vehicles"] == []

    subject = f"{route}/0: TJ-A & TJ-B"
    [alert] = wait_until("the bunching alert", lambda: bunching(tj, ops))
    assert alert["subject"] == subject and alert["data"]["gap_m"] == follower["gap_m"]
    assert "TJ-B" in alert["detail"] and "TJ-B" in alert["detail_id"]
    since = alert["since"]
    place(tj, pattern, trip_id, {"TJ-A": 0.41, "TJ-B": 0.41 - 150 / length}, ts + 5_000)
    wait_until("the buses moved", lambda: headways(tj, ops, route)["directions"][0][
        "vehicles"][0]["ts"] == ts + 5_000)
    [again] = bunching(tj, ops)
    assert again["subject"] == subject and again["since"] == since  # still since then

    # Spread 28 % of the line apart, 56 % of the headway the two share (half the run):
    # neither verdict. Both move on (a bus going back is read as the other direction).
    place(tj, pattern, trip_id, {"TJ-A": 0.70, "TJ-B": 0.42}, now_ms() - 1_000)
    wait_until("the bunching cleared", lambda: bunching(tj, ops) == [])
    spread = headways(tj, ops, route)["directions"][0]["vehicles"][1]
    assert not spread["bunched"] and not spread["gapped"], spread

    # An operator says bunched under 120 %: the same gap is bunched again (a new since).
    status, body = call(tj, "PUT", f"/api/v1/routes/{route}/headways/thresholds",
                        {"bunched_pct": 120, "gapped_pct": 300}, ops)
    assert (status, body) == (200, {"route_id": route, "bunched_pct": 120,
                                    "gapped_pct": 300, "from": route})
    assert headways(tj, ops, route)["directions"][0]["vehicles"][1]["bunched"]
    [strict] = bunching(tj, ops)
    assert strict["subject"] == subject and strict["since"] > since
    # The default row does not move a route with its own; a route's row removed by
    # setting the default cannot happen: the route keeps 120/300.
    status, body = call(tj, "PUT", "/api/v1/routes/*/headways/thresholds",
                        {"bunched_pct": 10, "gapped_pct": 90}, ops)
    assert status == 200 and body["from"] == "*", body
    assert headways(tj, ops, route)["thresholds"]["from"] == route
    other = next(r for r in sorted(schedule.route_patterns) if r != route)
    assert headways(tj, ops, other)["thresholds"] == {
        "route_id": other, "bunched_pct": 10, "gapped_pct": 90, "from": "*"}
    status, body = call(tj, "PUT", f"/api/v1/routes/{route}/headways/thresholds",
                        {"bunched_pct": 50, "gapped_pct": 150}, ops)
    assert status == 200
    wait_until("the bunching cleared again", lambda: bunching(tj, ops) == [])

    status, body = tj.http.get("/api/v1/audit", token=admin)
    assert status == 200, body
    set_ = [r for r in body["records"] if r["action"] == "headway_thresholds.set"]
    assert [r["subject"] for r in set_] == [route, "*", route], set_


def test_refusals(tj: System, schedule: Schedule) -> None:
    ops, finance = tj.token("ops"), tj.token("finance")
    route = sorted(schedule.route_patterns)[0]
    path = f"/api/v1/routes/{route}/headways"
    assert tj.http.get(path)[0] == 401
    assert tj.http.get(path, token=finance)[0] == 403
    status, body = tj.http.get("/api/v1/routes/NO-SUCH-ROUTE/headways", token=ops)
    assert (status, body["error"]["code"]) == (404, "unknown_route"), body
    status, body = tj.http.get("/api/v1/routes/%01bad/headways", token=ops)
    assert (status, body["error"]["code"]) == (400, "bad_route_id"), body
    status, body = tj.http.get(f"/api/v1/routes/{'x' * 101}/headways", token=ops)
    assert (status, body["error"]["code"]) == (400, "bad_route_id"), body

    put = f"{path}/thresholds"
    assert call(tj, "PUT", put, {"bunched_pct": 40, "gapped_pct": 160}, None)[0] == 401
    assert call(tj, "PUT", put, {"bunched_pct": 40, "gapped_pct": 160}, finance)[0] == 403
    for bad in ({"bunched_pct": 60, "gapped_pct": 60}, {"bunched_pct": 0, "gapped_pct": 9},
                {"bunched_pct": 50, "gapped_pct": 1001}, {"bunched_pct": 50.5,
                                                          "gapped_pct": 150},
                {"bunched_pct": True, "gapped_pct": 150}, {"gapped_pct": 150},
                {"bunched_pct": "50", "gapped_pct": 150}):
        status, body = call(tj, "PUT", put, bad, ops)
        assert (status, body["error"]["code"]) == (400, "bad_thresholds"), (bad, body)
    status, body = call(tj, "PUT", put, {"bunched_pct": 40, "gapped_pct": 160, "x": 1}, ops)
    assert (status, body["error"]["code"]) == (400, "unknown_field"), body
    status, body = call(tj, "PUT", put, [40, 160], ops)
    assert status == 400, body
    status, body = call(tj, "PUT", "/api/v1/routes/NO-SUCH-ROUTE/headways/thresholds",
                        {"bunched_pct": 40, "gapped_pct": 160}, ops)
    assert (status, body["error"]["code"]) == (404, "unknown_route"), body
