"""The finance back office from outside (contract section 9), on PostgreSQL: a real
`transit gateway`, taps over MQTT, riders and staff over HTTP, `transit float` through
click's CliRunner.

One gateway set-up, checked point after point:

* the day before (posted by the ledger with its clock set to that day): two top-ups and
  a fare; today: top-ups, fares, a late tap that turns a charged tap into a free
  transfer (a correction), a dispute refunded, a lost card replaced (a transfer), and
  adjustments approved under four eyes (a credit, a debit, one that takes a card off
  the deny list);
* every movement ties out: the float's `closing` equals `cards_total`, and both the sum
  of every card's balance as `GET /api/v1/cards/{card}` shows it; each settlement line
  (today's provisional one, yesterday's final one) is the sum and count of its detail
  lines, filters included; the floats of consecutive days chain; `transit float` prints
  the API's figures;
* four eyes: the asker refused (its own token and others naming the same holder, typed
  with other spaces, case or full-width letters), an unnamed token refused, two
  concurrent approvals and a third one giving one posted entry, a debit beyond the
  balance refused and left pending, a rejection, a blocked card adjusted, a card lost
  and replaced refused at the ask and at the approval (naming its replacement), control
  characters refused; the audit trail names who asked and who approved, and its chain
  verifies;
* card search by prefix (from one hex digit) and by e-mail, the staff statement with
  entry ids and references;
* last, tampering with plain SQL: a pending adjustment forged "asked by" a colleague and
  a genuine one's amount raised are refused at the approval (`adjustment_tampered`),
  and `transit reconcile`, clean before, exits 1 naming both.

The fare policy is flat (5000 a ride, transfers within 120 minutes free) and its service
day starts twelve hours before the test runs, so that every tap of the test falls in
one service day and business day whatever the time.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from fare_gateway.adapters.models import DenyEntry
from fare_gateway.cards import topup_card
from fare_gateway.fares.policy import FarePolicy, policy_from_setting
from ledger import audit
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import Entry
from ledger.audit import Actor
from ledger.domain import digest_of, fare_entry
from ledger.fingerprint import Fingerprints
from ledger.services import Ledger, check_invariants
from ledger.settlement import BusinessCalendar
from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.clients import make_tap
from tests.support.fare_periods import count_in_periods
from tests.support.feeds import SMALL, write_feed
from tests.support.riders import call, issue, link, rider, rider_system, send
from transit.cli import cli
from transit.wire import Receipt

KEY = "6b" * 32  # TRANSIT_SECRET_KEY: the audit trail's fingerprints are keyed
FARE = 5000
# Cards: Y1, Y2 topped up the day before; C1 rides and has a late tap; C2 is disputed
# and debited; C3 is lost and replaced by C4; C5 starts empty and is credited.
Y1, Y2 = "04F1000000000001", "04F1000000000002"
C1, C2, C3, C4, C5 = (f"04F200000000000{n}" for n in range(1, 6))
CARDS = (Y1, Y2, C1, C2, C3, C4, C5)
LINE_KEY = ("line_type", "service_date", "operator_id", "route_id", "category")


def flat_policy(day_start: str) -> str:
    return f"""
