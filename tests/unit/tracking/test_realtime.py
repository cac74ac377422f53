"""The GTFS-Realtime VehiclePositions feed built from the live vehicle records."""

from __future__ import annotations

from google.transit import gtfs_realtime_pb2

from tracking.realtime import vehicle_feed
from tracking.store import VehicleRecord

NOW = 1_764_313_202_123


def record(vehicle_id: str, age_ms: int = 5_000, *, trip_id: str | None = "T1",
           speed_cms: int | None = 1250, bearing_deg: int | None = 90,
           next_stop_id: str | None = "S7") -> VehicleRecord:
    return VehicleRecord(vehicle_id=vehicle_id, device_id=f"{vehicle_id}-A", route_id="R1",
                         trip_id=trip_id, ts=NOW - age_ms, lat_e6=-7_257_500,
                         lon_e6=112_752_100, speed_cms=speed_cms, bearing_deg=bearing_deg,
                         next_stop_id=next_stop_id,
                         next_stop_name="Tunjungan" if next_stop_id else None)


def test_an_empty_fleet_gives_a_full_dataset_header_and_no_entity() -> None:
    feed = vehicle_feed([], now_ms=NOW)
    assert feed.header.gtfs_realtime_version == "2.0"
    assert feed.header.incrementality == gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    assert feed.header.timestamp == NOW // 1000
    assert len(feed.entity) == 0


def test_each_vehicle_is_one_entity_with_its_position_trip_and_motion() -> None:
    feed = vehicle_feed([record("SBY-0042")], now_ms=NOW)
    (entity,) = feed.entity
    assert entity.id == "SBY-0042"
    vp = entity.vehicle
    assert (vp.vehicle.id, vp.vehicle.label) == ("SBY-0042", "SBY-0042")
    assert (vp.trip.route_id, vp.trip.trip_id) == ("R1", "T1")
    assert abs(vp.position.latitude - -7.2575) < 1e-5
    assert abs(vp.position.longitude - 112.7521) < 1e-5
    assert vp.position.bearing == 90.0
    assert vp.position.speed == 12.5  # metres a second, from 1250 cm/s
    assert vp.timestamp == (NOW - 5_000) // 1000
    assert vp.stop_id == "S7"
    assert vp.current_status == gtfs_realtime_pb2.VehiclePosition.IN_TRANSIT_TO


def test_what_a_vehicle_did_not_report_is_left_out() -> None:
    feed = vehicle_feed([record("SBY-0001", trip_id=None, speed_cms=None, bearing_deg=None,
                                next_stop_id=None)], now_ms=NOW)
    vp = feed.entity[0].vehicle
    assert not vp.trip.HasField("trip_id")
    assert not vp.position.HasField("bearing")
    assert not vp.position.HasField("speed")
    assert not vp.HasField("stop_id")
    assert not vp.HasField("current_status")


def test_vehicles_not_heard_from_recently_or_from_the_future_are_left_out() -> None:
    records = [record("OLD", age_ms=600_001), record("EDGE", age_ms=600_000),
               record("AHEAD", age_ms=-1), record("NOW", age_ms=0)]
    feed = vehicle_feed(records, now_ms=NOW)
    assert [e.id for e in feed.entity] == ["EDGE", "NOW"]
    assert [e.id for e in vehicle_feed(records, now_ms=NOW, max_age_s=60).entity] == ["NOW"]


def test_entities_are_in_vehicle_order_and_never_newer_than_the_header() -> None:
    records = [record("SBY-0300", 1_000), record("SBY-0100", 20_000), record("SBY-0200", 0)]
    feed = vehicle_feed(records, now_ms=NOW)
    assert [e.id for e in feed.entity] == ["SBY-0100", "SBY-0200", "SBY-0300"]
    assert all(e.vehicle.timestamp <= feed.header.timestamp for e in feed.entity)


def test_the_feed_survives_its_wire_form() -> None:
    feed = vehicle_feed([record("SBY-0042"), record("SBY-0043", bearing_deg=359)], now_ms=NOW)
    again = gtfs_realtime_pb2.FeedMessage.FromString(feed.SerializeToString())
    assert again == feed
    assert again.entity[1].vehicle.position.bearing == 359.0
