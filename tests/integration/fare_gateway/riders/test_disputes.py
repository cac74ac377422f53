"""Disputes from outside (contract section 7), on one gateway over PostgreSQL and one
over SQLite: riders open them on charged taps and days, the 48-hour clock judged through
`as_of`, the evidence (the signed tap put back together and verified, its receipt, the
vehicle's positions around it, from its taps and its GPS trail, the validator), answers
by role, refunds bounded and posted once, a charged_twice the ledger proves answered at
once (once only), the refunds in the settlement and `transit reconcile` clean, the
backlog on /metrics, and the limits on days and on unanswered disputes.

One test per database, in phases that build on one another: the gateway and its world
are built once per database however pytest-xdist spreads the tests. Taps and positions
go over MQTT to the gateway, accounts and cards through the API; only what no request
can make is written to the database by hand: a double charge in the ledger, and
disputes opened a day or two ago (or many at once)."""

from __future__ import annotations

import csv
import io
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from fare_gateway.adapters.models import DenyEntry, Dispute
from fare_gateway.fares.policy import parse_policy
from fare_gateway.riders.times import parse_instant
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from ledger.domain import fare_entry
from ledger.services import Ledger
from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.integration.fare_gateway.http.client import Api, expect
from tests.support.clients import make_tap
from tests.support.fare_periods import count_in_periods
from tests.support.faults import wait_until
from tests.support.riders import issue, link, rider, rider_system
from transit.wire import Position, Receipt

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

H = 3_600_000
MIN = 60_000
A, B, C, D, X = ("04D15A0000A1", "04D15B0000B2", "04D15C0000C3", "04D15D0000D4",
                 "04D15E0000E4")