currency = "IDR"
timezone = "Asia/Jakarta"
service_day_start = "{day_start}"
categories = ["regular"]
[[fares]]
routes = ["*"]
amount = {{ regular = {FARE} }}
[transfers]
window_minutes = 120
max_transfers = 2
"""


@pytest.fixture
def finance_system(broker: Broker, tmp_path: Path) -> Iterator[System]:
    url = create_pg_database()
    # Twelve hours into the service day now, whatever the time.
    start = datetime.now(ZoneInfo("Asia/Jakarta")) - timedelta(hours=12)
    (tmp_path / "fares.toml").write_text(flat_policy(start.strftime("%H:%M")))
    try:
        with rider_system(url, broker, tmp_path, TRANSIT_FARES=str(tmp_path / "fares.toml"),
                          TRANSIT_SECRET_KEY=KEY) as system:
            yield system
    finally:
        drop_pg_database(url)


class Staff:
    """The staff side of the test: the `transit` command in process, the API over HTTP."""

    def __init__(self, system: System) -> None:
        self.system = system
        env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRANSIT_")}
        env.update({k: v for k, v in system.env.items() if k.startswith("TRANSIT_")})
        self.runner = CliRunner(env=env)
        self.policy: FarePolicy = policy_from_setting(system.env["TRANSIT_FARES"])
        self.calendar = BusinessCalendar(self.policy.timezone,
                                         self.policy.service_day_start_min)

    def command(self, *args: str, exit_code: int = 0) -> str:
        result = self.runner.invoke(cli, list(args))
        assert "Traceback" not in result.output, result.output
        assert result.exit_code == exit_code, (args, result.output)
        return result.stdout

    def token(self, role: str, name: str = "") -> str:
        return self.command("tokens", "create", "--role", role,
                            *(("--name", name) if name else ())).strip()

    def call(self, method: str, path: str, token: str, body: Any = None
             ) -> tuple[int, Any]:
        status, payload = call(self.system, method, path, body, token)
        assert status < 500, (method, path, status, payload)
        if status >= 400:
            assert set(payload) == {"error"} and payload["error"]["code"], payload
        return status, payload

    def ok(self, method: str, path: str, token: str, body: Any = None,
           status: int = 200) -> Any:
        got, payload = self.call(method, path, token, body)
        assert got == status, (method, path, got, payload)
        return payload

    def refused(self, method: str, path: str, token: str, body: Any = None
                ) -> tuple[int, str]:
        got, payload = self.call(method, path, token, body)
        assert got >= 400, (method, path, got, payload)
        return got, payload["error"]["code"]

    def csv(self, path: str, token: str) -> list[dict[str, str]]:
        answer = send(self.system, "GET", path, token=token)
        assert answer.status == 200, (path, answer.status, answer.body[:300])
        assert answer.headers["content-type"].startswith("text/csv"), answer.headers
        assert answer.headers["cache-control"] == "no-store", answer.headers
        return list(csv.DictReader(io.StringIO(answer.body.decode(), newline="")))


def tap(system: System, peer: Any, seq: int, card: str, ts: int, route: str) -> Receipt:
    """One tap from the bus, and its receipt."""
    peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, seq, card,
                                              ts=ts, route_id=route).encode())
    for _topic, payload in peer.wait_for(lambda m: any(Receipt.parse(p).seq == seq
                                                       for _, p in m)):
        receipt = Receipt.parse(payload)
        if receipt.seq == seq:
            return receipt
    raise AssertionError("unreachable")


def seed_the_day_before(staff: Staff, day: date) -> int:
    """Two top-ups and a fare posted in business day `day` by the ledger itself (its
    clock set to that day: the gateway only ever posts now); what the cards gained."""
    engine = make_engine(staff.system.env["TRANSIT_DATABASE_URL"])
    try:
        sessions = session_factory(engine)
        at = staff.calendar.bounds(day)[0] + 3_600_000
        ledger = Ledger(engine, "IDR", clock=lambda: at,
                        fingerprints=Fingerprints(bytes.fromhex(KEY)))
        with sessions.begin() as session:
            topup_card(session, ledger, staff.policy, Y1, 40_000, "Y-TOPUP-1",
                       actor=Actor.command())
            topup_card(session, ledger, staff.policy, Y2, 35_000, "Y-TOPUP-2",
                       actor=Actor.command())
        with sessions.begin() as session:
            state = ledger.lock_cards(session, [Y1])[Y1]
            ledger.post(session, [fare_entry(
                tap_id="SBY-0099-Z:1", card=Y1, fare=FARE, digest=digest_of("y", Y1),
                currency="IDR", operator_id="SBY", route_id="R1", category="regular",
                service_date=day.isoformat())], {Y1: state.account_id})
            count_in_periods(session, Y1, day.isoformat(), FARE)
    finally:
        engine.dispose()
    return 40_000 + 35_000 - FARE


def lines_match_their_detail(lines: list[dict[str, str]], detail: list[dict[str, str]]
                             ) -> None:
    """Each settlement line is the count and the sum of its key's detail lines."""
    summed: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
    for row in detail:
        group = summed[tuple(row[k] for k in LINE_KEY)]
        group[0] += 1
        group[1] += int(row["amount"])
    assert {tuple(line[k] for k in LINE_KEY): [int(line["count"]), int(line["amount"])]
            for line in lines} == dict(summed)


