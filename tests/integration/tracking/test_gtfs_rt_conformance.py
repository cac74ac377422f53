"""The GTFS-Realtime feeds pass the MobilityData validator's rules against the imported
static feed (contract section 8), from outside: the real Transjakarta feed imported into
a running gateway (SQLite, Redis, Mosquitto), buses driven along its real shapes over
MQTT, alerts made through the API, then the three feeds fetched as protobuf and checked by
tests/support/gtfs_rt_rules.py: no error, and no warning but those a bus without a trip
must give."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from testbed.broker import Broker
from testbed.environment import transjakarta_feed
from tests.conftest import System
from tests.integration.tracking.test_positions import along, now_ms, sent, vehicles, wait_until
from tests.support.gtfs_rt_rules import Line, StaticFeed, check, errors, static_feed
from tests.support.riders import call
from tests.support.tj_gateway import publish, tj_gateway

STEP_M, STEP_MS = 100.0, 10_000  # 10 m/s, a bus on the busway
POINTS = 12
ROUTE_ONLY = {"W006", "W009"}  # a trip descriptor with a route and no trip


@pytest.fixture(scope="module")
def tj(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A gateway on the Transjakarta network, for this module's tests. On SQLite: the
    feeds read the same rows on either database, and SQLite migrates and imports the
    network in a third of PostgreSQL's time (the alerts' own tests run on PostgreSQL)."""
    with tj_gateway(broker, tmp_path_factory.mktemp("tj")) as system:
        yield system


@pytest.fixture(scope="module")
def static() -> StaticFeed:
    return static_feed(transjakarta_feed())


def feed(system: System, path: str) -> rt.FeedMessage:
    status, body = system.http.get(path)
    assert status == 200 and isinstance(body, bytes), (status, body)
    return rt.FeedMessage.FromString(body)


def trips_with_shapes(static: StaticFeed, n: int) -> list[tuple[str, str, Line]]:
    """(trip_id, route_id, its line) of `n` trips of different routes with a long
    shape, trip ids that several routes share among them (the n-th trip of an id runs
    the n-th line of its shape, as the feed lays them out)."""
    out: list[tuple[str, str, Line]] = []
    for trip_id, trips in sorted(static.trips.items()):
        for nth, trip in enumerate(trips):
            lines = static.shapes.get(trip.shape_id or "", ())
            line = lines[min(nth, len(lines) - 1)] if lines else []
            if len(line) > 50 and trip.route_id not in {r for _t, r, _l in out}:
                out.append((trip_id, trip.route_id, line))
        if len(out) >= n:
            break
    return out[:n]


def drive(system: System, vehicle: str, shape: list[tuple[float, float]], end_ms: int,
          **extra: Any) -> list[tuple[str, bytes]]:
    """A bus's positions along the first kilometre of a shape, the last at `end_ms`."""
    path = along(shape, STEP_M)[:POINTS]
    t0 = end_ms - (len(path) - 1) * STEP_MS
    return [sent(system, vehicle, lat, lon, t0 + i * STEP_MS, **extra)
            for i, (lat, lon) in enumerate(path)]


def findings_text(found: list[Any]) -> str:
    return "\n".join(map(str, found))


def test_vehicle_positions_along_real_shapes_pass_the_validator_rules(
        tj: System, static: StaticFeed) -> None:
    ops = tj.token("ops")
    trips = trips_with_shapes(static, 6)
    assert len(trips) == 6, [t[:2] for t in trips]
    assert any(len(static.trips[t]) > 1 for t, _r, _l in trips)  # an id two routes share
    end = now_ms() - 2_000
    items = []
    for n, (trip_id, route_id, line) in enumerate(trips):
        items += drive(tj, f"TJ-C{n}", line, end, route=route_id, trip_id=trip_id)
    # A bus that says only its route; one whose validator names a route and a trip the
    # network does not have (a misconfigured device); one whose clock runs 20 s ahead.
    first_trip, first_route, first_shape = trips[0]
    items += drive(tj, "TJ-ROUTE", first_shape, end, route=first_route)
    items += drive(tj, "TJ-ODD", first_shape, end, route="9Z", trip_id="no-such-trip")
    items += drive(tj, "TJ-AHEAD", first_shape, now_ms() + 20_000, route=first_route,
                   trip_id=first_trip)
    publish(tj, items)
    wanted = {f"TJ-C{n}" for n in range(len(trips))} | {"TJ-ROUTE", "TJ-ODD", "TJ-AHEAD"}
    wait_until("every bus's last position", lambda: wanted <= set(vehicles(tj, ops)))

    first = feed(tj, "/gtfs-rt/vehicle-positions")
    second = feed(tj, "/gtfs-rt/vehicle-positions")
    now_s = time.time()
    assert {e.id for e in first.entity} == wanted
    by_id = {e.id: e.vehicle for e in second.entity}
    assert {e.id: e.vehicle.trip.trip_id for e in second.entity if e.id.startswith("TJ-C")
            } == {f"TJ-C{n}": t for n, (t, _r, _l) in enumerate(trips)}
    assert not by_id["TJ-ODD"].HasField("trip")  # nothing the network lacks
    assert by_id["TJ-AHEAD"].timestamp <= second.header.timestamp
    for message, previous in ((first, None), (second, first)):
        found = check(message, static, now_s, previous=previous)
        assert errors(found) == [], findings_text(errors(found))
        warned = {(f.code, f.where.split(" ")[1].strip("'")) for f in found}
        assert {code for code, _bus in warned} <= ROUTE_ONLY, findings_text(found)
        assert {bus for _code, bus in warned} <= {"TJ-ROUTE"}, findings_text(found)


