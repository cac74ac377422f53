"""The GTFS importer (`tracking.gtfs`, reading through `tracking.gtfs_files`) in process:
real zip files built in tmp_path, imported into an in-memory SQLite database. Its
untidy-feed rules, its checks of every value, and its limits on what a zip may hold
(issue 14, contract sections 1 and 10); the same hostile files through the installed
command, with their memory measured, are in tests/integration/tracking/test_gtfs_limits.py.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from hardware_sim.surabaya import write_feed as write_demo_feed
from ledger.adapters.db import Base
from tests.support.feeds import (
    SMALL,
    Content,
    changed,
    many_members,
    repeated,
    rewrite_entry,
    write_feed,
)
from tracking.adapters.models import (
    Agency,
    CalendarEntry,
    GtfsFeed,
    Route,
    ServiceDate,
    ShapePoint,
    Stop,
    Trip,
    TripFrequency,
    TripStop,
)
from tracking.gtfs import GtfsError, ImportReport, import_feed
from tracking.gtfs_files import MAX_ROWS, BoundedMember, Limits, directory_size

TABLES = (Agency, Route, Stop, ShapePoint, Trip, TripStop, CalendarEntry, ServiceDate,
          TripFrequency)
STOPS_HEADER = "stop_id,stop_name,stop_lat,stop_lon\n"


def network(session: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the network's tables, as this session sees them."""
    return {model.__tablename__: sorted(tuple(row) for row in session.execute(
        select(*model.__table__.columns)).all()) for model in TABLES}


@dataclass
class Db:
    """An in-memory database holding the small feed, and the feeds of one test."""

    session: Session
    folder: Path
    before: dict[str, list[tuple[Any, ...]]]

    def feed(self, files: dict[str, Content], name: str = "feed.zip", **kw: Any) -> Path:
        return write_feed(self.folder / name, files, **kw)

    def refused(self, path: Path, *words: str, limits: Limits | None = None) -> str:
        """Importing `path` fails with a message naming each of `words`, and the network
        is unchanged even inside the open transaction (nothing was written)."""
        with pytest.raises(GtfsError) as caught:
            import_feed(self.session, path, limits)
        message = str(caught.value)
        assert "\n" not in message, message
        for word in words:
            assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
        assert network(self.session) == self.before, f"the network changed: {message}"
        return message


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine, tables=[m.__table__ for m in (*TABLES, GtfsFeed)])
    with Session(engine) as session:
        import_feed(session, write_feed(tmp_path / "small.zip", SMALL))
        session.commit()
        yield Db(session, tmp_path, network(session))
    engine.dispose()


def stops(*rows: str) -> str:
    return STOPS_HEADER + "".join(row + "\n" for row in rows)


# -- what a feed may be -----------------------------------------------------------------------

def test_the_small_feed_imports_untidy_parts_and_all(db: Db) -> None:
    report = import_feed(db.session, db.feed(SMALL))
    assert isinstance(report, ImportReport)
    assert (report.agencies, report.routes, report.stops, report.trips,
            report.shape_points, report.trip_stops) == (2, 2, 3, 2, 3, 5)
    rows = network(db.session)
    # The agency only routes.txt names gets a placeholder; a stop id may hold spaces.
    assert [a[0] for a in rows["agencies"]] == ["SBY", "TSS"]
    assert "Terminal Purabaya" in [s[0] for s in rows["stops"]]
    # Two trips sharing "T1" get one block of stop times each, in file order.
    assert [(t[0], t[1]) for t in rows["trips"]] == [("T1@1", "R1"), ("T1@2", "R2")]
    assert [(t[0], t[1], t[2]) for t in rows["trip_stops"]] == [
        ("T1@1", 1, "Terminal Purabaya"), ("T1@1", 2, "SBY-WARU"), ("T1@1", 3, "SBY-RAJAWALI"),
        ("T1@2", 1, "SBY-RAJAWALI"), ("T1@2", 2, "SBY-WARU")]
    assert any("TSS is not in agency.txt" in w for w in report.warnings), report.warnings