def test_every_movement_ties_out_and_adjustments_take_four_eyes(
        finance_system: System, tmp_path: Path) -> None:
    system, staff = finance_system, Staff(finance_system)
    started = time.monotonic()
    now = int(time.time() * 1000)
    today = staff.calendar.day_of(now)
    yesterday = today - timedelta(days=1)
    staff.command("gtfs", "import", str(write_feed(tmp_path / "feed.zip", SMALL)))
    admin = staff.token("admin", "Admin Kantor")
    siti, siti_again = staff.token("finance", "Siti"), staff.token("finance", " siti ")
    budi, ani = staff.token("finance", "Budi Santoso"), staff.token("finance", "Ani")
    ops = staff.token("ops", "Operasi")
    codes = {card: issue(system, admin, card) for card in CARDS}
    for card, amount in ((C1, 20_000), (C2, 30_000), (C3, 15_000)):
        staff.ok("POST", f"/api/v1/cards/{card}/topups", admin,
                 {"amount": amount, "reference": f"TU-{card}"}, status=201)
    y_gained = seed_the_day_before(staff, yesterday)

    # -- the rides: fares, and a late tap that makes a charged tap a transfer ------------
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic())
        rides = [(1, C1, now - 10 * 60_000, "R1"), (2, C2, now - 30 * 60_000, "R2"),
                 (3, C3, now - 20 * 60_000, "R1")]
        assert [tap(system, peer, *ride).fare for ride in rides] == [FARE] * 3
        # C1's tap of 50 minutes earlier reaches the gateway last: it starts the
        # journey, and C1's first tap becomes a free transfer (a correction of -5000).
        late = tap(system, peer, 4, C1, now - 60 * 60_000, "R2")
        assert (late.status, late.fare) == ("charged", FARE), late
    finally:
        peer.close()
    c1_taps = staff.ok("GET", f"/api/v1/cards/{C1}/taps", admin)["taps"]
    assert sorted(t["fare"] for t in c1_taps) == [0, FARE], c1_taps

    # -- a dispute refunded, a lost card replaced ----------------------------------------
    email, rider_token = rider(system)
    for card in (C2, C3):
        assert link(system, rider_token, card, codes[card])[0] == 201
    # Asked for while C3 still holds its balance; approved once C3 has been replaced.
    lost = staff.ok("POST", "/api/v1/adjustments", siti,
                    {"card": C3, "amount": 1_000, "reason": "overcharged on R1",
                     "reference": "ADJ-LOST"}, status=201)
    dispute = staff.ok("POST", "/api/v1/rider/disputes", rider_token,
                       {"card": C2, "tap_id": f"{system.device_id}:2",
                        "category": "wrong_fare", "message": "tarif salah"}, status=201)
    staff.ok("POST", f"/api/v1/disputes/{dispute['dispute_id']}/answer", siti,
             {"decision": "refund", "amount": 2000, "message": "Dikembalikan."})
    staff.ok("POST", f"/api/v1/rider/cards/{C3}/lost", rider_token)
    moved = staff.ok("POST", f"/api/v1/rider/cards/{C3}/replace", rider_token,
                     {"new_card": C4, "check_code": codes[C4]}, status=201)
    assert moved["moved"] == 15_000 - FARE, moved

    # -- adjustments under four eyes -----------------------------------------------------
    adjustments = four_eyes(staff, siti, siti_again, budi, ani, ops, admin, lost)

    # -- the day ties out ----------------------------------------------------------------
    balances = {card: staff.ok("GET", f"/api/v1/cards/{card}", budi)["balance"]
                for card in CARDS}
    assert balances[C1] == 20_000 - FARE + 1_500 and balances[C5] == 6_000, balances
    day_float = staff.ok("GET", f"/api/v1/finance/float/{today}", budi)
    assert day_float["status"] == "open"
    assert day_float["closing"] == day_float["cards_total"] == sum(balances.values())
    assert day_float["opening"] == y_gained
    assert day_float["closing"] == day_float["opening"] + sum(day_float[name] for name in (
        "topups", "fares", "corrections", "refunds", "transfers", "adjustments"))
    manifest = staff.ok("GET", f"/api/v1/settlements/{today}", budi)
    totals = manifest["totals"]
    # Each figure signed as riders' holdings moved, each settlement total as revenue.
    assert (day_float["topups"], day_float["fares"], day_float["corrections"],
            day_float["refunds"], day_float["transfers"], day_float["adjustments"]) == (
        totals["topup"], -totals["fare"], -totals["correction"], -totals["refund"], 0,
        totals["adjustment"]) == (65_000, -4 * FARE, FARE, 2_000, 0, 1_500 - 500 + 6_000)
    assert totals["transfer"] == 15_000 - FARE
    lines = staff.csv(f"/api/v1/settlements/{today}/lines.csv", budi)
    assert {line["line_type"] for line in lines} == {"fare", "correction", "topup", "refund",
                                                     "transfer", "adjustment"}
    detail = staff.csv(f"/api/v1/finance/taps?date={today}", budi)
    assert len(detail) == manifest["entries"]
    lines_match_their_detail(lines, detail)
    assert [int(row["entry_id"]) for row in detail] == sorted(
        int(row["entry_id"]) for row in detail)
    adjusted = {row["entry_id"]: row for row in detail if row["line_type"] == "adjustment"}
    assert adjusted[str(adjustments["credit"]["entry_id"])]["card"] == C1
    for query, keep in (("route_id=R1", lambda line: line["route_id"] == "R1"),
                        ("operator_id=TSS", lambda line: line["operator_id"] == "TSS"),
                        ("route_id=R2&operator_id=SBY", lambda line: False)):
        narrowed = staff.csv(f"/api/v1/finance/taps?date={today}&{query}", budi)
        lines_match_their_detail([line for line in lines if keep(line)], narrowed)
    assert len(staff.csv(f"/api/v1/finance/taps?date={today}&route_id=R1", budi)) >= 3

    # -- consecutive days chain; the day before is final and ties out too ----------------
    before = staff.ok("GET", f"/api/v1/finance/float/{yesterday}", budi)
    earlier = staff.ok("GET", f"/api/v1/finance/float/{yesterday - timedelta(days=1)}",
                       budi)
    assert before["status"] == "closed" and before["closing"] == before["cards_total"]
    assert (earlier["closing"], before["opening"]) == (0, 0)
    assert (before["topups"], before["fares"], before["closing"]) == (75_000, -FARE, y_gained)
    assert before["closing"] == day_float["opening"]
    y_lines = staff.csv(f"/api/v1/settlements/{yesterday}/lines.csv", budi)
    assert staff.ok("GET", f"/api/v1/settlements/{yesterday}", budi)["status"] == "final"
    lines_match_their_detail(y_lines, staff.csv(f"/api/v1/finance/taps?date={yesterday}",
                                                budi))
    assert staff.refused("GET", f"/api/v1/finance/float/{today + timedelta(days=1)}",
                         budi) == (409, "day_not_begun")
    assert staff.refused("GET", f"/api/v1/finance/taps?date={today + timedelta(days=1)}",
                         budi) == (409, "day_not_begun")
    for bad in ("/api/v1/finance/float/2026-02-30", "/api/v1/finance/taps",
                "/api/v1/finance/taps?date=yesterday",
                f"/api/v1/finance/taps?date={today}&route_id=R%201"):
        assert staff.refused("GET", bad, budi)[0] == 400, bad
    assert staff.refused("GET", f"/api/v1/finance/float/{today}", ops) == (403, "forbidden")

    # -- transit float prints the same figures -------------------------------------------
    assert json.loads(staff.command("float", today.isoformat(), "--json")) == day_float
    table = staff.command("float", today.isoformat())
    for label, figure in (("+ fares", day_float["fares"]), ("= closing", day_float["closing"]),
                          ("cards total", day_float["cards_total"])):
        assert any(line.startswith(label) and line.endswith(f"{figure:,}")
                   for line in table.splitlines()), (label, table)

    # -- the audit trail: who asked, who approved; its chain verifies ---------------------
    audited(staff, admin, adjustments, {"siti": siti, "budi": budi, "ani": ani})

    # -- card search and the staff statement ---------------------------------------------
    staff_views(staff, admin, budi, ops, rider_token, email, adjustments)

    engine = system.engine()
    try:
        with session_factory(engine)() as session:
            assert check_invariants(session) == []
            assert session.scalar(select(func.count()).select_from(DenyEntry).where(
                DenyEntry.card == C5)) == 0  # credited above the lowest fare: off the list
    finally:
        engine.dispose()
    tampered(staff, siti, budi)
    print(f"finance from outside: {time.monotonic() - started:.1f} s")


