"""Headways and bunching from outside (contract section 8): the real Transjakarta feed
imported into a running gateway, buses driven over MQTT onto one route's direction;
`/api/v1/routes/{route_id}/headways` shows them in order with their gaps (a bus at the
terminal listed apart), two close together raise `bunching` in `/api/v1/ops/alerts` and
spread apart it clears, and the thresholds an operator sets change the verdict. Two
first settings of a route's thresholds at once both succeed (PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testbed.broker import Broker
from tests.conftest import System
from tests.integration.tracking.test_positions import now_ms, sent, vehicles, wait_until
from tests.support.riders import call
from tests.support.tj_gateway import imported_schedule, publish, tj_gateway
from tracking.schedule import Pattern, Schedule


@pytest.fixture(scope="module")
def tj(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A gateway on the Transjakarta network."""
    with tj_gateway(broker, tmp_path_factory.mktemp("tj")) as system:
        # A gateway reads its schedule again within seconds of the first import.
        ops = system.token("ops")
        wait_until("the imported schedule", lambda: system.http.get(
            "/api/v1/routes/1/headways", token=ops)[0] == 200, timeout=30)
        yield system


@pytest.fixture(scope="module")
def schedule(tj: System) -> Schedule:
    return imported_schedule(tj)


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
    """Each vehicle at its metres along the pattern, at `ts`."""
    items = []
    for vehicle, dist_m in where.items():
        lat_e6, lon_e6 = pattern.shape.point_at(dist_m)
        items.append(sent(tj, vehicle, lat_e6 / 1e6, lon_e6 / 1e6, ts,
                          route=pattern.route_id, trip_id=trip_id))
    publish(tj, items)


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
    first, run = pattern.stops[0].dist_m, pattern.stops[-1].dist_m - pattern.stops[0].dist_m

    def at(share: float) -> float:
        """Metres along the pattern at `share` of its run from its first stop."""
        return first + share * run

    # Two buses on the road a fifth of the run apart: with the headway the half run the
    # two share, 40 % of it, bunched (under 50 %). One bus at the last stop (laid over:
    # listed apart, not counted), and one with a position 3 minutes old (stale).
    # Dated 35 s ago, so that spreading them apart later is no jump faster than a bus
    # goes (at most 1.1 km on these 5-8 km patterns, in 30 s or more: under 50 m/s),
    # and the moved positions stay live (90 s) for a minute of checks.
    ts = now_ms() - 35_000
    place(tj, pattern, trip_id, {"TJ-OLD": at(0.3)}, ts - 180_000)
    place(tj, pattern, trip_id, {"TJ-A": at(0.45), "TJ-B": at(0.25),
                                 "TJ-END": pattern.stops[-1].dist_m}, ts)
    wait_until("the buses' positions", lambda: {"TJ-A", "TJ-B", "TJ-END", "TJ-OLD"} <= set(
        vehicles(tj, ops)))

    def placed() -> dict[str, Any] | None:
        # Headways share one reading of the vehicles for 2 s (tracking.headways_http):
        # the one made before these positions came may still serve.
        got = headways(tj, ops, route)
        north = [d for d in got["directions"] if d["direction_id"] == 0]
        return got if north and len(north[0]["vehicles"]) == 2 else None

    body = wait_until("the buses on the headways", placed)
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
    assert follower["ahead"] == "TJ-A" and abs(follower["gap_m"] - 0.2 * run) <= 15, \
        follower
    assert follower["bunched"] and not follower["gapped"]
    assert north["headway_source"] == "observed" and north["headway_s"] > 300
    # The bus at the terminal: on whichever direction its position reads as, apart.
    parked = [a for d in body["directions"] for a in d["at_terminal"]]
    assert [a["vehicle_id"] for a in parked] == ["TJ-END"], body
    for other, d in by_direction.items():
        if other != 0:
            assert d["vehicles"] == []

    subject = f"{route}/0: TJ-A & TJ-B"
    [alert] = wait_until("the bunching alert", lambda: bunching(tj, ops))
    assert alert["subject"] == subject and alert["data"]["gap_m"] == follower["gap_m"]
    assert "TJ-B" in alert["detail"] and "TJ-B" in alert["detail_id"]
    since = alert["since"]
    place(tj, pattern, trip_id, {"TJ-A": at(0.46), "TJ-B": at(0.265)}, ts + 5_000)

    def moved() -> bool:
        line = headways(tj, ops, route)["directions"][0]["vehicles"]
        return bool(line) and line[0]["ts"] == ts + 5_000

    wait_until("the buses moved", moved)
    [again] = wait_until("the bunching alert, moved", lambda: bunching(tj, ops))
    assert again["subject"] == subject and again["since"] == since  # still since then

    # Spread 32 % of the run apart, 64 % of the headway the two share: neither verdict.
    # Both move on (a bus going back is read as the other direction).
    place(tj, pattern, trip_id, {"TJ-A": at(0.60), "TJ-B": at(0.28)}, now_ms() - 1_000)
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
    status, body = tj.http.get(f"/api/v1/routes/{'x' * 65}/headways", token=ops)
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


def test_two_first_settings_of_a_route_at_once_both_succeed(pg_url: str) -> None:
    """The second waits for the first's row and then updates it: no key violation (a
    500), and the audit trail says what it replaced."""
    import redis

    from ledger.adapters.db import make_engine, session_factory
    from ledger.audit import Actor, records
    from ledger.fingerprint import Fingerprints
    from testbed.environment import REDIS_URL
    from testbed.gateway import transit
    from tests.integration.commands import clean_env, ok
    from tests.support.row_race import against_a_first_insert
    from tracking.adapters.models import HeadwayThreshold
    from tracking.headways import Thresholds
    from tracking.headways_http import HeadwayOffice
    from tracking.schedule import build_schedule
    from tracking.store import TrackingStore

    ok(transit("db", "upgrade", env=clean_env(TRANSIT_DATABASE_URL=pg_url)))
    engine = make_engine(pg_url)
    client = redis.Redis.from_url(REDIS_URL)
    empty = build_schedule([], {}, {}, {})
    office = HeadwayOffice(session_factory(engine), TrackingStore(client, "race"),
                           lambda: empty, fingerprints=Fingerprints(bytes(range(32))))
    try:
        got = against_a_first_insert(
            pg_url, "INSERT INTO headway_thresholds (route_id, bunched_pct, gapped_pct, "
            "set_ms, set_by) VALUES (%(r)s, 40, 160, 1, 'first')", {"r": "R7"},
            lambda: office.set_thresholds("R7", 30, 300, Actor.command()))
        assert got == Thresholds(30, 300, "R7"), got
        with office.sessions() as session:
            row = session.get(HeadwayThreshold, "R7")
            assert row is not None and (row.bunched_pct, row.gapped_pct) == (30, 300)
            [audited] = [r for r in records(session) if r.action == "headway_thresholds.set"]
            assert '"was":[40,160]' in audited.detail, audited.detail
        # Later settings update the row as before; a route's first, unraced, inserts it.
        assert office.set_thresholds("R7", 20, 200, Actor.command()).bunched_pct == 20
        assert office.set_thresholds("*", 45, 155, Actor.command()).route_id == "*"
        assert office.thresholds() == {"R7": (20, 200), "*": (45, 155)}
    finally:
        client.close()
        engine.dispose()
