"""Service alerts: the rules a request must pass (pure), the states an alert goes
through, and the office over a real SQLite database (in process): made once per
reference, ended once, audited, in the feed while active, on the routes riders rode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2 as rt
from sqlalchemy import insert, select

from ledger import audit
from ledger.adapters.db import Base, Sessions, make_engine, session_factory
from ledger.adapters.models import AuditRecord, ChainHead
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from tests.support.gtfs_rt_rules import StaticFeed, Trip, check
from tracking.adapters.models import Agency, Route, ServiceAlert, Stop, TripStop
from tracking.adapters.models import Trip as TripRow
from tracking.alerts import (
    MAX_HEADER,
    Alert,
    AlertConflict,
    AlertError,
    AlertNotFound,
    AlertOffice,
    in_language,
    parse_alert,
)

NOW = 1_764_313_202_123
HOUR = 3_600_000
OPS = Actor("token", "t-1", "Sari", "ops", "127.0.0.1")
KEY = Fingerprints(b"k" * 32)
GOOD: dict[str, Any] = {"header": {"en": "Road closed", "id": "Jalan ditutup"},
                        "description": "Bus lewat Jl. Darmo.", "cause": "CONSTRUCTION",
                        "effect": "DETOUR", "route_ids": ["R1"], "stop_ids": ["A"],
                        "end": NOW + HOUR}


def refused(body: dict[str, Any], now: int = NOW) -> str:
    with pytest.raises(AlertError) as caught:
        parse_alert(body, now)
    return caught.value.code


# -- the rules --------------------------------------------------------------------------------

def test_a_good_request_is_read_indonesian_first_with_defaults() -> None:
    draft = parse_alert(GOOD, NOW)
    assert draft.header == (("id", "Jalan ditutup"), ("en", "Road closed"))
    assert draft.description == (("id", "Bus lewat Jl. Darmo."),)  # a plain text is Indonesian
    assert (draft.cause, draft.effect) == ("CONSTRUCTION", "DETOUR")
    assert (draft.start_ms, draft.end_ms, draft.reference) == (None, NOW + HOUR, None)
    bare = parse_alert({"header": "Mogok", "description": "Tidak ada bus"}, NOW)
    assert (bare.cause, bare.effect) == ("UNKNOWN_CAUSE", "UNKNOWN_EFFECT")
    assert (bare.route_ids, bare.stop_ids) == ((), ())
    lower = parse_alert({**GOOD, "cause": "strike", "effect": " no_service ",
                         "header": {"ID": "a", "en-GB": "b"}}, NOW)
    assert (lower.cause, lower.effect) == ("STRIKE", "NO_SERVICE")
    assert lower.header == (("id", "a"), ("en-GB", "b"))


def test_instants_are_milliseconds_or_iso_8601_with_an_offset() -> None:
    iso = parse_alert({**GOOD, "start": "2025-11-28T06:00:00+07:00",
                       "end": "2025-11-28T00:00:00.500Z"}, NOW - 10 * HOUR)
    assert (iso.start_ms, iso.end_ms) == (1_764_284_400_000, 1_764_288_000_500)
    assert parse_alert({**GOOD, "start": str(NOW)}, NOW).start_ms == NOW
    for bad in ("2025-11-28", "2025-11-28T06:00:00", "yesterday", 1_764_313_202, True, 1.5,
                "2025-02-30T00:00:00Z"):
        assert refused({**GOOD, "start": bad}) == "bad_start", bad


@pytest.mark.parametrize(("change", "code"), [
    ({"routes": ["R1"]}, "unknown_field"),
    ({"header": ""}, "bad_header"),
    ({"header": {"en": "English only"}}, "bad_header"),
    ({"header": {"id": "x", "english": "y"}}, "bad_header"),
    ({"header": "two\nlines"}, "bad_header"),
    ({"header": "x" * (MAX_HEADER + 1)}, "bad_header"),
    ({"header": {"id": "a", "en": "b", "fr": "c", "de": "d", "nl": "e"}}, "bad_header"),
    ({"header": ["Jalan ditutup"]}, "bad_header"),
    ({"description": None}, "bad_description"),
    ({"description": {"id": 5}}, "bad_description"),
    ({"cause": "EARTHQUAKE"}, "bad_cause"),
    ({"effect": 3}, "bad_effect"),
    ({"route_ids": "R1"}, "bad_route_ids"),
    ({"stop_ids": [""]}, "bad_stop_ids"),
    ({"stop_ids": ["A"] * 501}, "bad_stop_ids"),
    ({"end": "soon"}, "bad_end"),
    ({"start": NOW + 2 * HOUR}, "bad_period"),
    ({"end": NOW - 1}, "bad_period"),
    ({"start": NOW - 2 * HOUR, "end": NOW - HOUR}, "end_passed"),
    ({"reference": "has space"}, "bad_reference"),
])
def test_each_rule_refuses_by_its_code(change: dict[str, Any], code: str) -> None:
    assert refused({**GOOD, **change}) == code


def test_a_multi_line_description_is_kept_and_repeated_ids_once() -> None:
    draft = parse_alert({**GOOD, "description": "Satu\r\nDua", "route_ids": ["R1", "R1"]},
                        NOW)
    assert draft.description == (("id", "Satu\nDua"),)
    assert draft.route_ids == ("R1",)


def test_an_alert_goes_upcoming_active_then_expired_or_ended() -> None:
    a = Alert("a" * 32, (("id", "x"),), (("id", "y"),), "STRIKE", "NO_SERVICE", (), (),
              start_ms=NOW, end_ms=NOW + HOUR, created_ms=NOW - HOUR, created_by="Sari")
    assert [a.state(t) for t in (NOW - 1, NOW, NOW + HOUR - 1, NOW + HOUR)] == [
        "upcoming", "active", "active", "expired"]
    ended = Alert(**{**a.__dict__, "ended_ms": NOW + 10, "ended_by": "Sari"})
    assert [ended.state(t) for t in (NOW, NOW + 10, NOW + 2 * HOUR)] == [
        "active", "ended", "ended"]
    assert a.network_wide


def test_a_text_is_given_in_the_language_asked_else_indonesian() -> None:
    texts = (("id", "Jalan ditutup"), ("en", "Road closed"))
    assert in_language(texts, "en") == ("en", "Road closed")
    assert in_language(texts, "id") == ("id", "Jalan ditutup")
    assert in_language((("id", "Mogok"),), "en") == ("id", "Mogok")


# -- the office, on SQLite ----------------------------------------------------------------

TABLES = [Agency, Route, Stop, TripRow, TripStop, ServiceAlert, AuditRecord, ChainHead]
STATIC = StaticFeed(frozenset({"SBY"}), frozenset({"R1", "R2"}),
                    {"T1": (Trip("R1", 0, None),), "T2": (Trip("R2", 0, None),)},
                    {"A": 0, "B": 0, "C": 0})


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Sessions]:
    engine = make_engine(f"sqlite:///{tmp_path}/alerts.db")
    Base.metadata.create_all(engine, tables=[m.__table__ for m in TABLES])  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(insert(Agency), [{"agency_id": "SBY", "name": "Suroboyo Bus",
                                       "url": "https://x", "timezone": "Asia/Jakarta"},
                                      {"agency_id": "TSS", "name": "TSS", "url": "",
                                       "timezone": ""}])
        conn.execute(insert(Route), [{"route_id": r, "agency_id": "SBY"} for r in ("R1", "R2")])
        conn.execute(insert(Stop), [{"stop_id": s, "name": f"Halte {s}", "lat_e6": 0,
                                     "lon_e6": 0} for s in ("A", "B", "C")])
        conn.execute(insert(TripRow), [{"trip_id": "T1", "route_id": "R1"},
                                       {"trip_id": "T2", "route_id": "R2"}])
        conn.execute(insert(TripStop), [{"trip_id": "T1", "seq": 1, "stop_id": "A"},
                                        {"trip_id": "T2", "seq": 1, "stop_id": "C"}])
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def office(sessions: Sessions, clock: Clock) -> AlertOffice:
    return AlertOffice(sessions, KEY, clock)


def trail(sessions: Sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        assert audit.verify(session, KEY) == []
        return [(r.action, r.subject) for r in session.scalars(
            select(AuditRecord).order_by(AuditRecord.seq))]


def test_made_listed_in_the_feed_then_ended_once_all_audited(
        office: AlertOffice, sessions: Sessions, clock: Clock) -> None:
    alert, made = office.create(GOOD, OPS)
    assert made and alert.state(NOW) == "active" and alert.created_by == "Sari"
    assert alert.start_ms == NOW  # from the moment it was made
    assert [a.alert_id for a in office.listed()] == [alert.alert_id]
    feed = office.feed()
    (entity,) = feed.entity
    assert [(s.route_id, s.stop_id) for s in entity.alert.informed_entity] == [
        ("R1", ""), ("", "A")]
    assert check(feed, STATIC, NOW / 1000) == []

    clock.now += 1000
    ended = office.end(alert.alert_id, OPS)
    assert ended.state(clock.now) == "ended" and ended.ended_ms == clock.now
    assert office.end(alert.alert_id, OPS) == ended  # again: nothing changes
    assert office.listed() == [] and len(office.feed().entity) == 0
    assert [a.state(clock.now) for a in office.listed(everything=True)] == ["ended"]
    assert trail(sessions) == [("alert.created", alert.alert_id),
                               ("alert.ended", alert.alert_id)]
    with sessions() as session:  # the trail says what riders were told, word for word
        told = json.loads(session.scalars(select(AuditRecord.detail).order_by(
            AuditRecord.seq)).first() or "{}")
    assert (told["header"], told["description"]) == (
        {"en": "Road closed", "id": "Jalan ditutup"}, {"id": "Bus lewat Jl. Darmo."})
    with pytest.raises(AlertNotFound):
        office.end("0" * 32, OPS)
    with pytest.raises(AlertNotFound):
        office.end("not-an-id", OPS)


def test_a_reference_makes_one_alert_and_another_body_with_it_is_a_conflict(
        office: AlertOffice, sessions: Sessions, clock: Clock) -> None:
    body = {**GOOD, "reference": "banjir-2025-11-28"}
    first, made = office.create(body, OPS)
    clock.now += 5000  # a retry a little later, its start left out as before
    again, made_again = office.create(body, OPS)
    assert made and not made_again and again == first
    with pytest.raises(AlertConflict) as caught:
        office.create({**body, "effect": "NO_SERVICE"}, OPS)
    assert caught.value.code == "reference_conflict"
    with pytest.raises(AlertConflict):
        office.create({**body, "start": NOW + 1}, OPS)
    assert len(office.listed(everything=True)) == 1
    assert [a for a, _ in trail(sessions)] == ["alert.created"]


def test_unknown_routes_and_stops_are_named(office: AlertOffice) -> None:
    with pytest.raises(AlertError) as caught:
        office.create({**GOOD, "route_ids": ["R1", "R7", "R9"]}, OPS)
    assert caught.value.code == "unknown_routes" and "R7, R9" in caught.value.message
    with pytest.raises(AlertError) as caught:
        office.create({**GOOD, "stop_ids": ["Z"]}, OPS)
    assert caught.value.code == "unknown_stops" and "Z" in caught.value.message
    assert office.listed(everything=True) == []


def test_a_network_wide_alert_informs_the_agencies_of_agency_txt(
        office: AlertOffice) -> None:
    office.create({"header": "Mogok", "description": "Tidak ada bus", "cause": "STRIKE"},
                  OPS)
    feed = office.feed()
    # TSS came from routes.txt alone: naming it would not resolve (E034)
    assert [s.agency_id for s in feed.entity[0].alert.informed_entity] == ["SBY"]
    assert check(feed, STATIC, NOW / 1000) == []


def test_only_alerts_active_now_are_in_the_feed_soonest_first(
        office: AlertOffice, clock: Clock) -> None:
    later, _ = office.create({**GOOD, "start": NOW + HOUR, "end": NOW + 2 * HOUR}, OPS)
    soon, _ = office.create({**GOOD, "end": NOW + HOUR}, OPS)
    assert [a.alert_id for a in office.listed()] == [soon.alert_id, later.alert_id]
    assert [e.id for e in office.feed().entity] == [soon.alert_id]
    clock.now = NOW + HOUR
    assert [e.id for e in office.feed().entity] == [later.alert_id]
    assert [a.alert_id for a in office.active()] == [later.alert_id]
    clock.now = NOW + 2 * HOUR
    assert office.feed().entity == [] and office.listed() == []
    assert {a.state(clock.now) for a in office.listed(everything=True)} == {"expired"}
    feed = office.feed()
    assert feed.header.incrementality == rt.FeedHeader.FULL_DATASET


def test_riders_see_alerts_on_their_routes_their_stops_and_the_whole_network(
        office: AlertOffice) -> None:
    r1, _ = office.create({**GOOD, "stop_ids": []}, OPS)
    at_c, _ = office.create({**GOOD, "route_ids": [], "stop_ids": ["C"]}, OPS)
    everywhere, _ = office.create({"header": "Mogok", "description": "x"}, OPS)
    assert [a.alert_id for a in office.on_routes(["R1"])] == [r1.alert_id,
                                                              everywhere.alert_id]
    assert [a.alert_id for a in office.on_routes(["R2"])] == [at_c.alert_id,
                                                              everywhere.alert_id]
    assert [a.alert_id for a in office.on_routes([])] == [everywhere.alert_id]