def four_eyes(staff: Staff, siti: str, siti_again: str, budi: str, ani: str, ops: str,
              admin: str, lost: dict[str, Any]) -> dict[str, Any]:
    """Adjustments asked, refused, approved at once by two, rejected; the posted ones."""
    credit = {"card": C1, "amount": 1_500, "reason": "validator fault on R1",
              "reference": "ADJ-0001"}
    asked = staff.ok("POST", "/api/v1/adjustments", siti, credit, status=201)
    assert {k: asked[k] for k in ("status", "card", "amount", "reference", "entry_id")} == {
        "status": "pending", "card": C1, "amount": 1_500, "reference": "ADJ-0001",
        "entry_id": None}
    assert asked["requested_by"] == {"token_id": siti.split("_")[1], "name": "Siti"}
    path = f"/api/v1/adjustments/{asked['adjustment_id']}"
    assert staff.ok("POST", "/api/v1/adjustments", budi, credit) == asked  # a replay
    for body, want in (({**credit, "amount": 1_600}, (409, "reference_conflict")),
                       ({**credit, "reference": "ADJ-X", "card": "04F2FFFFFFFFFFFF"},
                        (404, "not_found")),
                       ({**credit, "reference": "ADJ-X", "amount": True}, (422, "bad_amount")),
                       ({**credit, "reference": "ADJ-X", "amount": 0}, (422, "bad_amount")),
                       ({**credit, "reference": "ADJ-X", "reason": " "}, (422, "bad_reason")),
                       ({**credit, "reference": "ADJ-X", "reason": "x\u0000y"},
                        (422, "bad_reason")),
                       ({**credit, "reference": "ADJ-X", "reason": "x\ny"},
                        (422, "bad_reason")),
                       ({**credit, "reference": "ADJ-X", "reason": "x\ud800"},
                        (422, "bad_reason")),
                       ({**credit, "reference": "ADJ\u0000X"}, (422, "bad_reference")),
                       ({**credit, "reference": "ADJ-X", "card": "04F2\u0000"},
                        (422, "bad_card")),
                       ({**credit, "reference": "A" * 65}, (422, "bad_reference"))):
        assert staff.refused("POST", "/api/v1/adjustments", siti, body) == want, body
    assert staff.refused("POST", "/api/v1/adjustments", ops, credit) == (403, "forbidden")
    # Four eyes rests on names: a token made without one takes no part (the command
    # still makes such tokens, for other work).
    unnamed = staff.token("finance")
    status, error = staff.call("POST", "/api/v1/adjustments", unnamed,
                               {**credit, "reference": "ADJ-X"})
    assert (status, error["error"]["code"]) == (403, "unnamed_holder"), error
    assert "transit tokens create --role finance --name NAME" in error["error"]["message"]
    assert staff.refused("POST", f"{path}/approve", unnamed) == (403, "unnamed_holder")
    assert staff.refused("POST", f"{path}/reject", unnamed) == (403, "unnamed_holder")
    # A card lost and replaced: its balance is on C4 now.
    status, error = staff.call("POST", "/api/v1/adjustments", siti,
                               {**credit, "card": C3, "reference": "ADJ-X"})
    assert (status, error["error"]["code"]) == (409, "card_replaced"), error
    assert C4 in error["error"]["message"], error
    lost_path = f"/api/v1/adjustments/{lost['adjustment_id']}"
    status, error = staff.call("POST", f"{lost_path}/approve", budi)
    assert (status, error["error"]["code"]) == (409, "card_replaced"), error
    assert C4 in error["error"]["message"], error
    assert staff.ok("GET", lost_path, budi)["status"] == "pending"
    assert staff.ok("POST", f"{lost_path}/reject", budi,
                    {"note": "card replaced"})["status"] == "rejected"
    # Nothing is posted until a second holder approves.
    assert staff.ok("GET", f"/api/v1/cards/{C1}", budi)["balance"] == 20_000 - 5000
    # The asker's token, and others naming the asker as typed otherwise (full-width).
    for same in (siti, siti_again, staff.token("finance", "\uff33\uff49\uff54\uff49")):
        assert staff.refused("POST", f"{path}/approve", same) == (403, "same_holder")
        assert staff.refused("POST", f"{path}/reject", same) == (403, "same_holder")

    answers: dict[str, tuple[int, Any]] = {}

    def approve(name: str, token: str) -> None:
        answers[name] = staff.call("POST", f"{path}/approve", token)

    both = [threading.Thread(target=approve, args=(n, t)) for n, t in (("budi", budi),
                                                                       ("ani", ani))]
    for thread in both:
        thread.start()
    for thread in both:
        thread.join()
    assert [status for status, _ in answers.values()] == [200, 200], answers
    posted = answers["budi"][1]
    assert answers["ani"][1] == posted and posted["status"] == "posted", answers
    assert isinstance(posted["entry_id"], int)
    assert staff.ok("POST", f"{path}/approve", budi) == posted  # once more: the same
    assert staff.ok("GET", path, siti) == posted
    assert staff.refused("POST", f"{path}/reject", budi) == (409, "already_posted")

    # A debit beyond the balance stays pending; then it is rejected.
    too_much = staff.ok("POST", "/api/v1/adjustments", budi,
                        {"card": C2, "amount": -999_999, "reason": "typo test",
                         "reference": "ADJ-0002"}, status=201)
    big = f"/api/v1/adjustments/{too_much['adjustment_id']}"
    # Two spaces, another case, full-width letters: the same holder as typed otherwise.
    for same in ("budi  santoso", "BUDI SANTOSO", "\uff22\uff55\uff44\uff49 Santoso"):
        assert staff.refused("POST", f"{big}/approve", staff.token("finance", same)) == (
            403, "same_holder"), same
    assert staff.refused("POST", f"{big}/approve", siti) == (409, "insufficient_balance")
    pending = staff.ok("GET", "/api/v1/adjustments?status=pending", siti)
    assert [a["reference"] for a in pending["adjustments"]] == ["ADJ-0002"], pending
    assert staff.refused("GET", "/api/v1/adjustments?status=open", siti) == (400, "bad_status")
    rejected = staff.ok("POST", f"{big}/reject", siti, {"note": "typed an extra 9"})
    assert (rejected["status"], rejected["decided_by"]["name"]) == ("rejected", "Siti")
    assert staff.ok("POST", f"{big}/reject", ani) == rejected
    assert staff.refused("POST", f"{big}/approve", ani) == (409, "already_rejected")
    assert staff.refused("POST", f"{big}/reject", ani, {"note": "a\u0000b"}) == (
        422, "bad_note")
    assert staff.ok("GET", "/api/v1/adjustments?status=pending", siti)["adjustments"] == []

    # A debit within the balance of a blocked card (blocked, not replaced: it may be
    # adjusted), and a credit that takes an empty card off the deny list.
    staff.ok("POST", f"/api/v1/cards/{C2}/block", admin)
    debit = staff.ok("POST", "/api/v1/adjustments", siti,
                     {"card": C2, "amount": -500, "reason": "fee", "reference": "ADJ-0003"},
                     status=201)
    debited = staff.ok("POST", f"/api/v1/adjustments/{debit['adjustment_id']}/approve", ani)
    assert staff.ok("GET", f"/api/v1/cards/{C2}", ani)["status"] == "blocked"
    staff.ok("POST", f"/api/v1/cards/{C2}/unblock", admin)
    lift = staff.ok("POST", "/api/v1/adjustments", budi,
                    {"card": C5, "amount": 6_000, "reason": "goodwill",
                     "reference": "ADJ-0004"}, status=201)
    lifted = staff.ok("POST", f"/api/v1/adjustments/{lift['adjustment_id']}/approve", siti)
    assert [a["reference"] for a in staff.ok("GET", "/api/v1/adjustments?status=posted",
                                             ani)["adjustments"]] == [
        "ADJ-0001", "ADJ-0003", "ADJ-0004"]
    assert staff.refused("POST", "/api/v1/adjustments/999999/approve", ani) == (
        404, "not_found")

    engine = staff.system.engine()
    try:
        with session_factory(engine)() as session:
            keys = session.scalars(select(Entry.idem_key).where(Entry.kind == "adjustment")
                                   .order_by(Entry.id)).all()
    finally:
        engine.dispose()
    assert keys == ["adjustment:ADJ-0001", "adjustment:ADJ-0003", "adjustment:ADJ-0004"]
    return {"credit": posted, "rejected": rejected, "debit": debited, "lift": lifted}