def test_a_key_given_twice_keeps_its_last_row(db: Db) -> None:
    files = changed("stops.txt", SMALL["stops.txt"] + "SBY-WARU,Waru (moved),-7.34350,112.72870\n")
    files = changed("routes.txt", SMALL["routes.txt"] + "R1,SBY,R1,Purabaya - Rajawali,E4002B\n",
                    files)
    import_feed(db.session, db.feed(files))
    rows = network(db.session)
    assert ("SBY-WARU", "Waru (moved)", -7343500, 112728700) in rows["stops"]
    assert [r[:4] for r in rows["routes"]] == [("R1", "SBY", "R1", "Purabaya - Rajawali"),
                                               ("R2", "TSS", "R2", "Kenjeran - Gubeng")]


def test_the_demo_network_and_stored_or_bom_led_members_import(db: Db) -> None:
    import_feed(db.session, write_demo_feed(db.folder / "demo.zip"))
    assert len(network(db.session)["routes"]) >= 3
    bom = changed("agency.txt", "\ufeff" + SMALL["agency.txt"])
    import_feed(db.session, db.feed(bom, "stored.zip", method=zipfile.ZIP_STORED))
    assert [a[0] for a in network(db.session)["agencies"]] == ["SBY", "TSS"]


# -- ids (contract section 1) and values --------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "words"), [
    # An agency id beginning with "=" would reach the settlement CSV as a formula.
    ("agency.txt", "agency_id,agency_name\n=HYPERLINK(\"http://x\"),Evil\n",
     ("agency.txt:2", "agency_id", "=HYPERLINK")),
    ("routes.txt", "route_id,agency_id\nR1,=1+1\n", ("routes.txt:2", "agency_id")),
    ("routes.txt", "route_id,agency_id\n" + "R" * 65 + ",SBY\n", ("routes.txt", "route_id")),
    ("routes.txt", "route_id,agency_id\nR 1,SBY\n", ("routes.txt", "route_id", "'R 1'")),
    ("routes.txt", "route_id,agency_id\n,SBY\n", ("routes.txt:2", "route_id", "empty")),
    ("trips.txt", "route_id,trip_id\nR1,T1@2\n", ("trips.txt", "trip_id")),
    ("trips.txt", "route_id,trip_id\nR1 ,T 1\n", ("trips.txt", "trip_id")),
    ("trips.txt", "route_id,trip_id,service_id\nR1,T1,week days\n",
     ("trips.txt", "service_id")),
    ("trips.txt", "route_id,trip_id,shape_id\nR1,T1,shape;1\n", ("trips.txt", "shape_id")),
    ("shapes.txt", "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"
                   + "S" * 65 + ",-7.3,112.7,1\n", ("shapes.txt:2", "shape_id")),
    ("stop_times.txt", "trip_id,stop_id,stop_sequence\nT1\x07,SBY-WARU,1\n",
     ("stop_times.txt", "trip_id")),
])
def test_ids_follow_the_contract_rule(db: Db, name: str, content: str,
                                      words: tuple[str, ...]) -> None:
    db.refused(db.feed(changed(name, content)), *words)


def test_stop_ids_may_hold_spaces_but_no_control_character_and_no_more_than_100(
        db: Db) -> None:
    longest = "Halte " + "x" * 94
    import_feed(db.session, db.feed(changed("stops.txt", stops(f"{longest},Long,-7.3,112.7"))))
    assert [s[0] for s in network(db.session)["stops"]] == [longest]
    db.session.rollback()
    for bad in (longest + "y", "Blok\x07M", "Blok\tM", "Blok\x7fM"):
        db.refused(db.feed(changed("stops.txt", stops(f'"{bad}",Bad,-7.3,112.7'))),
                   "stops.txt:2", "stop_id")
    db.refused(db.feed(changed("stop_times.txt", "trip_id,stop_id,stop_sequence\n"
                               f"T1,{longest}y,1\n")), "stop_times.txt:2", "stop_id")


