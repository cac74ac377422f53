"""Occupancy from taps, from outside (contract section 8): the real Transjakarta feed
imported into a running gateway, buses driven over MQTT along their routes, riders'
cards issued and their taps signed and published as validators publish them. The
estimate rises with boardings and falls with tap-outs on a route priced by distance
(and there, for riders not tapped out, a little as the bus drives on: some never tap
out), falls as the bus drives on elsewhere and when a rider's card boards another bus,
and is shown in `/api/v1/vehicles`, `/api/v1/vehicles/{id}` and the VehiclePositions
feed (JSON and protobuf); `transit vehicles capacity` changes its percentage."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2

from testbed.broker import Broker
from testbed.gateway import transit
from tests.conftest import System
from tests.integration.commands import failed, ok
from tests.integration.tracking.test_positions import bus, now_ms, sent, wait_until
from tests.support.clients import make_tap
from tests.support.commands import transit_here
from tests.support.realtime_feeds import fresh_positions, fresh_positions_json
from tests.support.tj_gateway import imported_schedule, publish, tj_gateway
from tracking.schedule import Pattern, Schedule

DISTANCE_ROUTE = "1"  # priced by distance in the policy below: its riders tap out
FLAT_ROUTE = "2"
POLICY = f"""
currency = "IDR"
timezone = "Asia/Jakarta"
categories = ["regular"]
[[fares]]
routes = ["{DISTANCE_ROUTE}"]
amount = {{ regular = 3500 }}
max = {{ regular = 10000 }}
distance = {{ base_km = 10, step_km = 5, step = 1000 }}
[[fares]]
routes = ["*"]
amount = {{ regular = 3500 }}
"""
_SEQ = itertools.count(1)


@pytest.fixture(scope="module")
def tj(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A gateway on the Transjakarta network, one route priced by distance (SQLite: the
    taps and the network read the same on either database, and it imports faster)."""
    folder = tmp_path_factory.mktemp("occupancy")
    fares = folder / "fares.toml"
    fares.write_text(POLICY)
    with tj_gateway(broker, folder, TRANSIT_FARES=str(fares),
                    TRANSIT_TAP_MAX_AGE_DAYS="7") as system:
        yield system


@pytest.fixture(scope="module")
def schedule(tj: System) -> Schedule:
    return imported_schedule(tj)


def long_pattern(schedule: Schedule, route_id: str) -> tuple[Pattern, str]:
    """The route's longest pattern and a trip of it the feed knows."""
    pattern = max(schedule.patterns_of(route_id), key=lambda p: p.length_m)
    return pattern, schedule.trips_of(pattern.pattern_id)[0].feed_trip_id


def drive(tj: System, vehicle: str, pattern: Pattern, trip_id: str, at_m: float,
          ts: int) -> tuple[int, int]:
    """The bus a few positions along its pattern up to `at_m`; returns where it is."""
    items = []
    for i, back in enumerate((200.0, 100.0, 0.0)):
        lat_e6, lon_e6 = pattern.shape.point_at(at_m - back)
        items.append(sent(tj, vehicle, lat_e6 / 1e6, lon_e6 / 1e6, ts - (2 - i) * 5_000,
                          route=pattern.route_id, trip_id=trip_id))
    publish(tj, items)
    return pattern.shape.point_at(at_m)


def tap(tj: System, vehicle: str, route_id: str, where: tuple[int, int], cards: list[str],
        ts: int, kind: str = "entry") -> None:
    """Each card's tap on the vehicle's validator at `where`."""
    device, secret = bus(tj, vehicle)
    publish(tj, [(tj.tap_topic(device), make_tap(
        secret, device, next(_SEQ), card, ts=ts + i, route_id=route_id,
        vehicle_id=vehicle, kind=kind, lat_e6=where[0], lon_e6=where[1]).encode())
        for i, card in enumerate(cards)])


