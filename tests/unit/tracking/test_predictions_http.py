"""`GET /gtfs-rt/trip-updates?vehicle_id=V`: one vehicle's entity, cut from the feed the
whole fleet gets, in protobuf and JSON; a bad id is a 400 in the contract's format."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.transit import gtfs_realtime_pb2 as rt

from fare_gateway.http.errors import register_error_handlers
from tests.unit.tracking.test_trip_updates import AT_8, SCHEDULE, SPEED, bus
from tracking.predictions_http import PredictionsDeps, predictions_blueprint
from tracking.store import VehicleRecord

NOW_MS = AT_8 + 5_000


class Fleet:
    """Three buses on trips of the schedule, as the store would give them."""

    def __init__(self) -> None:
        self.asked = 0

    def vehicles(self) -> list[VehicleRecord]:
        self.asked += 1
        return [bus(v, "T1@2", 600, NOW_MS - 2_000) for v in ("B1", "B2", "B.3")]


def passthrough(*_a: Any, **_k: Any) -> Any:
    return lambda view: view


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
def client(fleet: Fleet) -> FlaskClient:
    app = Flask(__name__)
    register_error_handlers(app, 1 << 16)
    app.register_blueprint(predictions_blueprint(PredictionsDeps(
        fleet, lambda: SCHEDULE, lambda: SPEED, passthrough, clock=lambda: NOW_MS / 1000)))
    return app.test_client()


def feed(client: FlaskClient, query: str) -> rt.FeedMessage:
    resp = client.get(f"/gtfs-rt/trip-updates{query}")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/x-protobuf"
    return rt.FeedMessage.FromString(resp.get_data())


def test_one_vehicle_gets_its_own_entity_in_both_formats(client: FlaskClient,
                                                         fleet: Fleet) -> None:
    whole = feed(client, "")
    assert [e.id for e in whole.entity] == ["B.3", "B1", "B2"]
    one = feed(client, "?vehicle_id=B.3")
    assert [e.id for e in one.entity] == ["B.3"]
    assert one.header == whole.header
    assert one.entity[0] == whole.entity[0]
    body = client.get("/gtfs-rt/trip-updates?format=json&vehicle_id=B2").get_json()
    assert [e["id"] for e in body["entity"]] == ["B2"]
    assert body["entity"][0]["tripUpdate"]["vehicle"]["id"] == "B2"
    # one build for all of them (the cache), and none for a bus with no trip update
    assert fleet.asked == 1
    empty = client.get("/gtfs-rt/trip-updates?format=json&vehicle_id=B9").get_json()
    assert "entity" not in empty and empty["header"]["gtfsRealtimeVersion"] == "2.0"
    assert len(feed(client, "?vehicle_id=B9").entity) == 0


@pytest.mark.parametrize("query", ["?vehicle_id=", "?vehicle_id=B%201",
                                   "?vehicle_id=" + "B" * 65, "?format=xml&vehicle_id=B1"])
def test_a_bad_vehicle_id_or_format_is_a_400(client: FlaskClient, query: str) -> None:
    resp = client.get(f"/gtfs-rt/trip-updates{query}")
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] and error["message"]
