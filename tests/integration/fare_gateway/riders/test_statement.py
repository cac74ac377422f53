"""A rider's statement from outside: a card issued and topped up with `transit`, a small
GTFS feed imported, taps over MQTT to a real `transit gateway`, then the statement over
HTTP (contract section 7) on PostgreSQL and on SQLite.

The gateway runs a fare policy of its own (below) so that every amount is known by
hand whatever the time of day the test runs at: route R2 costs 5000, any other route
3000, a transfer within 120 minutes pays the difference, a repeat within 120 s on the
same bus is free. The taps are made a second apart just after the top-up:

    top-up 50,000                                   +50,000   50,000
    R1 on SBY-0042, at the Rajawali stop            - 3,000   47,000
    R2 on SBY-0077: a transfer, 5000 - 3000          - 2,000   45,000
    R2 on SBY-0077 again, 1 s later: a repeat             0   45,000
    SBY-0042 refuses the card (not_authentic)             0   45,000
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.integration.fare_gateway.http.client import Api, assert_error_shape, expect
from tests.support import raw_http
from tests.support.clients import make_tap
from tests.support.feeds import SMALL, write_feed
from tests.support.riders import (
    issue,
    link,
    rider,
    rider_system,
)
from transit.wire import Receipt

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

CARD = "04C1A2B3C4D5E6"
OTHER = "04C1FFEEDDCCBB"  # linked to another account
UNLINKED = "04C1000000000A"
RAJAWALI = (-7_235_900 + 400, 112_733_800)  # ~45 m north of the stop of SMALL's feed
NOWHERE = (-7_300_000, 112_800_000)  # no stop within 150 m
BUS_B = ("SBY-0077-B", "SBY-0077")
POLICY = """
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student"]
default_category = "regular"

[[fares]]
routes = ["R2"]
amount = { regular = 5000 }

[[fares]]
routes = ["*"]
amount = { regular = 3000 }

