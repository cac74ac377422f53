"""A rider's statement over weeks, from outside (contract sections 5 and 7): taps over
MQTT to a real `transit gateway`, then the statement and a dispute's evidence over HTTP,
on PostgreSQL and on SQLite.

The gateway runs a fare policy of its own: 5000 a ride on any route, no transfers, a
weekly cap of 12,000; route KRL-BOGOR by distance, 3000 up to 25 km and 1000 per
started 10 km beyond, at most 9000, the card's next entry within 120 minutes standing
in for a missing tap-out. The days are the weeks before this one (W-2, W-1), by hand:

    W-2 Fri 08:00 KRL-BOGOR, no tap-out: the maximum           - 9,000
    W-2 Fri 08:50 a bus 40 km on, a new journey                - 5,000
        ... which stands in for the tap-out: 3000 + 1000 * ceil(15 / 10) = 5000,
        the correction gives back                              + 4,000
    W-1 Mon 08:00                                              - 5,000
    W-1 Tue 08:00 (the week held 5000)                         - 5,000
    W-1 Tue 18:00 only 12,000 - 10,000 is left                 - 2,000
    W-1 Mon 18:00, from a bus offline until now                - 5,000
        ... so Tuesday starts from 10,000: 08:00 costs 2000    + 3,000
        and 18:00 nothing                                      + 2,000
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.clients import make_tap
from tests.support.riders import call, issue, link, rider, rider_system
from transit.wire import Receipt, Tap

CARD = "04C1CA9CA9CA90"
WIB = ZoneInfo("Asia/Jakarta")
BUS_B = ("SBY-0077-B", "SBY-0077")
TRAIN = ("KRL-1001-A", "KRL-1001")
START = (-6_200_000, 106_800_000)  # on the meridian 106.8 E, south of Jakarta
KM_40 = (-6_200_000 - 361_700, 106_800_000)  # 40.0 km due south of START
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
POLICY = """
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular"]

[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 9000 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 120 }

[[fares]]
routes = ["*"]
amount = { regular = 5000 }