# The built-in policy with its early fare (05:00-07:00) on a route no tap here takes:
# the taps are made around "now", and must cost the same whenever the suite runs, while
# the lowest fare (the deny list's threshold) stays the built-in one.
POLICY_TEXT = """
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "03:00"
repeat_tap_seconds = 120
categories = ["regular", "student", "senior"]
default_category = "regular"

[[fares]]
routes = ["EARLY"]
start = "05:00"
end = "07:00"
amount = { regular = 2000, student = 1000, senior = 0 }

[[fares]]
routes = ["*"]
amount = { regular = 5000, student = 2500, senior = 0 }

[transfers]
window_minutes = 120
max_transfers = 2

[caps]
daily = { regular = 10000, student = 5000 }
weekly = { regular = 50000 }
monthly = { regular = 180000 }
"""
POLICY = parse_policy(tomllib.loads(POLICY_TEXT))


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def system(request: pytest.FixtureRequest, broker: Broker,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One gateway per database for the module: on SQLite the locks differ (a write
    transaction holds the whole database), and reading evidence must take none."""
    folder = tmp_path_factory.mktemp("disputes")
    url = create_pg_database() if request.param == "postgresql" else \
        f"sqlite:///{folder}/transit.db"
    try:
        (folder / "fares.toml").write_text(POLICY_TEXT)
        with rider_system(url, broker, folder, TRANSIT_AUTH_FAILURES="100000/60",
                          TRANSIT_FARES=str(folder / "fares.toml")) as system:
            yield system
    finally:
        if request.param == "postgresql":
            drop_pg_database(url)


@pytest.fixture(scope="module")
def world(system: System) -> dict[str, Any]:
    """Two riders with a card each (and a third card, C, of the first, a fourth, D, of
    the second), taps over MQTT around one tap of A's: the tokens, the receipts by seq
    and the taps' times."""
    admin = system.token("admin")
    first, second = rider(system)[1], rider(system)[1]
    for card, token, balance in ((A, first, 20_000), (B, second, 20_000), (C, first, 2_000),
                                 (D, second, 20_000)):
        status, body = link(system, token, card, issue(system, admin, card, balance))
        assert status == 201, body
    issue(system, admin, X, 50_000)
    now = int(time.time() * 1000)
    t = now - 20 * MIN  # A's disputed tap; the others of the bus around it
    taps = [make_tap(system.secret, system.device_id, 1, X, ts=t - 15 * MIN, lat_e6=-7_250_001),
            make_tap(system.secret, system.device_id, 2, X, ts=t - 5 * MIN, lat_e6=-7_250_002),
            make_tap(system.secret, system.device_id, 3, A, ts=t, lat_e6=-7_250_003,
                     extra={"firmware": "2.4.1"}),
            make_tap(system.secret, system.device_id, 4, X, ts=t + 5 * MIN, lat_e6=-7_250_004),
            make_tap(system.secret, system.device_id, 5, B, ts=t + 6 * MIN),
            make_tap(system.secret, system.device_id, 6, B, ts=t + 7 * MIN, vehicle_id="SBY-9",
                     accepted=False, reason="denylisted"),
            make_tap(system.secret, system.device_id, 7, C, ts=t + 8 * MIN),
            # B again, a transfer: free by the rules
            make_tap(system.secret, system.device_id, 8, B, ts=t + 9 * MIN),
            # D's, a full fare (beyond the 10 minutes around A's)
            make_tap(system.secret, system.device_id, 9, D, ts=t + 11 * MIN)]
    # The bus's GPS trail: one point within 10 minutes of A's tap, one outside.
    positions = [Position(device_id=system.device_id, vehicle_id="SBY-0042", route_id="R1",
                          ts=ts, lat_e6=lat, lon_e6=112_750_000).signed(system.secret)
                 for ts, lat in ((t - 12 * MIN, -7_250_200), (t + MIN, -7_250_100))]
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic())
        for tap in taps:
            peer.publish(system.tap_topic(), tap.encode())
        for position in positions:
            peer.publish(f"{system.prefix}/dev/{system.device_id}/pos", position.encode())
        got = {r.seq: r for r in (Receipt.parse(p) for _, p in
                                  peer.wait_for(lambda m: len(m) >= len(taps)))}
    finally:
        peer.close()

    def on_the_map() -> bool:
        status, body = system.http.get("/api/v1/vehicles", token=admin)
        return status == 200 and any(v.get("ts") == positions[-1].ts
                                     for v in body["vehicles"])

    wait_until(on_the_map, 20, "the bus's last position")
    assert [got[s].status for s in (3, 5, 7, 8, 9)] == ["charged"] * 5, got
    assert got[9].fare > 0, got
    assert got[8].fare == 0, got
    assert got[6].status == "rejected"  # another vehicle's: not a tap of B to dispute
    return {"admin": admin, "first": first, "second": second, "receipts": got,
            "taps": {tap.seq: tap for tap in taps}, "ops": system.token("ops"),
            "finance": system.token("finance")}


def api(system: System) -> Api:
    return Api(system.http)


def open_dispute(system: System, token: str, status: int = 201, **body: Any) -> Any:
    return expect(api(system).post("/api/v1/rider/disputes", body, token), status,
                  f"open {body}")


def listed(system: System, token: str, query: str) -> list[int]:
    body = expect(api(system).get(f"/api/v1/disputes?{query}", token), 200, query)
    return [d["dispute_id"] for d in body["disputes"]]


def balance(system: System, token: str, card: str) -> int:
    cards = expect(api(system).get("/api/v1/rider/cards", token), 200, "cards")["cards"]
    return int(next(c["balance"] for c in cards if c["card"] == card))


def test_disputes_from_opening_to_settlement(system: System, world: dict[str, Any]) -> None:
    did = opened_and_judged_with_its_evidence(system, world)
    refunds = answered_by_role_bounded_and_posted_once(system, world, did)
    refunds.update(proved_double_charge_refunded_once_and_counted(system, world))
    settled_and_reconciled(system, world["finance"], refunds)
    days_and_pending_disputes_limited(system, world)


