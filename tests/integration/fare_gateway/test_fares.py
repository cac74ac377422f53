"""Fares in event time, through Mosquitto, the gateway and the database: late taps,
corrections, exits on distance routes, and the deny list reaching validators; and
`transit fares check` on policy files, as the installed command."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fare_gateway.adapters.models import TapRecord
from fare_gateway.fares.engine import PricedTap, price_day
from fare_gateway.fares.policy import builtin_policy
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from tests.conftest import System
from tests.support.clients import make_tap
from tests.unit.fare_gateway.fares.test_policy import BROKEN, CONTRACT_EXAMPLE, DISTANCE_RULE
from transit.denylist import DenyList
from transit.wire import Receipt

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

CARD = "04AA11BB22CC33"
T14 = 1764313202123  # 2025-11-28 14:00:02 WIB
MIN = 60_000


def _receipts(messages: list[tuple[str, bytes]]) -> dict[str, Receipt]:
    """The receipts among `messages`, by tap id."""
    return {r.tap_id: r for r in (Receipt.parse(p) for t, p in messages
                                  if t.endswith("/receipt"))}


def test_a_late_tap_is_priced_in_event_time_with_corrections(system: System) -> None:
    system.issue(CARD, 100_000)
    peer = system.peer()
    peer.subscribe(f"{system.prefix}/dev/+/receipt")
    # The passenger's day, in event time: 14:00 bus A (5,000), 15:00 bus B (transfer, 0),
    # 17:30 bus C (new journey, 5,000; the cap then stops at 10,000). Each bus has its
    # own validator.
    buses = {v: system.add_device(f"{v}-V", v) for v in ("BUS-A", "BUS-B", "BUS-C")}
    a, b, c = (make_tap(buses[v], f"{v}-V", 1, CARD, ts=ts, vehicle_id=v)
               for v, ts in (("BUS-A", T14), ("BUS-B", T14 + 60 * MIN),
                             ("BUS-C", T14 + 210 * MIN)))
    # Bus A was offline: its tap arrives last.
    peer.publish(system.tap_topic(b.device_id), b.encode())
    peer.wait_for(lambda m: len(m) >= 1)
    peer.publish(system.tap_topic(c.device_id), c.encode())
    peer.wait_for(lambda m: len(m) >= 2)
    first = _receipts(peer.messages)
    # Seen alone, B and C are two journeys: 5,000 each.
    assert (first[b.tap_id].fare, first[c.tap_id].fare) == (5000, 5000)
    peer.publish(system.tap_topic(a.device_id), a.encode())
    got = _receipts(peer.wait_for(lambda m: len(m) >= 3))
    assert got[a.tap_id].status == "charged" and got[a.tap_id].fare == 5000
    assert got[a.tap_id].balance == 90_000  # A 5,000 + B corrected to 0 + C 5,000

    status, body = system.http.get(f"/api/v1/cards/{CARD}/taps", system.token("finance"))
    assert status == 200
    assert [(t["tap_id"], t["fare"]) for t in body["taps"]] == [
        (a.tap_id, 5000), (b.tap_id, 0), (c.tap_id, 5000)]
    with session_factory(system.engine())() as s:
        kinds = s.execute(select(Entry.kind, Entry.tap_id, Entry.amount)
                          .where(Entry.card == CARD, Entry.kind != "topup")
                          .order_by(Entry.id)).all()
        assert check_invariants(s) == []
    # Nothing was edited: B's charge stands, and a correction entry refunds it.
    assert [tuple(k) for k in kinds] == [("fare", b.tap_id, 5000), ("fare", c.tap_id, 5000),
                                         ("fare", a.tap_id, 5000),
                                         ("correction", b.tap_id, -5000)]
    # The same final charges as the pure function of the day's taps.
    priced = price_day(builtin_policy(), "regular", [
        PricedTap(t.tap_id, t.device_id, t.seq, t.ts, t.vehicle_id, t.route_id, t.kind,
                  t.lat_e6, t.lon_e6) for t in (a, b, c)])
    assert {t["tap_id"]: t["fare"] for t in body["taps"]} == {
        k: v.amount for k, v in priced.charges.items()}
    # Re-sending the late tap changes nothing.
    peer.publish(system.tap_topic(a.device_id), a.encode())
    again = peer.wait_for(lambda m: len(m) >= 4)
    assert Receipt.parse(again[-1][1]).status == "duplicate"
    with session_factory(system.engine())() as s:
        assert s.scalar(select(func.count()).select_from(Entry).where(
            Entry.card == CARD)) == 5
    peer.close()


def test_an_exit_on_a_distance_route_refunds_the_difference(system: System,
                                                            tmp_path: Path) -> None:
    policy = tmp_path / "fares.toml"
    policy.write_text("""