[caps]
weekly = { regular = 12000 }
"""


@dataclass
class Weeks:
    system: System
    rider: str
    first: date  # W-2's Monday
    late_monday: date  # W-1's Monday, whose late tap re-priced its Tuesday
    taps: dict[str, str]  # name -> tap id
    receipts: dict[str, Receipt]


def local_ms(day: date, hour: int, minute: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=WIB).timestamp()
               * 1000)


def sent(system: System, tap: Tap) -> Receipt:
    """One tap over MQTT, and its receipt: one at a time, so that the gateway prices them
    in the order sent."""
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic(tap.device_id))
        peer.publish(system.tap_topic(tap.device_id), tap.encode())
        (_topic, payload), = peer.wait_for(lambda m: len(m) >= 1)
        return Receipt.parse(payload)
    finally:
        peer.close()


# On PostgreSQL: the statement's SQL on SQLite (the week and month read included) is
# covered by test_statement.py, which runs on both.
@pytest.fixture(scope="module")
def weeks(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weeks]:
    tmp = tmp_path_factory.mktemp("statement-caps")
    url = create_pg_database()
    (tmp / "fares.toml").write_text(POLICY)
    try:
        with rider_system(url, broker, tmp, TRANSIT_FARES=str(tmp / "fares.toml"),
                          TRANSIT_TAP_MAX_AGE_DAYS="30") as system:
            bus_a = (system.secret, system.device_id)
            bus_b = (system.add_device(*BUS_B), BUS_B[0])
            train = (system.add_device(*TRAIN), TRAIN[0])
            admin = system.token("admin")
            code = issue(system, admin, CARD, 50_000)
            token = rider(system)[1]
            assert link(system, token, CARD, code)[0] == 201

            # Jakarta's service day now (from 03:00), its week's Monday, and two before.
            today = (datetime.now(WIB) - timedelta(hours=3)).date()
            this_monday = today - timedelta(days=today.weekday())
            first, monday = this_monday - timedelta(days=14), this_monday - timedelta(days=7)
            friday, tuesday = first + timedelta(days=4), monday + timedelta(days=1)
            taps = {
                "train": make_tap(*train, 1, CARD, ts=local_ms(friday, 8), route_id="KRL-BOGOR",
                                  vehicle_id=TRAIN[1], lat_e6=START[0], lon_e6=START[1]),
                "onward": make_tap(*bus_b, 1, CARD, ts=local_ms(friday, 8, 50),
                                   vehicle_id=BUS_B[1], lat_e6=KM_40[0], lon_e6=KM_40[1]),
                "monday": make_tap(*bus_a, 1, CARD, ts=local_ms(monday, 8)),
                "tuesday": make_tap(*bus_a, 2, CARD, ts=local_ms(tuesday, 8)),
                "evening": make_tap(*bus_a, 3, CARD, ts=local_ms(tuesday, 18)),
                "late": make_tap(*bus_b, 2, CARD, ts=local_ms(monday, 18), vehicle_id=BUS_B[1]),
            }
            receipts = {name: sent(system, t) for name, t in taps.items()}
            yield Weeks(system, token, first, monday,
                        {name: t.tap_id for name, t in taps.items()}, receipts)
    finally:
        drop_pg_database(url)


def statement(weeks: Weeks, lang: str) -> dict[str, Any]:
    status, body = weeks.system.http.request(
        "GET", f"/api/v1/rider/cards/{CARD}/statement?from={weeks.first.isoformat()}",
        token=weeks.rider, headers={"Accept-Language": lang})
    assert status == 200, body
    return dict(body)


def test_the_weekly_cap_and_an_inferred_exit_explained(weeks: Weeks) -> None:
    assert {name: (r.status, r.fare) for name, r in weeks.receipts.items()} == {
        "train": ("charged", 9000), "onward": ("charged", 5000),
        "monday": ("charged", 5000), "tuesday": ("charged", 5000),
        "evening": ("charged", 2000), "late": ("charged", 5000)}
    got = statement(weeks, "en")
    t = weeks.taps
    assert [(i["type"], i["amount"], i["tap_id"]) for i in got["items"]] == [
        ("tap", -9000, t["train"]), ("tap", -5000, t["onward"]),
        ("tap", -5000, t["monday"]), ("tap", -5000, t["late"]),
        ("tap", -5000, t["tuesday"]), ("tap", -2000, t["evening"]),
        ("topup", 50_000, None), ("correction", 4000, t["train"]),
        ("correction", 3000, t["tuesday"]), ("correction", 2000, t["evening"])]
    assert (got["opening_balance"], got["closing_balance"]) == (0, 28_000)
    full = "New journey: the full fare of Rp5.000 (the standard fare)"
    late = weeks.late_monday
    moved = (f"A tap made on {late.day} {MONTHS[late.month - 1]} {late.year} at 18:00 on "
             f"route R1 that reached us later changed what was left of the weekly cap: "
             f"n{full[1:]}; the weekly cap was reached, so ")
    assert [i["explanation"] for i in got["items"]] == [
        "New journey: the maximum fare of Rp9.000, as there was no tap-out (the fare of "
        "route KRL-BOGOR).",
        f"{full}.", f"{full}.", f"{full}.", f"{full}.",
        f"{full}; the weekly cap was reached, so only Rp2.000 was charged (Rp3.000 waived).",
        f"Top-up of Rp50.000 (reference init-{CARD}).",
        "There was no tap-out, so this ride was re-priced by distance to where you next "
        "boarded, at 08:50 on route R1 (40.0 km): it now costs Rp5.000; Rp4.000 back to "
        "the card.",
        f"{moved}only Rp2.000 was charged (Rp3.000 waived); Rp3.000 back to the card.",
        f"{moved}nothing was charged (Rp5.000 waived); Rp2.000 back to the card."]
    indonesian = [i["explanation"] for i in statement(weeks, "id")["items"]]
    assert indonesian[5] == ("Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas "
                             "mingguan tercapai, jadi hanya Rp2.000 yang ditagih (Rp3.000 "
                             "dibebaskan).")
    assert indonesian[7].startswith("Tidak ada tap keluar, jadi perjalanan ini dihitung "
                                    "ulang menurut jarak sampai tempat Anda naik "
                                    "berikutnya, pukul 08:50 di rute R1 (40,0 km)")
    assert "mengubah sisa batas mingguan" in indonesian[8], indonesian[8]

    # The dispute's evidence prices the day from its week, as the statement does.
    status, opened = call(weeks.system, "POST", "/api/v1/rider/disputes", {
        "card": CARD, "tap_id": t["evening"], "category": "wrong_fare",
        "message": "Kenapa gratis?"}, weeks.rider)
    assert status == 201, opened
    status, shown = weeks.system.http.request(
        "GET", f"/api/v1/disputes/{opened['dispute_id']}",
        token=weeks.system.token("ops"), headers={"Accept-Language": "en"})
    assert status == 200, shown
    assert shown["evidence"]["explanation"] == (
        f"{full}; the weekly cap was reached, so nothing was charged (Rp5.000 waived).")