@pytest.mark.parametrize(("name", "content", "words"), [
    ("shapes.txt", "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\nS1,-7.3,112.7,inf\n",
     ("shapes.txt:2", "shape_pt_sequence", "inf")),
    ("shapes.txt", "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\nS1,-7.3,112.7,nan\n",
     ("shapes.txt:2", "shape_pt_sequence")),
    ("shapes.txt", "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\nS1,nan,112.7,1\n",
     ("shapes.txt:2", "shape_pt_lat")),
    ("stops.txt", stops("S1,A,-7.3,-inf"), ("stops.txt:2", "stop_lon")),
    ("stops.txt", stops("S1,A,1e400,112.7"), ("stops.txt:2", "stop_lat")),
    ("stops.txt", stops("S1,A,91,112.7"), ("stops.txt:2", "stop_lat", "range")),
    ("stop_times.txt", "trip_id,stop_id,stop_sequence\nT1,SBY-WARU,1e400\n",
     ("stop_times.txt:2", "stop_sequence")),
    ("stop_times.txt", "trip_id,stop_id,stop_sequence\nT1,SBY-WARU,2147483648\n",
     ("stop_times.txt:2", "stop_sequence", "2147483647")),
    ("stop_times.txt", "trip_id,stop_id,stop_sequence\nT1,SBY-WARU,-1\n",
     ("stop_times.txt:2", "stop_sequence")),
    ("trips.txt", "route_id,trip_id,direction_id\nR1,T1,99999999999999999999\n",
     ("trips.txt:2", "direction_id")),
    ("trips.txt", "route_id,trip_id,direction_id\nR1,T1,north\n",
     ("trips.txt:2", "direction_id", "not a number")),
    ("agency.txt", "agency_id,agency_name,agency_timezone\nSBY,Suroboyo Bus," + "A" * 65 + "\n",
     ("agency.txt:2", "agency_timezone")),
])
def test_numbers_and_codes_out_of_range_get_the_importers_error(
        db: Db, name: str, content: str, words: tuple[str, ...]) -> None:
    db.refused(db.feed(changed(name, content)), *words)


def test_text_no_database_can_hold_and_missing_parts(db: Db) -> None:
    db.refused(db.feed(changed("stops.txt", stops("S1,Purabaya\0,-7.3,112.7"))),
               "stops.txt:2", "NUL")
    db.refused(db.feed(changed("stops.txt", STOPS_HEADER.encode() + b"S1,Rajawal\xe9,-7.3,1\n")),
               "stops.txt", "UTF-8")
    db.refused(db.feed(changed("stops.txt", "stop_id,stop_name,stop_lat\nS1,A,-7.3\n")),
               "stops.txt", "missing column", "stop_lon")
    db.refused(db.feed(changed("stops.txt", b"")), "stops.txt", "missing column")
    db.refused(db.feed({k: v for k, v in SMALL.items() if k != "routes.txt"}),
               "routes.txt", "missing from the feed")
    db.refused(db.feed(changed("agency.txt", "agency_id,agency_name\n")), "agency.txt",
               "no agency")
    db.refused(db.feed(changed("stops.txt", stops('S1,"Purabaya,-7.3,112.7'))), "stops.txt")


# -- what a zip may hold ----------------------------------------------------------------------

def test_a_member_over_its_size_limit_is_refused_before_it_is_read(db: Db) -> None:
    big = stops(*(f"S{i},Stop {i},-7.3,112.7" for i in range(2_000)))
    path = db.feed(changed("stops.txt", big))
    db.refused(path, "stops.txt", f"{len(big.encode()):,}", "10,000",
               limits=Limits(member_bytes=10_000))
    import_feed(db.session, path)  # within the default limits


def test_a_member_that_compresses_like_no_feed_is_refused_over_a_mib_only(db: Db) -> None:
    bomb = db.feed(changed("stops.txt", repeated(b"\n", 2 << 20)), "bomb.zip", level=9)
    db.refused(bomb, "stops.txt", "100:1")
    # Under 1 MiB a member cannot hurt, however well it compresses.
    rows = "T1,,,SBY-WARU,2\n" * 50_000
    small = changed("stop_times.txt", SMALL["stop_times.txt"] + rows)
    import_feed(db.session, db.feed(small, "dense.zip", level=9))
    info = zipfile.ZipFile(db.folder / "dense.zip").getinfo("stop_times.txt")
    assert info.file_size > 100 * info.compress_size, "not dense enough to show anything"