def test_alerts_made_through_the_api_pass_the_validator_rules(
        tj: System, static: StaticFeed) -> None:
    ops = tj.token("ops")
    route, stop = "1", "Blok M"
    assert route in static.route_ids and stop in static.stops
    now = now_ms()
    bodies = [
        {"header": {"id": "Pengalihan di Blok M", "en": "Detour at Blok M"},
         "description": {"id": "Bus lewat Jl. Sisingamangaraja.",
                         "en": "Buses run by Jl. Sisingamangaraja."},
         "cause": "CONSTRUCTION", "effect": "DETOUR", "route_ids": [route],
         "stop_ids": [stop], "end": now + 3_600_000},
        {"header": "Mogok pengemudi", "description": "Layanan terbatas di seluruh jaringan.",
         "cause": "STRIKE", "effect": "REDUCED_SERVICE",
         "start": "2025-01-01T05:00:00+07:00"},
        {"header": "Halte ditutup", "description": "Naik dari halte sebelah.",
         "effect": "STOP_MOVED", "stop_ids": [stop], "start": now - 60_000,
         "end": now + 600_000},
        {"header": "Besok: jalan ditutup", "description": "Car free day.",
         "route_ids": [route], "start": now + 86_400_000, "end": now + 90_000_000},
    ]
    made = []
    for body in bodies:
        status, alert = call(tj, "POST", "/api/v1/alerts", body, ops)
        assert status == 201, alert
        made.append(alert)
    alerts = feed(tj, "/gtfs-rt/alerts")
    active = [a["alert_id"] for a in made if a["state"] == "active"]
    assert [e.id for e in alerts.entity] == sorted(
        active, key=lambda i: next(a["start"] for a in made if a["alert_id"] == i))
    assert len(active) == 3  # tomorrow's is not in the feed yet
    found = check(alerts, static, time.time())
    assert found == [], findings_text(found)
    # The network-wide alert informs the agencies of agency.txt (the feed's routes name
    # some agencies it does not list: those are left out).
    everywhere = next(e.alert for e in alerts.entity if e.id == made[1]["alert_id"])
    assert {s.agency_id for s in everywhere.informed_entity} == set(static.agency_ids)

    # With the detour on route 1 in the Alerts feed, the vehicles' feed still passes
    # when read beside it.
    vehicles_feed = feed(tj, "/gtfs-rt/vehicle-positions")
    assert errors(check(vehicles_feed, static, time.time(), detours=[alerts])) == []


def test_trip_updates_of_buses_on_real_trips_pass_the_validator_rules(
        tj: System, static: StaticFeed) -> None:
    ops = tj.token("ops")
    trips = trips_with_shapes(static, 4)
    end = now_ms() - 2_000
    items = []
    for n, (trip_id, route_id, line) in enumerate(trips):
        items += drive(tj, f"TJ-U{n}", line, end, route=route_id, trip_id=trip_id)
    publish(tj, items)
    wanted = {f"TJ-U{n}" for n in range(len(trips))}
    wait_until("every bus's last position", lambda: wanted <= set(vehicles(tj, ops)))

    def updated() -> rt.FeedMessage | None:
        message = feed(tj, "/gtfs-rt/trip-updates")
        return message if wanted <= {e.id for e in message.entity} else None

    first = wait_until("a trip update of every bus", updated, timeout=30)
    # Served from the cache of a few seconds, or built again later: never the same
    # header time with other content (E017), never an earlier one (E018).
    second = feed(tj, "/gtfs-rt/trip-updates")
    now_s = time.time()
    # The positions feed is built at most once a second: one built before the last
    # bus's position came lacks it for that second.
    def trips_in_positions() -> dict[str, str] | None:
        got = {e.id: e.vehicle.trip.trip_id
               for e in feed(tj, "/gtfs-rt/vehicle-positions").entity}
        return got if wanted <= set(got) else None

    positions = wait_until("every bus in the positions feed", trips_in_positions)
    for e in first.entity:
        if e.id in wanted:
            assert e.trip_update.stop_time_update, e.id
            # W003: the two feeds agree on which trip the vehicle runs
            assert e.trip_update.trip.trip_id == positions[e.id], e.id
    for message, previous in ((first, None), (second, first)):
        found = check(message, static, now_s, previous=previous)
        assert errors(found) == [], findings_text(errors(found))
        assert found == [], findings_text(found)