def opened_and_judged_with_its_evidence(system: System, world: dict[str, Any]) -> int:
    """A rider opens a dispute; staff judge it as of any time and read its evidence."""
    first, second, ops = world["first"], world["second"], world["ops"]
    tap = world["taps"][3]
    opened = open_dispute(system, first, card=A, tap_id=tap.tap_id, category="wrong_fare",
                          message="Saya hanya naik sekali.")
    assert {k: opened[k] for k in ("card", "tap_id", "category", "status", "decision",
                                   "amount", "answer", "answered_at")} == {
        "card": A, "tap_id": tap.tap_id, "category": "wrong_fare", "status": "open",
        "decision": None, "amount": None, "answer": None, "answered_at": None}, opened
    created = parse_instant(opened["created_at"])
    assert created is not None and abs(created - time.time() * 1000) < 60_000
    assert parse_instant(opened["escalate_at"]) == created + 24 * H
    assert parse_instant(opened["due_at"]) == created + 48 * H
    assert opened["service_date"] == POLICY.service_date(tap.ts).isoformat()
    did = opened["dispute_id"]

    # One unanswered dispute per tap; only the card's own taps, only the account's cards.
    assert open_dispute(system, first, 409, card=A, tap_id=tap.tap_id, category="other",
                        message="lagi")["error"]["code"] == "dispute_pending"
    for token, body in ((first, {"card": A, "tap_id": world["taps"][5].tap_id}),  # B's tap
                        (first, {"card": A, "tap_id": world["taps"][6].tap_id}),  # rejected
                        (first, {"card": A, "tap_id": "SBY-0042-A:999"}),
                        (second, {"card": A, "tap_id": tap.tap_id}),  # another account's
                        (second, {"card": "04FFFFFFFFFF"})):
        assert open_dispute(system, token, 404, category="other", message="?",
                            **body)["error"]["code"] == "not_found", body
    for body, code in (({"category": "lost"}, "bad_category"), ({"message": ""}, "bad_message"),
                       ({"message": "x" * 2001}, "bad_message"), ({"card": "nope"}, "bad_card"),
                       ({"date": "2025-02-29"}, "bad_date"), ({"date": "2999-01-01"}, "bad_date"),
                       ({"date": "1971-01-02"}, "bad_date"),
                       ({"tap_id": tap.tap_id, "date": "2025-01-01"}, "bad_date"),
                       ({"tap_id": "not a tap"}, "bad_tap_id")):
        full = {"card": B, "category": "other", "message": "?", **body}
        assert open_dispute(system, second, 422, **full)["error"]["code"] == code, body

    # The rider sees their own, the other rider not; staff endpoints refuse rider tokens.
    mine = expect(api(system).get("/api/v1/rider/disputes", first), 200, "own")["disputes"]
    assert [d for d in mine if d["dispute_id"] == did] == [opened], mine
    theirs = expect(api(system).get("/api/v1/rider/disputes", second), 200, "own")
    assert did not in [d["dispute_id"] for d in theirs["disputes"]]
    for method, path in (("GET", "/api/v1/disputes"), ("GET", f"/api/v1/disputes/{did}"),
                         ("POST", f"/api/v1/disputes/{did}/answer")):
        status, body = api(system).request(method, path, {"decision": "reject",
                                                          "message": "x"}, first)
        assert (status, body["error"]["code"]) == (403, "forbidden"), (path, body)
    assert api(system).get("/api/v1/rider/disputes", ops)[0] == 403

    # The clock, through as_of, at each boundary (in ms, ISO with an offset, and ISO Z).
    esc, due = created + 24 * H, created + 48 * H
    for as_of, state in ((created, "open"), (esc - 1, "open"), (esc, "escalated"),
                         (due - 1, "escalated"), (due, "overdue"), (due + 500 * H, "overdue")):
        assert did in listed(system, ops, f"status={state}&as_of={as_of}"), (as_of, state)
        for other in {"open", "escalated", "overdue", "answered"} - {state}:
            assert did not in listed(system, ops, f"status={other}&as_of={as_of}")
        body = expect(api(system).get(f"/api/v1/disputes?as_of={as_of}", ops), 200, "all")
        assert {d["dispute_id"]: d["status"] for d in body["disputes"]}[did] == state
    assert did not in listed(system, ops, f"as_of={created - 1}")  # not opened yet
    assert did in listed(system, world["finance"], "status=escalated&as_of="
                         + time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((esc + 1000) / 1000))
                         + ".000%2B00:00")
    for query in ("status=closed", "as_of=yesterday", "as_of=2025-02-29T00:00:00Z", "as_of="):
        status, body = api(system).get(f"/api/v1/disputes?{query}", ops)
        assert status == 400 and body["error"]["code"] in ("bad_status", "bad_as_of"), query

    # The evidence: the tap as signed, verified again; its receipt; the bus around it.
    shown = expect(api(system).get(f"/api/v1/disputes/{did}", ops), 200, "evidence")
    evidence = shown["evidence"]
    assert set(evidence) == {"tap", "receipt", "positions", "validator", "explanation"}
    assert evidence["tap"]["message"] == {**tap.to_dict()} and \
        evidence["tap"]["canonical"] == tap.encode().decode()
    assert evidence["tap"]["message"]["firmware"] == "2.4.1"
    assert (evidence["tap"]["signature_valid"], evidence["tap"]["signed_with"]) == (
        True, "current")
    assert "secret" not in str(evidence).lower()
    fare = world["receipts"][3].fare
    assert {k: evidence["receipt"][k] for k in ("status", "fare", "reason", "signed")} == {
        "status": "charged", "fare": fare, "reason": None, "signed": False}
    # seq 2, 3 and 4 are within 10 minutes, seq 1 (15 min before) is not; B's at +6 min
    # too; the rejected tap named another vehicle. The trail's point at +1 min is there,
    # in time order, the one at -12 min not.
    positions = evidence["positions"]
    assert [p["lat_e6"] for p in positions][:4] == [-7_250_002, -7_250_003, -7_250_100,
                                                    -7_250_004], positions
    assert [p["source"] for p in positions] == ["tap", "tap", "track"] + ["tap"] * 4
    assert positions[2]["device_id"] is None and positions[1]["device_id"] == system.device_id
    assert [parse_instant(p["at"]) for p in positions] == sorted(
        parse_instant(p["at"]) for p in positions)
    validator = evidence["validator"]
    assert (validator["device_id"], validator["vehicle_id"], validator["status"]) == (
        system.device_id, "SBY-0042", "active")
    assert (validator["previous_tap"]["seq"], validator["next_tap"]["seq"]) == (2, 4)
    assert not validator["seq_gap_before"] and not validator["seq_gap_after"]
    assert evidence["explanation"].startswith("Perjalanan baru"), evidence
    english = system.http.request("GET", f"/api/v1/disputes/{did}", token=ops,
                                  headers={"Accept-Language": "en-GB,en;q=0.9"})[1]
    assert english["evidence"]["explanation"].startswith("New journey"), english
    assert api(system).get("/api/v1/disputes/987654321", ops)[0] == 404
    return int(did)


