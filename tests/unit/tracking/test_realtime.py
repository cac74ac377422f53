"""The GTFS-Realtime feeds: VehiclePositions built from the live vehicle records, and
Alerts from the alerts active now."""

from __future__ import annotations

from dataclasses import replace

from google.transit import gtfs_realtime_pb2

from tracking.realtime import FeedAlert, StaticIds, alert_feed, vehicle_feed
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


def test_vehicles_not_heard_from_recently_or_from_far_ahead_are_left_out() -> None:
    records = [record("OLD", age_ms=600_001), record("EDGE", age_ms=600_000),
               record("FAR", age_ms=-300_001), record("NOW", age_ms=0)]
    feed = vehicle_feed(records, now_ms=NOW)
    assert [e.id for e in feed.entity] == ["EDGE", "NOW"]
    assert [e.id for e in vehicle_feed(records, now_ms=NOW, max_age_s=60).entity] == ["NOW"]


def test_a_vehicle_whose_clock_runs_ahead_stays_on_the_feed_dated_no_later_than_now() -> None:
    feed = vehicle_feed([record("AHEAD", age_ms=-90_000)], now_ms=NOW)
    (entity,) = feed.entity
    assert entity.vehicle.timestamp == feed.header.timestamp == NOW // 1000


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


KNOWN = StaticIds(routes=frozenset({"R1"}),
                  trips={("T1", "R1"): "T1", ("T2", "R2"): "T2", ("T3@2", "R1"): "T3",
                         ("T3", "R1"): "T3"},
                  stops=frozenset({"S7"}))


def test_with_the_static_ids_only_what_the_network_has_is_named() -> None:
    ok = vehicle_feed([record("A")], now_ms=NOW, known=KNOWN).entity[0].vehicle
    assert (ok.trip.route_id, ok.trip.trip_id, ok.stop_id) == ("R1", "T1", "S7")
    assert ok.trip.schedule_relationship == gtfs_realtime_pb2.TripDescriptor.SCHEDULED
    odd = replace(record("B", next_stop_id="S9"), trip_id="T2")  # a trip of another route
    vp = vehicle_feed([odd], now_ms=NOW, known=KNOWN).entity[0].vehicle
    assert vp.trip.route_id == "R1"
    assert not vp.trip.HasField("trip_id") and not vp.HasField("stop_id")
    unknown_route = replace(record("C"), route_id="R9", trip_id="T9")
    vp = vehicle_feed([unknown_route], now_ms=NOW, known=KNOWN).entity[0].vehicle
    assert not vp.trip.HasField("route_id") and not vp.trip.HasField("trip_id")
    assert vp.position.latitude != 0  # the vehicle itself is still shown
    # a trip the network keeps as T3@2 (its id given to several trips) is the feed's T3
    numbered = vehicle_feed([replace(record("D"), trip_id="T3@2")], now_ms=NOW, known=KNOWN)
    assert numbered.entity[0].vehicle.trip.trip_id == "T3"


def feed_alert(alert_id: str = "a1", **changes: object) -> FeedAlert:
    base = FeedAlert(alert_id, header=(("id", "Jalan ditutup"), ("en", "Road closed")),
                     description=(("id", "Lewat Jl. Darmo"),), cause="CONSTRUCTION",
                     effect="DETOUR", start_ms=NOW - 60_000, end_ms=NOW + 3_600_001,
                     informed=(("route_id", "R1"), ("stop_id", "S7")))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_an_alert_feed_carries_period_entities_cause_effect_and_translations() -> None:
    feed = alert_feed([feed_alert()], now_ms=NOW)
    assert feed.header.timestamp == NOW // 1000
    assert feed.header.incrementality == gtfs_realtime_pb2.FeedHeader.FULL_DATASET
    (entity,) = feed.entity
    a = entity.alert
    assert entity.id == "a1"
    (period,) = a.active_period
    assert (period.start, period.end) == ((NOW - 60_000) // 1000, (NOW + 3_600_001) // 1000 + 1)
    assert [(s.route_id, s.stop_id) for s in a.informed_entity] == [("R1", ""), ("", "S7")]
    assert a.cause == gtfs_realtime_pb2.Alert.CONSTRUCTION
    assert a.effect == gtfs_realtime_pb2.Alert.DETOUR
    assert [(t.language, t.text) for t in a.header_text.translation] == [
        ("id", "Jalan ditutup"), ("en", "Road closed")]
    assert [(t.language, t.text) for t in a.description_text.translation] == [
        ("id", "Lewat Jl. Darmo")]
    assert gtfs_realtime_pb2.FeedMessage.FromString(feed.SerializeToString()) == feed


def test_an_alert_without_end_or_informed_entity() -> None:
    feed = alert_feed([feed_alert("open", end_ms=None, informed=(("agency_id", "SBY"),)),
                       feed_alert("nothing", informed=())], now_ms=NOW)
    (entity,) = feed.entity
    assert entity.id == "open"
    assert not entity.alert.active_period[0].HasField("end")
    assert entity.alert.informed_entity[0].agency_id == "SBY"


def test_a_vehicle_on_a_frequency_trip_carries_its_run() -> None:
    from tests.support.gtfs_rt_rules import check
    from tests.unit.tracking.test_trip_updates import FREQUENT, FREQUENT_STATIC, ZERO, on
    from tracking.trip_updates import trip_start

    now = ZERO + (7 * 3600 + 33 * 60) * 1000
    records = [on("F0", 500, now - 2_000), on("F1", 500, now - 1_000),
               replace(on("F1", 500, now), vehicle_id="LOST", start_date=None)]
    feed = vehicle_feed(records, now_ms=now, starts=lambda r: trip_start(r, FREQUENT))
    trips = {e.id: e.vehicle.trip for e in feed.entity}
    relationship = gtfs_realtime_pb2.TripDescriptor
    assert {v: (t.trip_id, t.start_time, t.schedule_relationship)
            for v, t in trips.items()} == {
        "B-F0": ("F0", "07:30:00", relationship.UNSCHEDULED),
        "B-F1": ("F1", "07:30:00", relationship.SCHEDULED),
        # no service date: not guessed, still the trip it runs
        "LOST": ("F1", "", relationship.SCHEDULED)}
    assert check(feed, FREQUENT_STATIC, now / 1000) == []
    # without the schedule it is sent as before, which the rules fail
    plain = vehicle_feed(records, now_ms=now)
    assert {f.code for f in check(plain, FREQUENT_STATIC, now / 1000)} == {"E013"}
