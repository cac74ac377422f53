"""The GTFS-Realtime rules checker (tests/support/gtfs_rt_rules.py) can fail: a valid
feed passes, and each rule catches a feed built to break it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from tests.support.feeds import changed, write_feed
from tests.support.gtfs_rt_rules import (
    ERROR,
    RULES,
    StaticFeed,
    Trip,
    check,
    errors,
    metres_to_shape,
    static_feed,
)

NOW = 1_764_313_202
STATIC = StaticFeed(
    agency_ids=frozenset({"SBY"}), route_ids=frozenset({"R1", "R2"}),
    trips={"T1": (Trip("R1", 0, "S1"),), "T2": (Trip("R2", None, None),),
           "F0": (Trip("R1", 0, None),), "F1": (Trip("R1", 0, None),)},
    stops={"A": 0, "B": 0, "STATION": 1},
    shapes={"S1": ([(-7.3509, 112.7243), (-7.2359, 112.7338)],)},
    stop_times={"T1": (((1, "A"), (2, "B"), (3, "STATION")),)},
    # F0 every 10 minutes as it comes (exact_times=0); F1 at 06:00, 06:15, ... 08:45
    # and from 09:00 every 20 minutes until 12:00 (exact_times=1)
    frequencies={"F0": ((6 * 3600, 22 * 3600, 600, False),),
                 "F1": ((6 * 3600, 9 * 3600, 900, True), (9 * 3600, 12 * 3600, 1200, True))})
ON_SHAPE = (-7.2934, 112.7290)  # half way along S1
OFF_SHAPE = (-7.2934, 112.7390)  # ~1 km east of it, inside the coverage area


def vehicles() -> rt.FeedMessage:
    feed = rt.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = rt.FeedHeader.FULL_DATASET
    feed.header.timestamp = NOW
    for n, trip in enumerate(("T1", "T2")):
        e = feed.entity.add()
        e.id = f"BUS-{n}"
        v = e.vehicle
        v.vehicle.id = f"BUS-{n}"
        v.trip.trip_id = trip
        v.trip.route_id = STATIC.trips[trip][0].route_id
        v.trip.schedule_relationship = rt.TripDescriptor.SCHEDULED
        v.position.latitude, v.position.longitude = ON_SHAPE
        v.position.bearing = 10
        v.position.speed = 12.5
        v.timestamp = NOW - 5
        v.stop_id = "B"
        v.current_status = rt.VehiclePosition.IN_TRANSIT_TO
    return feed


def alerts() -> rt.FeedMessage:
    feed = rt.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = rt.FeedHeader.FULL_DATASET
    feed.header.timestamp = NOW
    e = feed.entity.add()
    e.id = "a1"
    a = e.alert
    a.active_period.add(start=NOW - 60, end=NOW + 3600)
    a.informed_entity.add(route_id="R1")
    a.informed_entity.add(stop_id="A")
    a.informed_entity.add(agency_id="SBY")
    a.cause, a.effect = rt.Alert.CONSTRUCTION, rt.Alert.DETOUR
    for text in (a.header_text, a.description_text):
        text.translation.add(text="Jalan ditutup", language="id")
        text.translation.add(text="Road closed", language="en")
    return feed


def trip_updates() -> rt.FeedMessage:
    feed = rt.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.incrementality = rt.FeedHeader.FULL_DATASET
    feed.header.timestamp = NOW
    e = feed.entity.add()
    e.id = "BUS-0"
    tu = e.trip_update
    tu.trip.trip_id, tu.trip.route_id, tu.trip.start_date = "T1", "R1", "20251128"
    tu.trip.direction_id = 0
    tu.trip.schedule_relationship = rt.TripDescriptor.SCHEDULED
    tu.vehicle.id = "BUS-0"
    tu.timestamp = NOW - 5
    for seq, stop, ahead in ((1, "A", 60), (2, "B", 180)):
        u = tu.stop_time_update.add(stop_sequence=seq, stop_id=stop)
        u.arrival.time = NOW + ahead
        u.arrival.delay = 30
    return feed


def update(feed: rt.FeedMessage, n: int = 0) -> rt.TripUpdate.StopTimeUpdate:
    return feed.entity[0].trip_update.stop_time_update[n]


def vehicle(feed: rt.FeedMessage) -> rt.VehiclePosition:
    return feed.entity[0].vehicle


def alert(feed: rt.FeedMessage) -> rt.Alert:
    return feed.entity[0].alert


def _set(obj: object, **values: object) -> None:
    for name, value in values.items():
        setattr(obj, name, value)


Breaker = Callable[[rt.FeedMessage], object]
VEHICLE_BREAKERS: dict[str, Breaker] = {
    "E001": lambda f: _set(vehicle(f), timestamp=(NOW - 5) * 1000),
    "E003": lambda f: _set(vehicle(f).trip, trip_id="T9"),
    "E004": lambda f: _set(vehicle(f).trip, route_id="R9", trip_id=""),
    "E011": lambda f: _set(vehicle(f), stop_id="Z"),
    "E012": lambda f: _set(vehicle(f), timestamp=NOW + 10),
    "E015": lambda f: _set(vehicle(f), stop_id="STATION"),
    "E013": lambda f: _set(vehicle(f).trip, trip_id="F0", start_time="07:03:00"),
    "E016": lambda f: _set(vehicle(f).trip, schedule_relationship=rt.TripDescriptor.ADDED),
    "E019": lambda f: _set(vehicle(f).trip, trip_id="F1", start_time="09:10:00"),
    "E020": lambda f: _set(vehicle(f).trip, trip_id="F1", start_time="9:00:00"),
    "E024": lambda f: _set(vehicle(f).trip, direction_id=1),
    "E026": lambda f: _set(vehicle(f).position, latitude=95.0),
    "E027": lambda f: _set(vehicle(f).position, bearing=361.0),
    "E028": lambda f: _set(vehicle(f).position, latitude=-6.2, longitude=106.8),
    "E029": lambda f: _set(vehicle(f).position, latitude=OFF_SHAPE[0],
                           longitude=OFF_SHAPE[1]),
    "E035": lambda f: _set(vehicle(f).trip, route_id="R2"),
    "E038": lambda f: _set(f.header, gtfs_realtime_version="3.0"),
    "E039": lambda f: _set(f.entity[0], is_deleted=False),
    "E048": lambda f: f.header.ClearField("timestamp"),
    "E049": lambda f: f.header.ClearField("incrementality"),
    "E050": lambda f: (_set(f.header, timestamp=NOW + 120),
                       _set(vehicle(f), timestamp=NOW + 120)),
    "E052": lambda f: _set(f.entity[1].vehicle.vehicle, id="BUS-0"),
    "W001": lambda f: vehicle(f).ClearField("timestamp"),
    "W002": lambda f: vehicle(f).vehicle.ClearField("id"),
    "W004": lambda f: _set(vehicle(f).position, speed=40.0),
    "W006": lambda f: vehicle(f).trip.ClearField("trip_id"),
    "W008": lambda f: (_set(f.header, timestamp=NOW - 120),
                       _set(vehicle(f), timestamp=NOW - 125),
                       _set(f.entity[1].vehicle, timestamp=NOW - 125)),
    "W009": lambda f: vehicle(f).trip.ClearField("schedule_relationship"),
    "S001": lambda f: _set(f.entity[1], id="BUS-0"),
    "S002": lambda f: f.entity[0].ClearField("vehicle"),
}
ALERT_BREAKERS: dict[str, Breaker] = {
    "E001": lambda f: _set(alert(f).active_period[0], end=(NOW + 3600) * 1000),
    "E004": lambda f: _set(alert(f).informed_entity[0], route_id="R9"),
    "E011": lambda f: _set(alert(f).informed_entity[1], stop_id="Z"),
    "E032": lambda f: alert(f).ClearField("informed_entity"),
    "E033": lambda f: alert(f).informed_entity.add(direction_id=1),
    "E034": lambda f: _set(alert(f).informed_entity[2], agency_id="TSS"),
    "S004": lambda f: _set(alert(f).active_period[0], end=NOW - 60),
    "S005": lambda f: alert(f).ClearField("description_text"),
    "S006": lambda f: _set(alert(f).header_text.translation[1], language=""),
}


SU = rt.TripUpdate.StopTimeUpdate
TRIP_BREAKERS: dict[str, Breaker] = {
    "E001": lambda f: _set(update(f).arrival, time=(NOW + 60) * 1000),
    "E002": lambda f: (_set(update(f), stop_sequence=2, stop_id="B"),
                       _set(update(f, 1), stop_sequence=1, stop_id="A")),
    "E003": lambda f: _set(f.entity[0].trip_update.trip, trip_id="T9"),
    "E011": lambda f: _set(update(f, 1), stop_id="Z"),
    "E012": lambda f: _set(f.entity[0].trip_update, timestamp=NOW + 10),
    "E013": lambda f: _set(f.entity[0].trip_update.trip, trip_id="F0",
                           start_time="07:03:00"),
    "E015": lambda f: _set(update(f, 1), stop_sequence=3, stop_id="STATION"),
    "E019": lambda f: _set(f.entity[0].trip_update.trip, trip_id="F1",
                           start_time="12:00:00"),
    "E020": lambda f: _set(f.entity[0].trip_update.trip, start_time="07:60:00"),
    "E021": lambda f: _set(f.entity[0].trip_update.trip, start_date="2025-11-28"),
    "E022": lambda f: _set(update(f, 1).arrival, time=NOW + 60),
    "E025": lambda f: _set(update(f).departure, time=NOW + 30),
    "E036": lambda f: _set(update(f, 1), stop_sequence=1),
    "E037": lambda f: (update(f).ClearField("stop_sequence"),
                       update(f, 1).ClearField("stop_sequence"),
                       _set(update(f, 1), stop_id="A")),
    "E040": lambda f: (update(f).ClearField("stop_sequence"), update(f).ClearField("stop_id")),
    "E041": lambda f: f.entity[0].trip_update.ClearField("stop_time_update"),
    "E043": lambda f: update(f).ClearField("arrival"),
    "E044": lambda f: (update(f).arrival.ClearField("time"),
                       update(f).arrival.ClearField("delay"), _set(update(f).arrival,
                                                                   uncertainty=5)),
    "E045": lambda f: _set(update(f, 1), stop_id="A"),
    "E050": lambda f: (_set(f.header, timestamp=NOW + 120),
                       _set(f.entity[0].trip_update, timestamp=NOW + 120)),
    "E051": lambda f: _set(update(f, 1), stop_sequence=7),
    "W001": lambda f: f.entity[0].trip_update.ClearField("timestamp"),
    "W002": lambda f: f.entity[0].trip_update.vehicle.ClearField("id"),
}


def test_valid_feeds_pass_every_rule() -> None:
    assert check(vehicles(), STATIC, NOW) == []
    assert check(alerts(), STATIC, NOW) == []
    assert check(trip_updates(), STATIC, NOW) == []


def test_a_skipped_stop_needs_no_time_and_a_canceled_trip_no_stops() -> None:
    feed = trip_updates()
    update(feed).ClearField("arrival")
    update(feed).schedule_relationship = SU.SKIPPED
    assert check(feed, STATIC, NOW) == []
    feed = trip_updates()
    feed.entity[0].trip_update.ClearField("stop_time_update")
    feed.entity[0].trip_update.trip.schedule_relationship = rt.TripDescriptor.CANCELED
    assert check(feed, STATIC, NOW) == []


@pytest.mark.parametrize(("kind", "code"), [("vehicles", c) for c in sorted(VEHICLE_BREAKERS)]
                         + [("alerts", c) for c in sorted(ALERT_BREAKERS)]
                         + [("trips", c) for c in sorted(TRIP_BREAKERS)])
def test_each_rule_catches_a_feed_made_to_break_it(kind: str, code: str) -> None:
    feed, breakers = {"vehicles": (vehicles(), VEHICLE_BREAKERS),
                      "alerts": (alerts(), ALERT_BREAKERS),
                      "trips": (trip_updates(), TRIP_BREAKERS)}[kind]
    breakers[code](feed)
    found = {f.code for f in check(feed, STATIC, NOW)}
    assert code in found, (code, found)


@pytest.mark.parametrize(("trip_id", "relationship", "start_time"), [
    ("F0", rt.TripDescriptor.UNSCHEDULED, "07:03:17"),  # any start for exact_times=0
    ("F1", rt.TripDescriptor.SCHEDULED, "06:00:00"),
    ("F1", rt.TripDescriptor.SCHEDULED, "08:45:00"),
    ("F1", rt.TripDescriptor.SCHEDULED, "11:40:00"),
    ("T1", rt.TripDescriptor.SCHEDULED, "25:10:00"),  # past midnight of its day
])
def test_runs_of_frequency_trips_pass_on_their_headways(
        trip_id: str, relationship: int, start_time: str) -> None:
    for feed, trip in ((vehicles(), lambda f: vehicle(f).trip),
                       (trip_updates(), lambda f: f.entity[0].trip_update.trip)):
        _set(trip(feed), trip_id=trip_id, schedule_relationship=relationship,
             start_time=start_time)
        assert check(feed, STATIC, NOW) == [], (trip_id, start_time)


def test_a_frequency_trip_of_exact_times_0_with_no_relationship_passes_e013() -> None:
    feed = trip_updates()
    _set(feed.entity[0].trip_update.trip, trip_id="F0", start_time="07:03:00")
    feed.entity[0].trip_update.trip.ClearField("schedule_relationship")
    assert {f.code for f in check(feed, STATIC, NOW)} == {"W009"}


def test_frequencies_are_read_from_the_zip(tmp_path: Path) -> None:
    path = write_feed(tmp_path / "f.zip", changed("frequencies.txt", (
        "trip_id,start_time,end_time,headway_secs,exact_times\n"
        "F1,6:00:00,09:00:00,900,1\nF1,09:00:00,24:30:00,1200,\n")))
    assert static_feed(path).frequencies["F1"] == (
        (6 * 3600, 9 * 3600, 900, True), (9 * 3600, 24 * 3600 + 1800, 1200, False))


def test_a_vehicle_off_its_shape_passes_when_a_detour_alert_informs_its_route() -> None:
    feed = vehicles()
    VEHICLE_BREAKERS["E029"](feed)
    assert {f.code for f in check(feed, STATIC, NOW, detours=[alerts()])} == set()
    no_detour = alerts()
    alert(no_detour).effect = rt.Alert.REDUCED_SERVICE
    assert "E029" in {f.code for f in check(feed, STATIC, NOW, detours=[no_detour])}


def test_an_enum_value_out_of_range_is_caught_from_the_wire() -> None:
    wire = alerts().SerializeToString()
    cause = bytes([6 << 3, rt.Alert.CONSTRUCTION])  # field 6, varint
    assert wire.count(cause) == 1
    feed = rt.FeedMessage.FromString(wire.replace(cause, bytes([6 << 3, 99])))
    assert [f.code for f in check(feed, STATIC, NOW)] == ["S003"]


def test_a_header_going_back_or_changing_content_in_place_is_caught() -> None:
    before, after = vehicles(), vehicles()
    after.header.timestamp = NOW - 1
    for e in after.entity:
        e.vehicle.timestamp = NOW - 6
    assert "E018" in {f.code for f in check(after, STATIC, NOW, previous=before)}
    moved = vehicles()
    vehicle(moved).position.latitude += 0.001
    assert "E017" in {f.code for f in check(moved, STATIC, NOW, previous=before)}
    assert check(vehicles(), STATIC, NOW, previous=before) == []


def test_every_rule_has_a_breaker_and_errors_are_told_from_warnings() -> None:
    covered = (set(VEHICLE_BREAKERS) | set(ALERT_BREAKERS) | set(TRIP_BREAKERS)
               | {"E017", "E018", "S003"})
    assert covered == set(RULES), set(RULES) ^ covered
    feed = vehicles()
    VEHICLE_BREAKERS["W004"](feed)
    VEHICLE_BREAKERS["E027"](feed)
    assert [f.code for f in errors(check(feed, STATIC, NOW))] == ["E027"]
    assert all(RULES[c].severity == ERROR for c in RULES if c[0] in "ES")


def test_distance_to_a_shape_is_measured_in_metres() -> None:
    (shape,) = STATIC.shapes["S1"]
    assert metres_to_shape(*ON_SHAPE, shape) < 20
    assert 950 < metres_to_shape(*OFF_SHAPE, shape) < 1150
    # past the shape's end: the distance to the end point (0.01 degree of latitude)
    assert metres_to_shape(-7.2259, 112.7338, shape) == pytest.approx(1112, abs=5)


def test_a_trip_id_two_routes_share_and_a_shape_of_two_lines_are_read_from_the_zip(
        tmp_path: Path) -> None:
    lines = "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n" + "".join(
        f"R1-0,{lat},{lon},{seq}\n" for lat, lon, seq in (
            (-7.3509, 112.7243, 1), (-7.2359, 112.7338, 2),  # the first line
            (-7.2900, 112.8000, 1), (-7.2800, 112.8000, 2)))  # numbered from 1 again
    static = static_feed(write_feed(tmp_path / "feed.zip", changed("shapes.txt", lines)))
    assert [t.route_id for t in static.trips["T1"]] == ["R1", "R2"]
    assert len(static.shapes["R1-0"]) == 2
    assert static.stop_times["T1"] == (
        ((1, "Terminal Purabaya"), (2, "SBY-WARU"), (3, "SBY-RAJAWALI")),
        ((1, "SBY-RAJAWALI"), (2, "SBY-WARU")))
    feed = vehicles()
    for e, route in zip(feed.entity, ("R1", "R2"), strict=True):
        e.vehicle.trip.trip_id, e.vehicle.trip.route_id = "T1", route
        e.vehicle.stop_id = "SBY-WARU"
    vehicle(feed).position.latitude, vehicle(feed).position.longitude = -7.2850, 112.8001
    assert errors(check(feed, static, NOW)) == []  # near the second line of R1-0