def answered_by_role_bounded_and_posted_once(system: System, world: dict[str, Any],
                                             did: int) -> dict[str, int]:
    """Answers by role, refunds bounded and posted once: the refund entries it made."""
    first, second = world["first"], world["second"]
    ops, finance = world["ops"], world["finance"]
    fare = world["receipts"][3].fare
    tap = world["taps"][3]
    answer = f"/api/v1/disputes/{did}/answer"
    refused = api(system).post(answer, {"decision": "refund", "amount": 1000,
                                        "message": "Maaf."}, ops)
    assert (refused[0], refused[1]["error"]["code"]) == (403, "forbidden"), refused
    over = expect(api(system).post(answer, {"decision": "refund", "amount": fare + 1,
                                            "message": "Maaf."}, finance), 422, "over")
    assert over["error"]["code"] == "over_bound" and f"at most {fare}" in \
        over["error"]["message"], over
    for body in ({"decision": "refund", "message": "x"}, {"decision": "refund", "amount": 0,
                                                           "message": "x"},
                 {"decision": "refund", "amount": 100, "message": ""},
                 {"decision": "later", "message": "x"}):
        assert api(system).post(answer, body, finance)[0] == 422, body

    before = balance(system, first, A)
    done = expect(api(system).post(answer, {"decision": "refund", "amount": 1000,
                                            "message": "Dikembalikan sebagian."}, finance),
                  200, "refund")
    assert (done["status"], done["decision"], done["amount"], done["answer"]) == (
        "answered", "refund", 1000, "Dikembalikan sebagian."), done
    assert balance(system, first, A) == before + 1000
    again = api(system).post(answer, {"decision": "reject", "message": "lagi"}, finance)
    assert (again[0], again[1]["error"]["code"]) == (409, "already_answered"), again
    assert did in listed(system, ops, f"status=answered&as_of={done['answered_at']}")
    assert did not in listed(system, ops,
                             f"status=answered&as_of={parse_instant(done['answered_at']) - 1}")
    mine = expect(api(system).get("/api/v1/rider/disputes", first), 200, "own")["disputes"]
    assert next(d for d in mine if d["dispute_id"] == did) == done

    # Answered, the tap may be disputed again: what is left of its charge bounds it.
    again = open_dispute(system, first, card=A, tap_id=tap.tap_id, category="wrong_fare",
                         message="Masih salah.")["dispute_id"]
    over = expect(api(system).post(f"/api/v1/disputes/{again}/answer", {
        "decision": "refund", "amount": fare, "message": "x"}, finance), 422, "bound")
    assert f"at most {fare - 1000}" in over["error"]["message"], over
    expect(api(system).post(f"/api/v1/disputes/{again}/answer", {
        "decision": "refund", "amount": fare - 1000, "message": "Sisanya."}, finance), 200, "rest")
    assert balance(system, first, A) == before + fare

    # Ops reject; two answers at once: exactly one wins.
    day = open_dispute(system, second, card=B, category="other", message="Hari ini aneh.")
    assert (day["tap_id"], day["service_date"]) == (
        None, POLICY.service_date(int(time.time() * 1000)).isoformat())
    rejected = expect(api(system).post(f"/api/v1/disputes/{day['dispute_id']}/answer", {
        "decision": "reject", "message": "Tarif sudah benar."}, ops), 200, "reject")
    assert (rejected["decision"], rejected["amount"]) == ("reject", 0)
    raced = open_dispute(system, second, card=B, tap_id=world["taps"][5].tap_id,
                         category="wrong_fare", message="?")["dispute_id"]
    start = threading.Barrier(2)
    answers: list[int] = []

    def answer_once(body: dict[str, Any]) -> None:
        start.wait(timeout=30)
        answers.append(api(system).post(f"/api/v1/disputes/{raced}/answer", body, finance)[0])

    threads = [threading.Thread(target=answer_once, args=(body,)) for body in (
        {"decision": "refund", "amount": 500, "message": "ya"},
        {"decision": "reject", "message": "tidak"})]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [200, 409], answers

    # A day dispute: its bound is the day's charges; the refund lifts C off the deny list.
    c_fare = world["receipts"][7].fare
    engine = system.engine()
    try:
        sessions = session_factory(engine)
        with sessions() as s:
            assert s.get(DenyEntry, C) is not None  # 2,000 less its fare: below the lowest
        cday = open_dispute(system, first, card=C, date=POLICY.service_date(
            world["taps"][7].ts).isoformat(), category="wrong_fare", message="?")
        over = expect(api(system).post(f"/api/v1/disputes/{cday['dispute_id']}/answer", {
            "decision": "refund", "amount": c_fare + 1, "message": "x"}, finance), 422, "day")
        assert f"at most {c_fare}" in over["error"]["message"]
        expect(api(system).post(f"/api/v1/disputes/{cday['dispute_id']}/answer", {
            "decision": "refund", "amount": c_fare, "message": "Dikembalikan."}, finance),
            200, "day refund")
        made = [did, again, raced, cday["dispute_id"]]
        with sessions() as s:
            assert s.get(DenyEntry, C) is None
            refunds = refund_entries(s, made)
            raced_refund = s.scalar(select(Dispute.decision).where(Dispute.id == raced))
    finally:
        engine.dispose()
    expected = [(f"dispute:{did}", -1000), (f"dispute:{again}", -(fare - 1000))]
    if raced_refund == "refund":
        expected.append((f"dispute:{raced}", -500))
    expected.append((f"dispute:{cday['dispute_id']}", -c_fare))
    assert [(r, a) for r, a, _, _ in refunds] == expected, refunds
    assert {t for _, _, t, _ in refunds} == {None} and {r for *_, r in refunds} == {"R1"}
    return dict(expected)