def listed(tj: System, token: str, vehicle: str) -> dict[str, Any] | None:
    status, body = tj.http.get("/api/v1/vehicles", token=token)
    assert status == 200, body
    return next((v for v in body["vehicles"] if v["vehicle_id"] == vehicle), None)


def shows(tj: System, token: str, vehicle: str, percentage: int, status: str) -> None:
    """Wait until the vehicle's list entry shows this occupancy; then its detail, the
    JSON feed and the protobuf feed show it too."""
    def probe() -> Any:
        v = listed(tj, token, vehicle)
        return v if v and v["occupancy_percentage"] == percentage else None

    try:
        v = wait_until(f"{vehicle} at {percentage} %", probe, timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {listed(tj, token, vehicle)}") from None
    assert v["occupancy_status"] == status, v
    code, detail = tj.http.get(f"/api/v1/vehicles/{vehicle}", token=token)
    assert code == 200 and (detail["occupancy_status"], detail["occupancy_percentage"]) == (
        status, percentage), detail
    body = fresh_positions_json(tj.http)
    entity = next(e for e in body["entity"] if e["id"] == vehicle)
    assert entity["vehicle"]["occupancyStatus"] == status, entity
    assert entity["vehicle"].get("occupancyPercentage", 0) == percentage, entity
    feed = fresh_positions(tj.http)
    vp = next(e.vehicle for e in feed.entity if e.id == vehicle)
    assert gtfs_realtime_pb2.VehiclePosition.OccupancyStatus.Name(
        vp.occupancy_status) == status
    assert vp.occupancy_percentage == percentage


def on_pattern(tj: System, token: str, vehicle: str, pattern: Pattern) -> None:
    """Wait until trip assignment has the vehicle on `pattern`."""
    seen: list[Any] = []

    def probe() -> bool:
        seen[:] = [listed(tj, token, vehicle)]
        return bool(seen[0]) and seen[0]["pattern_id"] == pattern.pattern_id

    try:
        wait_until("the bus on its pattern", probe, timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {seen}") from None


def percentage(tj: System, token: str, vehicle: str) -> int:
    v = listed(tj, token, vehicle)
    assert v is not None
    return int(v["occupancy_percentage"])


def test_boardings_raise_it_tap_outs_lower_it_and_the_capacity_scales_it(
        tj: System, schedule: Schedule) -> None:
    ops = tj.token("ops")
    pattern, trip_id = long_pattern(schedule, DISTANCE_ROUTE)
    vehicle = "TJ-OCC-D"
    cards = [f"0400D{i:09d}" for i in range(3)]
    for card in cards:
        tj.issue(card, 50_000)
    ok(transit_here("vehicles", "capacity", vehicle, "10", env=tj.env, check=False))
    # Seven minutes ago (still on the feed, which shows ten), so that the bus can be
    # 5 km on now: the gateway takes nothing dated ahead of its clock.
    ts = now_ms() - 420_000
    at = drive(tj, vehicle, pattern, trip_id, 0.2 * pattern.length_m, ts)
    on_pattern(tj, ops, vehicle, pattern)
    shows(tj, ops, vehicle, 0, "EMPTY")

    tap(tj, vehicle, DISTANCE_ROUTE, at, cards, ts + 1_000)
    shows(tj, ops, vehicle, 30, "FEW_SEATS_AVAILABLE")  # 3 of 10

    # 5 km on, one rider taps out. The others, who have not, are each still aboard
    # with the odds of a ride that long (the default curve: e^-1.25) against those of
    # having left without tapping out (a tenth of riders, the share before the route's
    # taps are learned): 0.29 / (0.29 + 0.1 x 0.71) = 0.80, so 1.6 of 10.
    later = now_ms() - 1_000
    at = drive(tj, vehicle, pattern, trip_id, 0.2 * pattern.length_m + 5000, later)
    tap(tj, vehicle, DISTANCE_ROUTE, at, cards[:1], later + 1_000, kind="exit")
    shows(tj, ops, vehicle, 16, "MANY_SEATS_AVAILABLE")

    got = ok(transit_here("vehicles", "capacity", vehicle, "20", env=tj.env, check=False))
    assert got.stdout.strip() == f"vehicle {vehicle} carries 20 riders"
    shows(tj, ops, vehicle, 8, "MANY_SEATS_AVAILABLE")  # 1.6 of 20
    got = ok(transit_here("vehicles", "capacity", vehicle, env=tj.env, check=False))
    assert got.stdout.strip() == f"vehicle {vehicle} carries 20 riders"


def test_the_capacity_command_refuses_bad_input_in_one_line_and_is_audited(
        tj: System) -> None:
    # As a user runs it, for what they see; the rest in this process.
    for args, words in ((["TJ-X", "0"], ["riders", "1<=x<=500"]),
                        (["bad id", "5"], ["vehicle id"])):
        result = transit("vehicles", "capacity", *args, env=tj.env, check=False)
        assert result.returncode == 2, result
        failed(result, *words)
    for args in (["TJ-X", "501"], ["TJ-X", "many"]):
        result = transit_here("vehicles", "capacity", *args, env=tj.env, check=False)
        assert result.returncode == 2, result
        failed(result, "riders")
    got = ok(transit_here("vehicles", "capacity", "TJ-UNSET", env=tj.env, check=False))
    assert got.stdout.strip() == "vehicle TJ-UNSET carries 80 (not set: the default) riders"
    for riders in ("55", "55", "60"):  # the same again changes nothing: not recorded
        ok(transit_here("vehicles", "capacity", "TJ-AUDIT", riders, env=tj.env,
                        check=False))
    status, body = tj.http.get("/api/v1/audit?limit=1000", token=tj.token("admin"))
    assert status == 200, body
    changes = [r["detail"] for r in body["records"]
               if r["action"] == "vehicle.capacity_set" and r["subject"] == "TJ-AUDIT"]
    assert changes == [{"from": None, "to": 55}, {"from": 55, "to": 60}], changes


def test_riders_leave_as_the_bus_drives_on_and_when_their_card_boards_another_bus(
        tj: System, schedule: Schedule) -> None:
    ops = tj.token("ops")
    pattern, trip_id = long_pattern(schedule, FLAT_ROUTE)
    first, other = "TJ-OCC-F", "TJ-OCC-G"
    cards = [f"0400F{i:09d}" for i in range(2)]
    for card in cards:
        tj.issue(card, 50_000)
    ok(transit_here("vehicles", "capacity", first, "10", env=tj.env, check=False))
    start_m = 0.1 * pattern.length_m
    ts = now_ms() - 300_000
    at = drive(tj, first, pattern, trip_id, start_m, ts)
    on_pattern(tj, ops, first, pattern)
    tap(tj, first, FLAT_ROUTE, at, cards, ts + 1_000)
    shows(tj, ops, first, 20, "FEW_SEATS_AVAILABLE")

    # 4 km on (the mean ride of the curve without history), nobody has tapped out: the
    # riders are each still aboard with the probability of a ride that long.
    later = now_ms() - 10_000
    drive(tj, first, pattern, trip_id, start_m + 4000, later)
    wait_until("the estimate lowered by the ride lengths",
               lambda: 0 < percentage(tj, ops, first) < 20, timeout=30)
    driven = percentage(tj, ops, first)

    # One of them boards another bus near the stop 4 km on: they left there.
    stop = min(pattern.stops, key=lambda s: abs(s.dist_m - (start_m + 4000)))
    where = (stop.lat_e6, stop.lon_e6)
    bus(tj, other)
    other_pattern, other_trip = long_pattern(schedule, FLAT_ROUTE)
    drive(tj, other, other_pattern, other_trip, stop.dist_m, later + 5_000)
    tap(tj, other, FLAT_ROUTE, where, cards[1:], later + 6_000)
    wait_until("the rider gone from the first bus",
               lambda: percentage(tj, ops, first) < driven, timeout=30)
    wait_until("the rider on the other bus", lambda: percentage(tj, ops, other) == 1,
               timeout=30)  # 1 of 80