[transfers]
window_minutes = 120
max_transfers = 2
"""


@dataclass
class Setup:
    system: System
    rider: str  # the token of CARD's account
    taps: list[str]  # tap ids, in the order of the table above

    def ask(self, query: str = "", lang: str | None = None, token: str | None = None,
            card: str = CARD) -> raw_http.Answer:
        """The statement asked for with this token (none: "") and Accept-Language."""
        head = [f"GET /api/v1/rider/cards/{card}/statement{query} HTTP/1.1", "Host: transit",
                "Connection: close"]
        if token != "":
            head.append(f"Authorization: Bearer {token or self.rider}")
        if lang:
            head.append(f"Accept-Language: {lang}")
        answer = raw_http.send(self.system.gateway.base_url,
                               ("\r\n".join(head) + "\r\n\r\n").encode())
        assert answer.status < 500, answer
        if answer.status >= 400:
            assert_error_shape(answer.json(), f"{card}{query}")
        return answer

    def statement(self, query: str = "", lang: str | None = None) -> Any:
        answer = self.ask(query, lang)
        assert answer.status == 200, answer
        return answer.json()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def setup(request: pytest.FixtureRequest, broker: Broker,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("statement")
    url = create_pg_database() if request.param == "postgresql" else \
        f"sqlite:///{tmp}/transit.db"
    (tmp / "fares.toml").write_text(POLICY)
    try:
        with rider_system(url, broker, tmp, TRANSIT_FARES=str(tmp / "fares.toml")) as system:
            system.transit("gtfs", "import", str(write_feed(tmp / "feed.zip", SMALL)))
            secret_b = system.add_device(*BUS_B)
            admin = system.token("admin")
            codes = {card: issue(system, admin, card, 50_000)
                     for card in (CARD, OTHER, UNLINKED)}
            token = rider(system)[1]
            assert link(system, token, CARD, codes[CARD])[0] == 201
            assert link(system, rider(system)[1], OTHER, codes[OTHER])[0] == 201

            t0 = int(time.time() * 1000) + 1000  # after the top-ups
            bus_a = (system.secret, system.device_id)
            taps = [make_tap(*bus_a, 1, CARD, ts=t0, lat_e6=RAJAWALI[0],
                             lon_e6=RAJAWALI[1]),
                    make_tap(secret_b, BUS_B[0], 1, CARD, ts=t0 + 1000, route_id="R2",
                             vehicle_id=BUS_B[1], lat_e6=NOWHERE[0], lon_e6=NOWHERE[1]),
                    make_tap(secret_b, BUS_B[0], 2, CARD, ts=t0 + 2000, route_id="R2",
                             vehicle_id=BUS_B[1], lat_e6=NOWHERE[0], lon_e6=NOWHERE[1]),
                    make_tap(*bus_a, 2, CARD, ts=t0 + 3000, accepted=False,
                             reason="not_authentic", lat_e6=RAJAWALI[0], lon_e6=RAJAWALI[1])]
            peer = system.peer()
            try:
                peer.subscribe(f"{system.prefix}/dev/+/receipt")
                for t in taps:
                    peer.publish(system.tap_topic(t.device_id), t.encode())
                got = [Receipt.parse(p) for _, p in peer.wait_for(lambda m: len(m) >= 4)]
            finally:
                peer.close()
            assert sorted((r.device_id, r.seq, r.status, r.fare) for r in got) == [
                ("SBY-0042-A", 1, "charged", 3000), ("SBY-0042-A", 2, "not_charged", 0),
                ("SBY-0077-B", 1, "charged", 2000), ("SBY-0077-B", 2, "not_charged", 0)], got
            yield Setup(system, token, [t.tap_id for t in taps])
    finally:
        if request.param == "postgresql":
            drop_pg_database(url)


def line_by_line_in_both_languages(setup: Setup) -> None:
    got = setup.statement()
    ride, onward, again, refused = setup.taps
    items = got["items"]
    assert [(i["type"], i["amount"], i["balance_after"], i["tap_id"]) for i in items] == [
        ("topup", 50_000, 50_000, None), ("tap", -3000, 47_000, ride),
        ("tap", -2000, 45_000, onward), ("tap", 0, 45_000, again),
        ("denied", 0, 45_000, refused)]
    assert (got["card"], got["currency"], got["opening_balance"], got["closing_balance"]) == (
        CARD, "IDR", 0, 45_000)
    assert [(i["route_id"], i["vehicle_id"], i["reason"]) for i in items] == [
        (None, None, None), ("R1", "SBY-0042", None), ("R2", "SBY-0077", None),
        ("R2", "SBY-0077", None), ("R1", "SBY-0042", "not_authentic")]
    assert [i["stop_name"] for i in items] == [None, "Rajawali", None, None, "Rajawali"]
    assert items[1]["stop_id"] == "SBY-RAJAWALI"
    assert [i["explanation"] for i in items] == [
        f"Isi ulang saldo Rp50.000 (referensi init-{CARD}).",
        "Perjalanan baru: tarif penuh Rp3.000 (tarif umum).",
        "Transfer dalam perjalanan yang sama: tarif penuh Rp5.000 (tarif rute R2), dikurangi "
        "Rp3.000 yang sudah dibayar, jadi Anda membayar selisihnya Rp2.000.",
        "Tap ulang di bus yang sama 1 detik setelah tap sebelumnya: tidak ditagih.",
        "Ditolak di pembaca kartu: kartu tidak lolos pemeriksaan keaslian; tidak ditagih."]
    assert all(i["ts"].endswith("Z") and len(i["ts"]) == 24 for i in items), items
    staff = setup.system.token("finance")
    card = expect(Api(setup.system.http).get(f"/api/v1/cards/{CARD}", staff), 200, "card")
    assert card["balance"] == got["closing_balance"]

    english = setup.statement(lang="en-GB,en;q=0.9,id;q=0.5")
    assert [i["explanation"] for i in english["items"]][1:3] == [
        "New journey: the full fare of Rp3.000 (the standard fare).",
        "Transfer within the same journey: the full fare of Rp5.000 (the fare of route R2), "
        "less Rp3.000 already paid, so you paid the difference of Rp2.000."]
    assert [i["amount"] for i in english["items"]] == [i["amount"] for i in items]
    for lang, want in (("en", "en"), ("id-ID", "id"), (None, "id")):
        headers = setup.ask(lang=lang).headers
        assert headers["content-language"] == want, (lang, headers)
        assert "accept-language" in headers["vary"].lower(), headers


def a_window_of_service_dates_and_the_balance_before_it(setup: Setup) -> None:
    day = setup.statement()["to"]
    same = setup.statement(f"?from={day}&to={day}")
    assert (same["from"], same["to"], same["items"][-1]["balance_after"]) == (day, day,
                                                                            45_000)
    # Nothing on these days: what came before is the opening balance, summed by the
    # database, and there are no lines.
    after = setup.statement("?from=9998-01-01&to=9998-01-02")
    assert (after["opening_balance"], after["closing_balance"], after["items"]) == (
        45_000, 45_000, [])
    before = setup.statement("?from=2001-01-01&to=2001-01-31")
    assert (before["opening_balance"], before["closing_balance"], before["items"]) == (
        0, 0, [])


def who_may_read_a_statement_and_what_is_refused(setup: Setup) -> None:
    for card in (OTHER, UNLINKED, "04C1DEADBEEF99"):  # another's, nobody's, no such card
        answer = setup.ask(card=card)
        assert (answer.status, answer.json()["error"]["code"]) == (404, "not_found"), card
    assert setup.ask(card="not-a-card").status == 400
    for role in ("finance", "admin"):
        assert setup.ask(token=setup.system.token(role)).status == 403, role
    assert setup.ask(token="").status == 401
    for query, code in (("?from=2026-13-01", "bad_date"), ("?to=yesterday", "bad_date"),
                        ("?from=2026-02-30", "bad_date"), ("?from=1999-12-31", "bad_date"),
                        ("?from=2026-12-02&to=2026-12-01", "bad_window"),
                        ("?from=2020-01-01&to=2026-12-01", "window_too_long")):
        answer = setup.ask(query)
        assert (answer.status, answer.json()["error"]["code"]) == (400, code), query


def the_staff_list_of_taps_shows_why_the_reader_refused_one(setup: Setup) -> None:
    listed = expect(Api(setup.system.http).get(f"/api/v1/cards/{CARD}/taps",
                                               setup.system.token("finance")), 200, "taps")
    assert [(t["tap_id"], t["accepted"], t["reason"]) for t in listed["taps"]] == [
        (setup.taps[0], True, None), (setup.taps[1], True, None), (setup.taps[2], True, None),
        (setup.taps[3], False, "not_authentic")]


def test_the_statement_from_outside(setup: Setup) -> None:
    """One test per database, so that its gateway and taps are set up once whatever
    pytest-xdist does with the module's tests."""
    line_by_line_in_both_languages(setup)
    a_window_of_service_dates_and_the_balance_before_it(setup)
    who_may_read_a_statement_and_what_is_refused(setup)
    the_staff_list_of_taps_shows_why_the_reader_refused_one(setup)