def refund_entries(session: Any, dispute_ids: list[int]) -> list[Any]:
    """The refund entries of these disputes, in posting order: (reference, amount,
    tap_id, route_id)."""
    return list(session.execute(
        select(Entry.reference, Entry.amount, Entry.tap_id, Entry.route_id)
        .where(Entry.kind == "refund",
               Entry.reference.in_([f"dispute:{d}" for d in dispute_ids]))
        .order_by(Entry.id)).all())


def settled_and_reconciled(system: System, finance: str, refunds: dict[str, int]) -> None:
    """The next settlement's refund lines: negative, summing to the refunds made, on the
    disputed taps' operators and routes; and `transit reconcile` clean."""
    business_day = POLICY.service_date(int(time.time() * 1000)).isoformat()
    status, lines = system.http.get(f"/api/v1/settlements/{business_day}/lines.csv", finance)
    assert status == 200, lines
    rows = list(csv.DictReader(io.StringIO(lines.decode())))
    fares = {(r["operator_id"], r["route_id"]) for r in rows if r["line_type"] == "fare"}
    refund_lines = [r for r in rows if r["line_type"] == "refund"]
    # Every refund of this gateway's database is one of these (its world is its own).
    assert sum(int(r["amount"]) for r in refund_lines) == sum(refunds.values()) < 0, rows
    assert {(r["operator_id"], r["route_id"]) for r in refund_lines} <= fares, rows
    reconciled = system.transit("reconcile", check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def proved_double_charge_refunded_once_and_counted(system: System, world: dict[str, Any]
                                                   ) -> dict[str, int]:
    """A double charge the ledger proves is refunded at once, and once only; the backlog
    on /metrics. The refund entry it made."""
    second = world["second"]
    tap = world["taps"][9]  # D's, charged a full fare
    fare = world["receipts"][9].fare
    day = POLICY.service_date(tap.ts).isoformat()
    # Not proved: the rules' price is what the ledger holds, so a person answers.
    plain = open_dispute(system, second, card=D, date=day, category="charged_twice",
                         message="?")
    assert (plain["status"], plain["tap_id"]) == ("open", None), plain
    engine = system.engine()
    try:
        sessions = session_factory(engine)
        # What a double charge leaves: the ledger holding the fare twice for the tap.
        with sessions.begin() as s:
            Ledger(engine, POLICY.currency).post(s, [fare_entry(
                tap_id=tap.tap_id, card=D, fare=fare, digest="double", currency="IDR",
                operator_id="unassigned", route_id="R1", category="regular",
                service_date=day, kind="correction", idem_key=f"corr:{tap.tap_id}:double")])
            # ... and counting it in the card's week and month, as a gateway that
            # charged it twice would have (reconcile checks the totals against entries).
            count_in_periods(s, D, day, fare)
        before = balance(system, second, D)
        proved = open_dispute(system, second, card=D, tap_id=tap.tap_id,
                              category="charged_twice", message="Terpotong dua kali!")
        assert (proved["status"], proved["decision"], proved["amount"]) == (
            "answered", "refund", fare), proved
        assert proved["answer"].startswith("Dijawab otomatis"), proved
        assert balance(system, second, D) == before + fare
        english = system.http.request("GET", "/api/v1/rider/disputes", token=second,
                                      headers={"Accept-Language": "en"})[1]["disputes"]
        assert next(d for d in english if d["dispute_id"] == proved["dispute_id"])[
            "answer"].startswith("Answered automatically")
        # Asked again, the overcharge still shows in the ledger (a refund names no tap)
        # and the bound (twice the fare charged, less one refunded) would allow it: but
        # it was refunded, so a person answers and nothing is paid twice.
        repeat = open_dispute(system, second, card=D, tap_id=tap.tap_id,
                              category="charged_twice", message="Terpotong dua kali lagi!")
        assert (repeat["status"], repeat["amount"]) == ("open", None), repeat
        assert balance(system, second, D) == before + fare
        with sessions() as s:
            assert [(r, a) for r, a, *_ in refund_entries(
                s, [plain["dispute_id"], proved["dispute_id"], repeat["dispute_id"]])] == [
                (f"dispute:{proved['dispute_id']}", -fare)]

        # The backlog on /metrics: disputes opened a day and two days ago, by hand.
        now = int(time.time() * 1000)
        with sessions.begin() as s:
            for age in (30 * H, 50 * H):
                s.add(Dispute(account_id=s.scalar(select(func.min(Dispute.account_id))),
                              card=B, tap_id=None, service_date="2025-11-28",
                              category="other", message=f"aged {uuid.uuid4().hex}",
                              created_ms=now - age))
        with sessions() as s:
            unanswered = s.scalar(select(func.count()).select_from(Dispute).where(
                Dispute.answered_ms.is_(None)))
    finally:
        engine.dispose()
    status, text = system.http.get("/metrics")
    assert status == 200
    figures = dict(line.rsplit(" ", 1) for line in text.decode().splitlines()
                   if line.startswith("transit_disput"))
    assert float(figures['transit_disputes{state="escalated"}']) == 1
    assert float(figures['transit_disputes{state="overdue"}']) == 1
    assert float(figures['transit_disputes{state="open"}']) == unanswered - 2
    oldest = float(figures["transit_dispute_oldest_unanswered_seconds"])
    assert 50 * 3600 <= oldest < 50 * 3600 + 120, figures
    return {f"dispute:{proved['dispute_id']}": -fare}


def days_and_pending_disputes_limited(system: System, world: dict[str, Any]) -> None:
    """No day before the card was issued nor more than 90 days ago; at most 20 disputes
    of an account unanswered at once."""
    second = world["second"]
    today = date.fromisoformat(POLICY.service_date(int(time.time() * 1000)).isoformat())
    for day, why in ((today - timedelta(days=1), "before the card was issued"),
                     (today - timedelta(days=91), "more than 90 days ago")):
        refused = open_dispute(system, second, 422, card=B, date=day.isoformat(),
                               category="other", message="?")
        assert refused["error"]["code"] == "bad_date" and why in refused["error"][
            "message"], refused
    # The second rider's unanswered disputes made up to 20 by hand: the 21st is refused.
    engine = system.engine()
    try:
        sessions = session_factory(engine)
        with sessions.begin() as s:
            # The rider's own disputes on B name a tap (the aged ones by hand do not).
            mine = s.execute(select(Dispute.account_id).where(
                Dispute.card == B, Dispute.tap_id.is_not(None)).limit(1)).scalar_one()
            held = s.scalar(select(func.count()).select_from(Dispute).where(
                Dispute.account_id == mine, Dispute.answered_ms.is_(None)))
            now = int(time.time() * 1000)
            s.add_all(Dispute(account_id=mine, card=B, tap_id=None, service_date="2025-11-27",
                              category="other", message=f"many {i}", created_ms=now)
                      for i in range(20 - int(held or 0)))
        refused = open_dispute(system, second, 409, card=B, category="other", message="?")
        assert refused["error"]["code"] == "too_many_disputes" and "20" in refused[
            "error"]["message"], refused
    finally:
        engine.dispose()
