"""A card's taps over HTTP (`GET /api/v1/cards/{card}/taps`), from outside: taps sent
through the broker to `transit gateway`, then listed with what each costs now."""

from __future__ import annotations

from tests.conftest import System
from tests.integration.fare_gateway.http.client import Api, expect
from tests.support.clients import TS_BASE, make_tap
from transit.wire import Receipt

OTHER = "04FFEEDDCCBBAA"


def test_taps_of_a_card(system: System) -> None:
    api = Api(system.http)
    finance = system.token("finance")
    system.issue(OTHER, 50_000)
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic())
        taps = [make_tap(system.secret, system.device_id, 1, OTHER),
                make_tap(system.secret, system.device_id, 2, OTHER, ts=TS_BASE + 60_000,
                         accepted=False, reason="denylisted")]
        for tap in taps:
            peer.publish(system.tap_topic(), tap.encode())
        got = [Receipt.parse(p) for _t, p in peer.wait_for(lambda m: len(m) >= 2)]
    finally:
        peer.close()
    charged = {r.seq: r for r in got}
    assert charged[1].status == "charged" and charged[1].fare > 0, got

    listed = expect(api.get(f"/api/v1/cards/{OTHER}/taps", finance), 200, "taps")
    rows = listed["taps"]
    assert [r["tap_id"] for r in rows] == [t.tap_id for t in taps], rows
    for row, tap in zip(rows, taps, strict=True):
        assert {"tap_id", "ts", "device_id", "vehicle_id", "route_id", "kind", "accepted",
                "fare"} <= set(row), row
        assert (row["ts"], row["device_id"], row["vehicle_id"], row["route_id"], row["kind"],
                row["accepted"]) == (tap.ts, tap.device_id, tap.vehicle_id, tap.route_id,
                                     tap.kind, tap.accepted), row
        assert isinstance(row["fare"], int) and not isinstance(row["fare"], bool)
    assert rows[0]["fare"] == charged[1].fare
    assert rows[1]["fare"] == 0  # denied at the reader: recorded, never charged
    card = expect(api.get(f"/api/v1/cards/{OTHER}", finance), 200, "card")
    assert card["balance"] == 50_000 - charged[1].fare