currency = "IDR"
timezone = "Asia/Jakarta"
categories = ["regular"]
[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000 }
[[fares]]
routes = ["*"]
amount = { regular = 5000 }
""")
    system.gateway.stop()
    system.env["TRANSIT_FARES"] = str(policy)
    system.gateway.env = system.env
    system.gateway.start()
    system.issue(CARD, 50_000)
    train = "KRL-1-A"
    secret = system.add_device(train, "KRL-1")
    peer = system.peer()
    peer.subscribe(system.receipt_topic(train))
    entry = make_tap(secret, train, 1, CARD, route_id="KRL-BOGOR", vehicle_id="KRL-1")
    # 0.36 degrees of latitude further south: about 39.8 km.
    exit_ = make_tap(secret, train, 2, CARD, route_id="KRL-BOGOR",
                     vehicle_id="KRL-1", kind="exit", ts=entry.ts + 50 * MIN,
                     lat_e6=entry.lat_e6 - 360_000)
    peer.publish(system.tap_topic(train), entry.encode())
    got = _receipts(peer.wait_for(lambda m: len(m) >= 1))
    assert (got[entry.tap_id].fare, got[entry.tap_id].balance) == (13_000, 37_000)
    peer.publish(system.tap_topic(train), exit_.encode())
    got = _receipts(peer.wait_for(lambda m: len(m) >= 2))
    # 3,000 + 1,000 x ceil((39.8 - 25) / 10) = 5,000: the exit's receipt is the refund.
    assert (got[exit_.tap_id].status, got[exit_.tap_id].fare, got[exit_.tap_id].balance) == (
        "charged", -8000, 45_000)
    status, body = system.http.get(f"/api/v1/cards/{CARD}/taps", system.token("finance"))
    assert [(t["kind"], t["fare"]) for t in body["taps"]] == [("entry", 5000), ("exit", 0)]
    peer.close()


def test_the_deny_list_follows_balances_and_blocks(system: System) -> None:
    public_key = bytes.fromhex(system.transit("denylist", "key").stdout.strip())
    watcher = system.peer()
    watcher.subscribe(f"{system.prefix}/net/denylist/#")
    validator_view = DenyList()

    def settled(card: str, denied: bool, timeout: float = 2.5) -> float:
        """Seconds until the validator's copy shows the card (not) denied."""
        started = time.monotonic()
        seen = 0
        while time.monotonic() - started < timeout:
            msgs = list(watcher.messages)
            for _topic, payload in msgs[seen:]:
                validator_view.apply(payload, public_key)
            seen = len(msgs)
            if (card in validator_view) == denied:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{card} denied={card in validator_view}, wanted {denied}")

    system.issue(CARD, 0)  # issued empty: nothing to ride on
    settled(CARD, True)
    system.transit("cards", "topup", CARD, "7000", "--reference", "dl-1")
    settled(CARD, False)
    peer = system.peer()
    peer.subscribe(system.receipt_topic())
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 1, CARD).encode())
    peer.wait_for(lambda m: len(m) >= 1)
    # 7,000 - 5,000 = 2,000: still the early-morning fare, so still allowed.
    settled(CARD, False)
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 2, CARD,
                                              ts=T14 + 300 * MIN).encode())
    peer.wait_for(lambda m: len(m) >= 2)
    # Charged on a stale list: the balance goes below zero and the card on the list.
    took = settled(CARD, True)
    assert took < 2.0
    admin = system.token("admin")
    system.http.post(f"/api/v1/cards/{CARD}/topups", {"amount": 20_000, "reference": "dl-2"},
                     admin)
    settled(CARD, False)
    system.http.post(f"/api/v1/cards/{CARD}/block", {}, admin)
    settled(CARD, True)
    system.http.post(f"/api/v1/cards/{CARD}/unblock", {}, admin)
    settled(CARD, False)
    # A validator that connects now gets the whole list from the retained messages.
    late = DenyList()
    newcomer = system.peer()
    newcomer.subscribe(f"{system.prefix}/net/denylist/#")
    for _topic, payload in newcomer.wait_for(lambda m: len(m) >= 2):
        late.apply(payload, public_key)
    assert late.cards == validator_view.cards and late.version == validator_view.version
    with session_factory(system.engine())() as s:
        assert s.scalar(select(func.count()).select_from(TapRecord)) == 2
    for p in (watcher, peer, newcomer):
        p.close()


# -- `transit fares check` ------------------------------------------------------------

TRANSIT = Path(sys.executable).parent / "transit"


def fares_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TRANSIT), "fares", "check", str(path)], capture_output=True,
                          text=True, timeout=60)


def test_fares_check_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(CONTRACT_EXAMPLE.replace("[transfers]", DISTANCE_RULE + "\n[transfers]"))
    result = fares_check(good)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("case", ["amount_float", "bad_toml", "unknown_timezone",
                                  "max_below_base"])
def test_fares_check_refuses_a_bad_file_in_one_line(case: str, tmp_path: Path) -> None:
    text, field = BROKEN[case]
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = fares_check(bad)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert field in lines[0]
    assert str(bad) in lines[0]


def test_fares_check_on_a_missing_file(tmp_path: Path) -> None:
    result = fares_check(tmp_path / "missing.toml")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert len([line for line in out.splitlines() if line.strip()]) == 1, out