def audited(staff: Staff, admin: str, adjustments: dict[str, Any],
            tokens: dict[str, str]) -> None:
    """The trail names who asked and who approved each adjustment; its chain verifies,
    read from the database and, where the gateway serves it, through the API."""
    ids = {name: token.split("_")[1] for name, token in tokens.items()}
    credit, rejected = adjustments["credit"], adjustments["rejected"]
    engine = staff.system.engine()
    try:
        with session_factory(engine)() as session:
            records = [audit.as_json(row) for row in audit.records(session)]
            problems = audit.verify(session, Fingerprints(bytes.fromhex(KEY)))
    finally:
        engine.dispose()
    assert problems == [], (problems, [(r["seq"], r["action"]) for r in records])

    def steps(adjustment: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        return [(r["action"], r["actor"]["id"], r["actor"]["name"], r["actor"]["role"])
                for r in records if r["subject"] == f"adjustment:{adjustment['adjustment_id']}"]

    approver = credit["decided_by"]
    assert approver["token_id"] in (ids["budi"], ids["ani"])
    assert steps(credit) == [
        ("adjustment.requested", ids["siti"], "Siti", "finance"),
        ("adjustment.approved", approver["token_id"], approver["name"], "finance")]
    approved = next(r for r in records if r["action"] == "adjustment.approved"
                    and r["subject"] == f"adjustment:{credit['adjustment_id']}")
    assert approved["detail"]["entry_id"] == credit["entry_id"]
    assert approved["detail"]["requested_by"] == ids["siti"]
    assert approved["source"] == "127.0.0.1"
    assert steps(rejected) == [("adjustment.requested", ids["budi"], "Budi Santoso",
                                "finance"),
                               ("adjustment.rejected", ids["siti"], "Siti", "finance")]
    status, trail = staff.call("GET", "/api/v1/audit?scope=all&limit=1000", admin)
    if status != 404:  # served once the audit trail's endpoint is part of the gateway
        assert status == 200, trail
        assert trail["chain"]["verified"] is True, trail["chain"]
        assert trail["chain"]["problems"] == [], trail["chain"]
        assert [r["seq"] for r in trail["records"]] == [r["seq"] for r in records]


def staff_views(staff: Staff, admin: str, finance: str, ops: str, rider_token: str,
                email: str, adjustments: dict[str, Any]) -> None:
    """Card search by prefix and e-mail; the staff statement names entries and references."""
    found = staff.ok("GET", f"/api/v1/cards?query={C1[:6].lower()}", finance)
    assert found["truncated"] is False
    assert [c["card"] for c in found["cards"]] == [C1, C2, C3, C4, C5]
    assert found["cards"][0] == staff.ok("GET", f"/api/v1/cards/{C1}", finance)
    by_email = staff.ok("GET", f"/api/v1/cards?query={email.upper()}", admin)
    assert [c["card"] for c in by_email["cards"]] == [C2, C3, C4]
    assert staff.ok("GET", "/api/v1/cards?query=nobody%40contoh.id", finance) == {
        "cards": [], "truncated": False}
    # "Cards whose token starts with Q", from one hex digit (at most 50 come back).
    for short in ("0", "04f", "04F"):
        assert staff.ok("GET", f"/api/v1/cards?query={short}", finance) == {
            "cards": [staff.ok("GET", f"/api/v1/cards/{card}", finance)
                      for card in sorted(CARDS)], "truncated": False}, short
    assert staff.ok("GET", "/api/v1/cards?query=1", finance)["cards"] == []
    for bad in ("?query=04FZ", "", "?query=", "?query=x%40y%00", "?query=04F%00",
                "?query=%00%40", "?query=" + "0" * 33):
        assert staff.refused("GET", f"/api/v1/cards{bad}", finance) == (400, "bad_query"), bad
    assert staff.refused("GET", f"/api/v1/cards?query={C1}", ops) == (403, "forbidden")

    statement = staff.ok("GET", f"/api/v1/cards/{C1}/statement", finance)
    items = statement["items"]
    assert statement["closing_balance"] == staff.ok("GET", f"/api/v1/cards/{C1}",
                                                    finance)["balance"]
    topup = next(i for i in items if i["type"] == "topup")
    assert topup["reference"] == f"TU-{C1}" and isinstance(topup["entry_id"], int)
    adjustment = next(i for i in items if i["type"] == "adjustment")
    assert (adjustment["entry_id"], adjustment["reference"], adjustment["amount"]) == (
        adjustments["credit"]["entry_id"], "ADJ-0001", 1_500)
    rides = [i for i in items if i["type"] == "tap"]
    assert all(isinstance(i["entry_id"], int) for i in rides), rides
    assert staff.refused("GET", f"/api/v1/cards/{C1}/statement", rider_token)[0] == 403
    assert staff.refused("GET", "/api/v1/cards/04F2FFFFFFFFFFFF/statement", finance) == (
        404, "not_found")
    rider_view = call(staff.system, "GET", f"/api/v1/rider/cards/{C2}/statement", None,
                      rider_token)[1]
    assert "entry_id" not in rider_view["items"][0]  # riders see the contract's items only


def tampered(staff: Staff, siti: str, budi: str) -> None:
    """Plain SQL, without the key: a pending adjustment forged "asked by" Siti, and a
    genuine pending one's amount raised. Neither is approved; reconcile names both."""
    clean = staff.runner.invoke(cli, ["reconcile"])
    assert clean.exit_code == 0, clean.output
    assert "adjustment(s) match their fingerprints" in clean.output, clean.output
    genuine = staff.ok("POST", "/api/v1/adjustments", siti,
                       {"card": C1, "amount": 700, "reason": "fault", "reference": "ADJ-0005"},
                       status=201)
    engine = staff.system.engine()
    try:
        with engine.begin() as conn:
            forged = conn.execute(text(
                "INSERT INTO adjustments (card, amount, reason, reference, status, "
                "requested_ms, requested_by, requested_name) VALUES (:card, 1500000, "
                "'goodwill', 'FORGED-1', 'pending', 0, :siti, 'Siti') RETURNING id"),
                {"card": C1, "siti": siti.split("_")[1]}).scalar_one()
            conn.execute(text("UPDATE adjustments SET amount = 900000 WHERE id = :id"),
                         {"id": genuine["adjustment_id"]})
        for number in (forged, genuine["adjustment_id"]):
            status, error = staff.call("POST", f"/api/v1/adjustments/{number}/approve", budi)
            assert (status, error["error"]["code"]) == (409, "adjustment_tampered"), error
            assert staff.refused("POST", f"/api/v1/adjustments/{number}/reject", budi) == (
                409, "adjustment_tampered")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status FROM adjustments WHERE id IN (:a, :b)"),
                                {"a": forged, "b": genuine["adjustment_id"]}
                                ).scalars().all() == ["pending", "pending"]
            assert conn.execute(text("SELECT count(*) FROM entries WHERE kind = 'adjustment'")
                                ).scalar_one() == 3
    finally:
        engine.dispose()
    caught = staff.runner.invoke(cli, ["reconcile"])
    assert caught.exit_code == 1, caught.output
    assert "Traceback" not in caught.output, caught.output
    problems = [line for line in caught.output.splitlines() if "adjustment " in line]
    assert any(f"adjustment {forged} (card {C1}, amount 1500000" in line
               and "unfingerprinted" in line for line in problems), caught.output
    assert any(f"adjustment {genuine['adjustment_id']} (card {C1}, amount 900000" in line
               and "fingerprint does not match" in line for line in problems), caught.output