def test_a_header_that_lies_about_the_size_is_caught(db: Db) -> None:
    content = stops(*(f"S{i},Stop {i},-7.3,112.7" for i in range(1_000)))
    # The central directory says 4 KiB, the data holds 30: reading stops at what was
    # declared, and the checksum tells the rest.
    lying = rewrite_entry(db.feed(changed("stops.txt", content), "lying.zip"), "stops.txt",
                          size=4096, local_size=4096)
    db.refused(lying, "stops.txt", "header")
    # A local header alone lying is ignored: the central directory is what is read.
    local = rewrite_entry(db.feed(changed("stops.txt", content), "local.zip"), "stops.txt",
                          local_size=4096)
    assert import_feed(db.session, local).stops == 1_000


def test_a_member_read_past_its_limit_is_stopped_whatever_its_header_said() -> None:
    within = BoundedMember(io.BytesIO(b"x" * 4096), "stops.txt", 4096)
    assert len(io.BufferedReader(within).read()) == 4096
    beyond = io.BufferedReader(BoundedMember(io.BytesIO(b"x" * 4097), "stops.txt", 4096))
    with pytest.raises(GtfsError, match=r"stops.txt: more than 4,096 bytes"):
        beyond.read()


def test_compression_methods_that_cannot_be_bounded_and_encryption_are_refused(db: Db) -> None:
    db.refused(db.feed(SMALL, "bzip2.zip", method=zipfile.ZIP_BZIP2), "agency.txt",
               "method 12")
    db.refused(db.feed(SMALL, "lzma.zip", method=zipfile.ZIP_LZMA), "agency.txt", "method 14")
    encrypted = rewrite_entry(db.feed(SMALL, "encrypted.zip"), "stops.txt", flags=0x1)
    db.refused(encrypted, "stops.txt", "encrypted")


def test_zips_of_too_many_files_or_too_large_a_table_of_contents(db: Db) -> None:
    crowded = many_members(db.folder / "crowded.zip", 300)
    db.refused(crowded, "crowded.zip", "306", "200")
    db.refused(db.feed(SMALL), "table of contents", limits=Limits(directory_bytes=300))
    assert import_feed(db.session, db.feed(SMALL, "ok.zip"), Limits(members=6)).routes == 2


def test_the_table_of_contents_is_measured_as_zipfile_reads_it(tmp_path: Path) -> None:
    path = write_feed(tmp_path / "small.zip", SMALL)
    with zipfile.ZipFile(path, "a") as z:
        z.comment = b"a comment puts the end record 2 KB before the end of the file " * 32
    with zipfile.ZipFile(path) as z:
        declared = sum(46 + len(i.filename.encode()) + len(i.extra) + len(i.comment)
                       for i in z.infolist())
    assert directory_size(path) == declared
    not_zip = tmp_path / "not.zip"
    not_zip.write_bytes(b"route_id\nR1\n")
    assert directory_size(not_zip) is None


def test_lines_rows_and_shapes_are_counted(db: Db) -> None:
    long_name = "x" * 70_000
    db.refused(db.feed(changed("stops.txt", stops(f"S1,{long_name},-7.3,112.7"))),
               "stops.txt:2", "65,536")
    few = Limits(rows={**MAX_ROWS, "stops.txt": 3})
    db.refused(db.feed(changed("stops.txt", stops(*(f"S{i},A,-7.3,112.7" for i in range(4))))),
               "stops.txt", "more than 3 rows", limits=few)
    # Blank lines count: a member of nothing else would take as long to read.
    blank = db.feed(changed("stops.txt", stops("S1,A,-7.3,112.7") + "\n" * 3), "blank.zip")
    db.refused(blank, "stops.txt", "3 rows", limits=few)
    two_shapes = ("shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"
                  "A,-7.3,112.7,1\nA,-7.3,112.7,2\nB,-7.3,112.7,1\n")
    db.refused(db.feed(changed("shapes.txt", two_shapes)), "shapes.txt:4", "more than 1 shapes",
               limits=Limits(shapes=1))
    # One shape id holding a second line (its sequence starts again) is a second shape.
    again = two_shapes.replace("B,", "A,")
    db.refused(db.feed(changed("shapes.txt", again), "again.zip"), "shapes.txt:4",
               limits=Limits(shapes=1))


# -- times, the calendar and frequencies --------------------------------------------------------

TIMED = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
         "T1,07:58:00,08:00:00,Terminal Purabaya,1\nT1,,,SBY-WARU,2\n"
         "T1,25:10:00,25:10:30,SBY-RAJAWALI,3\n"
         "T1,6:00:00,6:00:00,SBY-RAJAWALI,1\nT1,06:20:00,06:20:00,SBY-WARU,2\n")
CALENDAR = ("service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,"
            "start_date,end_date\nweekday,1,1,1,1,1,0,0,20260101,20261231\n"
            "daily,1,1,1,1,1,1,1,20260101,20261231\n")
DATES = "service_id,date,exception_type\nweekday,20260817,2\ndaily,20261225,2\n"
FREQUENCIES = ("trip_id,start_time,end_time,headway_secs\nT1,06:00:00,22:00:00,600\n"
               "GONE,06:00:00,22:00:00,600\n")


def test_stop_times_keep_their_times_past_midnight_too(db: Db) -> None:
    report = import_feed(db.session, db.feed(changed("stop_times.txt", TIMED)))
    rows = db.session.execute(select(TripStop.trip_id, TripStop.seq, TripStop.arrival_s,
                                     TripStop.departure_s).order_by(
        TripStop.trip_id, TripStop.seq)).all()
    assert [tuple(r) for r in rows] == [
        ("T1@1", 1, 28_680, 28_800), ("T1@1", 2, None, None), ("T1@1", 3, 90_600, 90_630),
        ("T1@2", 1, 21_600, 21_600), ("T1@2", 2, 22_800, 22_800)]
    assert report.timed_stops == 4 and "4 timed stops" in str(report)


@pytest.mark.parametrize("bad", ["8:00", "08:60:00", "08:00:61", "eight", "-1:00:00",
                                 "08:00:00.5"])
def test_a_malformed_time_names_its_file_line_and_field(db: Db, bad: str) -> None:
    content = ("trip_id,arrival_time,departure_time,stop_id,stop_sequence\n"
               f"T1,08:00:00,08:00:00,SBY-WARU,1\nT1,08:10:00,{bad},SBY-RAJAWALI,2\n")
    db.refused(db.feed(changed("stop_times.txt", content)), "stop_times.txt:3",
               "departure_time")


def test_the_calendar_its_dates_and_frequencies_are_imported_and_replaced(db: Db) -> None:
    files = {**SMALL, "calendar.txt": CALENDAR, "calendar_dates.txt": DATES,
             "frequencies.txt": FREQUENCIES}
    report = import_feed(db.session, db.feed(files))
    assert (report.services, report.service_dates, report.frequencies) == (2, 2, 2)
    assert any("frequencies.txt: 1 row" in w for w in report.warnings)
    assert sorted(tuple(r) for r in db.session.execute(select(
        CalendarEntry.service_id, CalendarEntry.weekdays, CalendarEntry.start_date,
        CalendarEntry.end_date))) == [("daily", "1111111", "20260101", "20261231"),
                                      ("weekday", "1111100", "20260101", "20261231")]
    assert sorted(tuple(r) for r in db.session.execute(select(
        ServiceDate.service_id, ServiceDate.date, ServiceDate.exception_type))) == [
        ("daily", "20261225", 2), ("weekday", "20260817", 2)]
    # The reused id's frequencies go with each of its trips.
    assert sorted(tuple(r) for r in db.session.execute(select(
        TripFrequency.trip_id, TripFrequency.start_s, TripFrequency.end_s,
        TripFrequency.headway_s, TripFrequency.exact_times))) == [
        ("T1@1", 21_600, 79_200, 600, 0), ("T1@2", 21_600, 79_200, 600, 0)]
    import_feed(db.session, db.feed(SMALL, "again.zip"))  # a feed without them
    for model in (CalendarEntry, ServiceDate, TripFrequency):
        assert db.session.scalars(select(model)).all() == []


@pytest.mark.parametrize(("name", "content", "words"), [
    ("calendar.txt", CALENDAR.replace("1,1,1,1,1,0,0", "1,1,1,1,1,0,x"),
     ("calendar.txt:2", "sunday")),
    ("calendar.txt", CALENDAR.replace("20261231\nd", "20261331\nd"),
     ("calendar.txt:2", "end_date", "20261331")),
    ("calendar.txt", CALENDAR.replace("20260101,20261231\nd", "2026-01-01,20261231\nd"),
     ("calendar.txt:2", "start_date")),
    ("calendar.txt", CALENDAR.replace("20260101,20261231\nd", "20270101,20261231\nd"),
     ("calendar.txt:2", "before")),
    ("calendar.txt", "service_id,monday\nweekday,1\n", ("calendar.txt", "missing",
                                                       "tuesday")),
    ("calendar_dates.txt", DATES.replace("20260817,2", "20260817,3"),
     ("calendar_dates.txt:2", "exception_type")),
    ("calendar_dates.txt", DATES.replace("20260817", "20260230"),
     ("calendar_dates.txt:2", "date")),
    ("calendar_dates.txt", DATES.replace("weekday,", "week day,"),
     ("calendar_dates.txt:2", "service_id")),
    ("frequencies.txt", FREQUENCIES.replace("22:00:00,600\nG", "5:00:00,600\nG"),
     ("frequencies.txt:2", "end_time")),
    ("frequencies.txt", FREQUENCIES.replace("22:00:00,600\nG", "22:00:00,0\nG"),
     ("frequencies.txt:2", "headway_secs")),
    ("frequencies.txt", FREQUENCIES.replace("T1,06:00:00", "T1,6am"),
     ("frequencies.txt:2", "start_time")),
    ("frequencies.txt", "trip_id,start_time,end_time,headway_secs,exact_times\n"
                        "T1,06:00:00,07:00:00,600,2\n", ("frequencies.txt:2", "exact_times")),
])
def test_a_calendar_or_frequency_no_consumer_could_read_is_refused(
        db: Db, name: str, content: str, words: tuple[str, ...]) -> None:
    db.refused(db.feed(changed(name, content)), *words)


def test_trips_of_a_shared_shape_id_get_the_line_their_stops_lie_along(db: Db) -> None:
    # "S" holds two lines, the northern one first; the trips come southern one first,
    # so file order would give each the other's line, 12 km off its stops.
    files = {**SMALL,
             "stops.txt": stops("S1,Selatan 1,-7.35000,112.70000",
                                "S2,Selatan 2,-7.35000,112.72000",
                                "N1,Utara 1,-7.24000,112.70000",
                                "N2,Utara 2,-7.24000,112.72000"),
             "shapes.txt": "shape_id,shape_pt_lat,shape_pt_lon,shape_pt_sequence\n"
                           "S,-7.24000,112.70000,1\nS,-7.24000,112.72000,2\n"
                           "S,-7.35000,112.70000,1\nS,-7.35000,112.72000,2\n",
             "trips.txt": "route_id,trip_id,shape_id\nR1,T1,S\nR2,T2,S\n",
             "stop_times.txt": "trip_id,stop_id,stop_sequence\nT1,S1,1\nT1,S2,2\n"
                               "T2,N1,1\nT2,N2,2\n"}
    report = import_feed(db.session, db.feed(files))
    shapes = {t: s for t, s in db.session.execute(select(Trip.trip_id, Trip.shape_id))}
    assert shapes == {"T1": "S@2", "T2": "S@1"}
    assert any("2 trip(s) given the line" in w for w in report.warnings), report.warnings


def test_each_import_writes_a_new_stamp_and_a_refused_one_keeps_it(db: Db) -> None:
    """The stamp a gateway asks to know whether to read the schedule again."""
    from tracking.schedule_load import feed_stamp

    first = feed_stamp(db.session)
    assert first is not None and len(first) == 32
    import_feed(db.session, db.feed(SMALL))
    second = feed_stamp(db.session)
    assert second is not None and second != first
    assert len(db.session.scalars(select(GtfsFeed)).all()) == 1  # the feed in force only
    with pytest.raises(GtfsError):
        import_feed(db.session, db.feed(changed("stops.txt", "stop_id\n")))
    assert feed_stamp(db.session) == second
