"""Settlement, reconciliation and tamper evidence (contract section 6, issue 6) on real
PostgreSQL.

The ledger state is built in-process through the project's own services (cards,
top-ups, the tap path of signed taps) with a `Ledger` whose clock is the posting time,
so that entries land on chosen business days. What is being shown is then driven as a
user drives it: `transit settle`, `transit reconcile` as subprocesses, and the
settlement API of a running gateway.

The expected files are written out by hand from the contract's fare policy (section 5,
the built-in Surabaya table), not computed by the project's code.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine

from fare_gateway.cards import issue_card, topup_card
from fare_gateway.devices import DeviceDirectory, add_device
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from fare_gateway.schema import load_all_models, upgrade
from fare_gateway.taps import Inbound, TapService
from fare_gateway.taps.sql import sql_units
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import Entry
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.services import Ledger
from ledger.settlement import BusinessCalendar, Settler
from testbed.gateway import transit
from tests.conftest import System
from tests.support.clients import make_tap
from tests.support.settlements import totals
from tracking.integrity import new_route, record_network
from transit.topics import Topics

WIB = ZoneInfo("Asia/Jakarta")
D, D1, D2 = "2025-11-27", "2025-11-28", "2025-11-29"
HEADER = ("settlement_date,line_type,service_date,operator_id,route_id,category,count,"
          "amount,currency\n")

# Cards: a regular rider, a student, and a regular rider whose taps arrive out of order.
A = "04A0000000000001"
S = "04B0000000000002"
C = "04C0000000000003"
UNKNOWN = "04DEADBEEF000009"

# Routes: R1 and R2/R3 belong to two GTFS agencies; R9 is in no GTFS feed.
ROUTES = {"R1": "SBY", "R2": "TMN", "R3": "TMN"}


@dataclass(frozen=True)
class Bus:
    device_id: str
    vehicle_id: str
    secret: bytes


BUS1 = Bus("DEV-1", "BUS-1", bytes(range(32)))
BUS2 = Bus("DEV-2", "BUS-2", bytes(range(32, 64)))
BUS3 = Bus("DEV-3", "BUS-3", bytes(range(64, 96)))

# Business day D (2025-11-27), by hand, built-in policy (regular 5000, student 2500,
# student 1000 from 05:00 to 07:00, transfers within 120 min pay the difference, daily
# cap regular 10000 / student 5000):
#   A: 08:00 R1 5000 (new journey); 08:30 R3 transfer 0; 12:00 R9 5000 (new journey);
#      a tap denied at the reader costs nothing and posts nothing.
#   S: 06:00 R1 1000 (early); 06:01 same bus: repeat, no entry; 09:00 R1 2500;
#      01:30 on the 28th (service day D) R1: 2500 capped to 1500.
#   C: 10:30 R1 posted first: 5000; then the late 09:45 R2 arrives: 5000 for it, and the
#      10:30 tap becomes a transfer: correction -5000 on R1.
#   top-ups: A 50000, S 20000, C 30000 at 04:00, A 5000 at 02:59:59.999 on the 28th.
EXPECTED_D = HEADER + (
    "2025-11-27,correction,2025-11-27,SBY,R1,regular,1,-5000,IDR\n"
    "2025-11-27,fare,2025-11-27,SBY,R1,regular,2,10000,IDR\n"
    "2025-11-27,fare,2025-11-27,SBY,R1,student,3,5000,IDR\n"
    "2025-11-27,fare,2025-11-27,TMN,R2,regular,1,5000,IDR\n"
    "2025-11-27,fare,2025-11-27,TMN,R3,regular,1,0,IDR\n"
    "2025-11-27,fare,2025-11-27,unassigned,R9,regular,1,5000,IDR\n"
    "2025-11-27,topup,2025-11-27,,,,4,105000,IDR\n")
EXPECTED_D_TOTALS = totals(fare=25000, correction=-5000, topup=105000)
EXPECTED_D_ENTRIES = 13  # 8 fares (one of them 0), 1 correction, 4 top-ups
EXPECTED_D_LINES = 7

# Business day D+1 (2025-11-28): C's 23:00 tap of the 27th from a bus that was offline
# (service day D, fare 5000: C's day is then 5000 + 0 + 5000, under the cap), A's
# 08:00 tap of the 28th on R1, and S's top-up of 10000 at exactly 03:00:00.000.
EXPECTED_D1 = HEADER + (
    "2025-11-28,fare,2025-11-27,TMN,R2,regular,1,5000,IDR\n"
    "2025-11-28,fare,2025-11-28,SBY,R1,regular,1,5000,IDR\n"
    "2025-11-28,topup,2025-11-28,,,,1,10000,IDR\n")
EXPECTED_D1_TOTALS = totals(fare=10000, topup=10000)


def at(day: str, hh: int, mm: int = 0, ss: int = 0, ms: int = 0) -> int:
    """Epoch ms of local (Asia/Jakarta) wall time on a calendar date."""
    y, m, d = map(int, day.split("-"))
    return int(datetime(y, m, d, hh, mm, ss, tzinfo=WIB).timestamp() * 1000) + ms


HEADER_ONLY = (b"settlement_date,line_type,service_date,operator_id,route_id,category,count,"
               b"amount,currency\n")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- building ledger state in-process -------------------------------------------------

@dataclass
class World:
    """The project's services on one database, with a posting clock the test sets."""

    engine: Engine
    now_ms: int = 0
    seqs: dict[str, int] = field(default_factory=dict)
    # Unkeyed, like a run without TRANSIT_SECRET_KEY (`env_for`), unless given.
    fingerprints: Fingerprints = field(default_factory=lambda: Fingerprints(None))

    def __post_init__(self) -> None:
        self.sessions = session_factory(self.engine)
        self.policy = builtin_policy()
        self.ledger = Ledger(self.engine, "IDR", clock=lambda: self.now_ms,
                             fingerprints=self.fingerprints)
        # The gateway's clock is the posting clock: taps are judged when they arrive.
        self.service = TapService(sql_units(self.sessions, self.ledger, self.policy),
                                  self.policy, DeviceDirectory(self.sessions, key=None),
                                  RouteDirectory(self.sessions),
                                  Topics(), Metrics(), clock=lambda: self.now_ms)

    def topup(self, card: str, amount: int, reference: str, posted_ms: int) -> None:
        self.now_ms = posted_ms
        with self.sessions.begin() as s:
            result = topup_card(s, self.ledger, self.policy, card, amount, reference,
                                actor=Actor.command())
        assert result.created

    def taps(self, posted_ms: int, *taps: tuple[Bus, str, str, int, dict[str, Any]]
             ) -> list[str]:
        """One batch of signed taps, posted at `posted_ms`; returns their statuses."""
        self.now_ms = posted_ms
        batch = []
        for bus, card, route, ts, extra in taps:
            seq = self.seqs.get(bus.device_id, 0) + 1
            self.seqs[bus.device_id] = seq
            tap = make_tap(bus.secret, bus.device_id, seq, card, ts=ts, route_id=route,
                           vehicle_id=bus.vehicle_id, **extra)
            batch.append(Inbound(f"transit/v1/dev/{bus.device_id}/tap", tap.encode()))
        return [o.status for o in self.service.handle(batch)]


def tap(bus: Bus, card: str, route: str, ts: int, **extra: Any
        ) -> tuple[Bus, str, str, int, dict[str, Any]]:
    return (bus, card, route, ts, extra)


def new_world(url: str, fingerprints: Fingerprints | None = None) -> World:
    load_all_models()
    engine = make_engine(url)
    upgrade(engine)
    world = World(engine, fingerprints=fingerprints or Fingerprints(None))
    with world.sessions.begin() as s:
        for bus in (BUS1, BUS2, BUS3):
            add_device(s, bus.device_id, bus.vehicle_id, bus.secret.hex(), key=None)
        for route_id, agency in ROUTES.items():
            s.add(new_route(world.ledger.fingerprints, route_id, agency, short_name=route_id))
        record_network(s, world.ledger.fingerprints, Actor.command(), "fixture")
        for card, category in ((A, "regular"), (S, "student"), (C, "regular")):
            issue_card(s, world.ledger, world.policy, card, category, actor=Actor.command())
    return world


def build_day_d(w: World) -> None:
    """Business day 2025-11-27 as described above EXPECTED_D."""
    w.topup(A, 50000, "pos-A-1", at(D, 4))
    w.topup(S, 20000, "pos-S-1", at(D, 4, 1))
    w.topup(C, 30000, "pos-C-1", at(D, 4, 2))
    assert w.taps(at(D, 6, 0, 3), tap(BUS1, S, "R1", at(D, 6))) == ["charged"]
    assert w.taps(at(D, 6, 1, 3), tap(BUS1, S, "R1", at(D, 6, 1))) == ["not_charged"]
    assert w.taps(at(D, 8, 0, 2), tap(BUS1, A, "R1", at(D, 8))) == ["charged"]
    assert w.taps(at(D, 8, 30, 2), tap(BUS2, A, "R3", at(D, 8, 30))) == ["charged"]
    assert w.taps(at(D, 9, 0, 2), tap(BUS1, S, "R1", at(D, 9))) == ["charged"]
    # C's 10:30 tap arrives first; its 09:45 tap (bus 2 was out of reach) at 11:00.
    assert w.taps(at(D, 10, 30, 2), tap(BUS1, C, "R1", at(D, 10, 30))) == ["charged"]
    assert w.taps(at(D, 11), tap(BUS2, C, "R2", at(D, 9, 45))) == ["charged"]
    assert w.taps(at(D, 12, 0, 2), tap(BUS3, A, "R9", at(D, 12))) == ["charged"]
    assert w.taps(at(D, 13, 0, 2), tap(BUS1, A, "R1", at(D, 13), accepted=False,
                                       reason="denylisted"),
                  tap(BUS1, UNKNOWN, "R1", at(D, 13, 5))) == ["not_charged", "unknown_card"]
    # after local midnight, still service day and business day 2025-11-27
    assert w.taps(at(D1, 1, 30, 5), tap(BUS1, S, "R1", at(D1, 1, 30))) == ["charged"]
    w.topup(A, 5000, "pos-A-2", at(D1, 2, 59, 59, 999))


def build_day_d1(w: World) -> None:
    """Business day 2025-11-28 as described above EXPECTED_D1."""
    w.topup(S, 10000, "pos-S-2", at(D1, 3))
    assert w.taps(at(D1, 8, 0, 2), tap(BUS1, A, "R1", at(D1, 8))) == ["charged"]
    # bus 2 was offline since the evening of the 27th; its tap arrives at 10:00
    assert w.taps(at(D1, 10), tap(BUS2, C, "R2", at(D, 23))) == ["charged"]


# -- running the commands --------------------------------------------------------------

def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env["TRANSIT_DATABASE_URL"] = url
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = transit(*args, env=env, check=False)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out[-3000:]
    return result


def settle(env: dict[str, str], day: str, out: Path) -> tuple[bytes, dict[str, object], bytes]:
    """`transit settle DAY --out OUT`: the CSV bytes, the manifest, the manifest bytes."""
    result = run(env, "settle", day, "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    csv = (out / f"settlement-{day}.csv").read_bytes()
    raw = (out / f"settlement-{day}.json").read_bytes()
    return csv, json.loads(raw), raw


def reconcile(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = run(env, "reconcile", *args)
    return result.returncode, result.stdout + result.stderr


def assert_clean(env: dict[str, str], *args: str) -> str:
    code, out = reconcile(env, *args)
    assert code == 0, out
    assert "MISMATCH" not in out, out
    return out


def assert_caught(env: dict[str, str], *words: str, args: tuple[str, ...] = ()) -> str:
    code, out = reconcile(env, *args)
    assert code == 1, f"transit reconcile {' '.join(args)}: exit {code}, tamper not caught\n{out}"
    for word in words:
        assert word in out, f"the report does not name {word!r}:\n{out}"
    return out


@pytest.fixture
def world(pg_url: str) -> Iterator[World]:
    w = new_world(pg_url)
    yield w
    w.engine.dispose()


def check_manifest(manifest: dict[str, object], csv: bytes, day: str, lines: int,
                   totals: dict[str, int], entries: int, previous: str | None) -> None:
    assert manifest["settlement_date"] == day
    assert manifest["currency"] == "IDR"
    assert manifest["lines"] == lines
    assert manifest["totals"] == totals
    assert manifest["entries"] == entries
    assert manifest["sha256"] == sha(csv)
    assert manifest["previous_sha256"] == previous
    for key in ("lines", "entries"):
        assert type(manifest[key]) is int
    assert all(type(v) is int for v in totals.values())


# -- 1. a day settles to exactly the expected lines --------------------------------------

def test_day_with_fares_transfers_corrections_and_topups_settles_to_expected_lines(
        world: World, pg_url: str, tmp_path: Path) -> None:
    build_day_d(world)
    build_day_d1(world)
    env = env_for(pg_url)
    csv, manifest, _ = settle(env, D, tmp_path / "out")
    assert csv.decode() == EXPECTED_D
    assert csv == EXPECTED_D.encode()
    check_manifest(manifest, csv, D, EXPECTED_D_LINES, EXPECTED_D_TOTALS, EXPECTED_D_ENTRIES,
                   sha(HEADER_ONLY))  # the day before had nothing: a header-only file
    assert manifest["sha256"] == sha(EXPECTED_D.encode())
    # the control totals agree with the lines they sum
    rows = [line.split(",") for line in EXPECTED_D.splitlines()[1:]]
    for kind in ("fare", "correction", "topup"):
        assert sum(int(r[7]) for r in rows if r[1] == kind) == EXPECTED_D_TOTALS[kind]
    assert sum(int(r[6]) for r in rows) == EXPECTED_D_ENTRIES
    # and with the ledger itself
    start, end = at(D, 3), at(D1, 3)
    with world.sessions() as s:
        posted = s.execute(select(Entry.kind, Entry.amount).where(
            Entry.posted_ms >= start, Entry.posted_ms < end)).all()
    assert len(posted) == EXPECTED_D_ENTRIES
    assert sum(a for k, a in posted if k == "correction") == EXPECTED_D_TOTALS["correction"]
    assert_clean(env)


# -- 2. the day after: late taps keep their service_date; re-runs; the chain ------------

def test_late_tap_settles_next_day_with_its_service_date_and_reruns_are_identical(
        world: World, pg_url: str, tmp_path: Path) -> None:
    build_day_d(world)
    # D is closed at 03:00 on the 28th: settle it (in-process, clock at 04:00) before the
    # offline bus's tap of the 27th comes in.
    settler = Settler(BusinessCalendar("Asia/Jakarta", 180), "IDR", clock=lambda: at(D1, 4))
    with world.sessions.begin() as s:
        first = settler.settle(s, date(2025, 11, 27))
    assert first.final and first.csv == EXPECTED_D.encode()
    build_day_d1(world)

    env = env_for(pg_url)
    runs = {}
    for name in ("run1", "run2"):
        runs[name] = {day: settle(env, day, tmp_path / name) for day in (D, D1)}
    for day in (D, D1):
        csv1, _, raw1 = runs["run1"][day]
        csv2, _, raw2 = runs["run2"][day]
        assert csv1 == csv2, f"{day}: CSV differs between runs"
        assert raw1 == raw2, f"{day}: manifest differs between runs"
    d_csv, d_manifest, _ = runs["run1"][D]
    d1_csv, d1_manifest, _ = runs["run1"][D1]
    # the settled day did not change when the late tap of its service day arrived
    assert d_csv == first.csv == EXPECTED_D.encode()
    assert d_manifest["entries"] == EXPECTED_D_ENTRIES
    # the late tap is in D+1, with service_date D
    assert d1_csv == EXPECTED_D1.encode(), d1_csv.decode()
    check_manifest(d1_manifest, d1_csv, D1, 3, EXPECTED_D1_TOTALS, 3, sha(EXPECTED_D.encode()))
    assert d1_manifest["previous_sha256"] == d_manifest["sha256"] == first.sha256
    assert_clean(env)


def test_a_day_stays_provisional_for_a_minute_after_its_end(world: World) -> None:
    """An entry stamped just before 03:00 may commit just after it: the day is not
    recorded until a minute has passed, so such an entry is never left out of it."""
    build_day_d(world)
    day = date(2025, 11, 27)

    def settle_at(ms: int) -> bool:
        settler = Settler(BusinessCalendar("Asia/Jakarta", 180), "IDR", clock=lambda: ms)
        with world.sessions.begin() as s:
            final = settler.settle(s, day).final
        with world.sessions() as s:
            recorded = s.scalar(text("SELECT count(*) FROM settlements WHERE "
                                     "business_date = :d"), {"d": day.isoformat()})
        assert bool(recorded) == final
        return final

    assert not settle_at(at(D1, 3))
    assert not settle_at(at(D1, 3, 0, 59, 999))
    assert settle_at(at(D1, 3, 1))


# -- 3. an empty day between two active days ----------------------------------------------

def test_empty_day_gets_header_only_file_and_the_chain_has_no_gap(
        world: World, pg_url: str, tmp_path: Path) -> None:
    world.topup(A, 20000, "pos-A-d", at(D, 9))
    assert world.taps(at(D, 10, 0, 2), tap(BUS1, A, "R1", at(D, 10))) == ["charged"]
    world.topup(S, 7000, "pos-S-d2", at(D2, 9))
    env = env_for(pg_url)
    out = tmp_path / "out"
    # the empty day first: it settles the day before it into the chain on the way
    empty_csv, empty, _ = settle(env, D1, out)
    d2_csv, d2, _ = settle(env, D2, out)
    d_csv, d, _ = settle(env, D, out)
    assert d_csv == (HEADER + "2025-11-27,fare,2025-11-27,SBY,R1,regular,1,5000,IDR\n"
                     "2025-11-27,topup,2025-11-27,,,,1,20000,IDR\n").encode()
    check_manifest(d, d_csv, D, 2, totals(fare=5000, topup=20000), 2,
                   sha(HEADER_ONLY))
    assert empty_csv == HEADER.encode()
    check_manifest(empty, empty_csv, D1, 0, totals(), 0,
                   sha(d_csv))
    assert d2_csv == (HEADER + "2025-11-29,topup,2025-11-29,,,,1,7000,IDR\n").encode()
    check_manifest(d2, d2_csv, D2, 1, totals(topup=7000), 1,
                   sha(HEADER.encode()))
    assert sorted(p.name for p in out.iterdir()) == [
        f"settlement-{day}.{ext}" for day in (D, D1, D2) for ext in ("csv", "json")]
    out_text = assert_clean(env, "--dir", str(out))
    assert "chain of 3 day(s) unbroken" in out_text, out_text


def test_a_day_before_anything_was_posted_is_skipped_by_name_not_a_mismatch(
        world: World, pg_url: str, tmp_path: Path) -> None:
    """The day before the first posting settles to a final header-only file that the
    chain never records: `reconcile --dir` names it as skipped and counts only the files
    it compared with a record."""
    world.topup(A, 20000, "pos-A-d", at(D, 9))
    env = env_for(pg_url)
    out = tmp_path / "out"
    before_csv, before, _ = settle(env, "2025-11-26", out)
    assert before_csv == HEADER_ONLY and before["status"] == "final"
    settle(env, D, out)
    text = assert_clean(env, "--dir", str(out))
    lines = text.splitlines()
    assert ("skipped  settlement-2025-11-26.csv: business day 2025-11-26 has no entries, so "
            "it is not in the chain (its file holds only the header)") in lines, text
    # D's CSV and manifest; the skipped file is not among them
    assert f"ok       2 settlement file(s) in {out} compared with the chain" in lines, text
    assert "record is missing" not in text, text


def test_a_ledger_with_nothing_posted_reconciles_its_files_as_skipped(
        world: World, pg_url: str, tmp_path: Path) -> None:
    """`transit settle D` on a ledger with no entry records nothing (by design): its
    file is skipped by name; with nothing else in the folder, nothing was compared."""
    env = env_for(pg_url)
    out = tmp_path / "out"
    csv, manifest, _ = settle(env, D, out)
    assert csv == HEADER_ONLY and manifest["status"] == "final"
    code, text = reconcile(env, "--dir", str(out))
    lines = text.splitlines()
    assert (f"skipped  settlement-{D}.csv: business day {D} has no entries, so it is not "
            "in the chain (its file holds only the header)") in lines, text
    assert "record is missing" not in text, text
    mismatches = [line for line in lines if line.startswith("MISMATCH")]
    assert mismatches == [f"MISMATCH no settlement file in {out} was checked: it holds none "
                          "of a settled day, only the 1 skipped above"], text
    assert code == 1, text
    # A file with lines for a day in which the ledger holds nothing is not skipped.
    (out / f"settlement-{D}.csv").write_bytes(
        HEADER_ONLY + b"2025-11-27,topup,2025-11-27,,,,1,5000,IDR\n")
    assert_caught(env, f"MISMATCH settlement-{D}.csv: has settlement lines, but the ledger "
                       f"has no entry in business day {D}", args=("--dir", str(out)))


# -- 4. tampering behind the application's back -----------------------------------------

def settled_world(world: World, pg_url: str, out: Path) -> dict[str, str]:
    """D and D+1 built, both settled with `transit settle`, and reconciled clean."""
    build_day_d(world)
    build_day_d1(world)
    env = env_for(pg_url)
    csv, _, _ = settle(env, D, out)
    assert csv == EXPECTED_D.encode()
    settle(env, D1, out)
    assert_clean(env)
    assert_clean(env, "--dir", str(out))
    return env


def entry_of(world: World, **where: object) -> int:
    with world.sessions() as s:
        stmt = select(Entry.id).where(*(getattr(Entry, k) == v for k, v in where.items()))
        ids = s.scalars(stmt).all()
    assert len(ids) == 1, (where, ids)
    return ids[0]


def sql(world: World, statement: str, **params: object) -> int:
    with world.engine.begin() as conn:
        return conn.execute(text(statement), params).rowcount


def test_tamper_update_of_one_posting_amount_is_caught(
        world: World, pg_url: str, tmp_path: Path) -> None:
    env = settled_world(world, pg_url, tmp_path / "out")
    # the operator's side of A's 08:00 fare on the 27th
    entry = entry_of(world, tap_id="DEV-1:3", kind="fare")
    changed = sql(world, "UPDATE postings SET amount = amount + 1 WHERE id = ("
                  "SELECT min(id) FROM postings WHERE entry_id = :e AND amount > 0)", e=entry)
    assert changed == 1
    out = assert_caught(env, D, "changed after settlement", f"entry {entry}")
    assert f"business day {D1}" in out  # the other day is reported as it is: still fine
    assert not any(D1 in line for line in out.splitlines() if line.startswith("MISMATCH")), out
    assert_caught(env, D, "changed after settlement", args=(D,))
    # and the day cannot be settled again into a different file
    again = run(env, "settle", D, "--out", str(tmp_path / "again"), "--quiet")
    assert again.returncode != 0 and D in again.stderr, again.stdout + again.stderr


def test_tamper_consistent_rewrite_of_a_settled_entry_is_caught(
        world: World, pg_url: str, tmp_path: Path) -> None:
    """An UPDATE that keeps every balance in step (entry, both postings, the card's
    balance): only the settlement's fingerprint of the day can show it."""
    env = settled_world(world, pg_url, tmp_path / "out")
    entry = entry_of(world, tap_id="DEV-1:3", kind="fare")
    sql(world, "UPDATE entries SET amount = amount - 1000 WHERE id = :e", e=entry)
    sql(world, "UPDATE postings SET amount = amount - 1000 WHERE entry_id = :e AND amount > 0",
        e=entry)
    sql(world, "UPDATE postings SET amount = amount + 1000 WHERE entry_id = :e AND amount < 0",
        e=entry)
    sql(world, "UPDATE cards SET balance = balance + 1000 WHERE card = :c", c=A)
    assert_caught(env, D, "changed after settlement")


def test_tamper_delete_of_one_entry_is_caught(
        world: World, pg_url: str, tmp_path: Path) -> None:
    env = settled_world(world, pg_url, tmp_path / "out")
    # the correction of C's 10:30 tap, posted on the 27th
    entry = entry_of(world, kind="correction")
    assert sql(world, "DELETE FROM postings WHERE entry_id = :e", e=entry) == 2
    assert sql(world, "DELETE FROM entries WHERE id = :e", e=entry) == 1
    assert_caught(env, D, "changed after settlement", C)


def test_tamper_edited_settlement_csv_is_caught(
        world: World, pg_url: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = settled_world(world, pg_url, out)
    path = out / f"settlement-{D}.csv"
    original = path.read_bytes()
    edited = original.replace(b",R9,regular,1,5000,IDR", b",R9,regular,1,500,IDR")
    assert edited != original
    path.write_bytes(edited)
    assert_caught(env, f"settlement-{D}.csv", args=("--dir", str(out)))
    assert_caught(env, f"settlement-{D}.csv", args=(D, "--dir", str(out)))


def test_tamper_update_of_a_card_balance_is_caught(
        world: World, pg_url: str, tmp_path: Path) -> None:
    env = settled_world(world, pg_url, tmp_path / "out")
    assert sql(world, "UPDATE cards SET balance = balance + 1000 WHERE card = :c", c=S) == 1
    assert_caught(env, S)


def test_tamper_backdated_insert_into_a_settled_day_is_caught(
        world: World, pg_url: str, tmp_path: Path) -> None:
    """A balanced entry slipped into a settled day, with the card's balance in step."""
    env = settled_world(world, pg_url, tmp_path / "out")
    with world.engine.begin() as conn:
        accounts: dict[str, int] = dict(conn.execute(text(
            "SELECT ref, id FROM accounts WHERE (kind, ref) IN "
            "(('card', :c), ('clearing', 'topups'))"), {"c": S}).all())
        entry = conn.execute(text(
            "INSERT INTO entries (idem_key, kind, digest, amount, posted_ms, currency, card,"
            " reference) VALUES ('topup:forged', 'topup', 'x', 9000, :p, 'IDR', :c, 'forged')"
            " RETURNING id"), {"p": at(D, 15), "c": S}).scalar_one()
        conn.execute(text("INSERT INTO postings (entry_id, account_id, amount) VALUES "
                          "(:e, :clearing, -9000), (:e, :card, 9000)"),
                     {"e": entry, "clearing": accounts["topups"], "card": accounts[S]})
        conn.execute(text("UPDATE cards SET balance = balance + 9000 WHERE card = :c"),
                     {"c": S})
    assert_caught(env, D, "changed after settlement")


def test_tamper_removed_settlement_record_and_changed_day_is_caught_by_the_files(
        world: World, pg_url: str, tmp_path: Path) -> None:
    """The last settled day's record deleted, then that day's entry rewritten in step:
    the files finance holds (`--dir`) still record what was settled."""
    out = tmp_path / "out"
    env = settled_world(world, pg_url, out)
    entry = entry_of(world, card=A, service_date=D1, kind="fare")  # A's 08:00 on the 28th
    sql(world, "DELETE FROM settlements WHERE business_date = :d", d=D1)
    sql(world, "UPDATE entries SET amount = 4000 WHERE id = :e", e=entry)
    sql(world, "UPDATE postings SET amount = 4000 WHERE entry_id = :e AND amount > 0", e=entry)
    sql(world, "UPDATE postings SET amount = -4000 WHERE entry_id = :e AND amount < 0",
        e=entry)
    sql(world, "UPDATE cards SET balance = balance + 1000 WHERE card = :c", c=A)
    assert_caught(env, f"settlement-{D1}", args=("--dir", str(out)))


def test_tamper_rewritten_settlement_record_is_caught_by_the_chain(
        world: World, pg_url: str, tmp_path: Path) -> None:
    """A settled day changed together with its own record and the next day's link:
    the chain hash of every later day still tells."""
    out = tmp_path / "out"
    env = settled_world(world, pg_url, out)
    with world.sessions() as s:
        entry = min(s.scalars(select(Entry.id).where(
            Entry.card == A, Entry.service_date == D, Entry.kind == "fare",
            Entry.amount > 1000)).all())
    sql(world, "UPDATE entries SET amount = amount - 1000 WHERE id = :e", e=entry)
    sql(world, "UPDATE postings SET amount = amount + 1000 WHERE entry_id = :e AND amount < 0",
        e=entry)
    sql(world, "UPDATE postings SET amount = amount - 1000 WHERE entry_id = :e AND amount > 0",
        e=entry)
    sql(world, "UPDATE cards SET balance = balance + 1000 WHERE card = :c", c=A)
    # The forger settles the changed day again in a scratch database and copies its
    # fingerprints over the records: here, simply recompute them from the ledger.
    from ledger.adapters.db import make_engine, session_factory
    from ledger.settlement import BusinessCalendar, compute
    engine = make_engine(pg_url)
    with session_factory(engine)() as s:
        redone = compute(s, BusinessCalendar(), date.fromisoformat(D), "IDR", None, True)
    engine.dispose()
    sql(world, "UPDATE settlements SET sha256 = :s, entries_sha256 = :r WHERE business_date = :d",
        s=redone.sha256, r=str(redone.manifest["entries_sha256"]), d=D)
    sql(world, "UPDATE settlements SET previous_sha256 = :s WHERE business_date = :d",
        s=redone.sha256, d=D1)
    assert_caught(env, "chain hash", D)


# -- 5. the settlement API ---------------------------------------------------------------

def get_raw(base: str, path: str, token: str | None = None
            ) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(base + path)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_settlement_api_serves_the_same_bytes_as_transit_settle(
        system: System, tmp_path: Path) -> None:
    url = system.env["TRANSIT_DATABASE_URL"]
    w = new_world(url)
    try:
        build_day_d(w)
        build_day_d1(w)
    finally:
        w.engine.dispose()
    finance, admin, ops = (system.token(r) for r in ("finance", "admin", "ops"))
    base = system.gateway.base_url
    m_path, csv_path = f"/api/v1/settlements/{D}", f"/api/v1/settlements/{D}/lines.csv"

    # the API first for D (it records the day), the command first for D+1
    status, api_manifest, headers = get_raw(base, m_path, finance)
    assert status == 200, api_manifest
    assert "json" in headers.get("Content-Type", "")
    status, api_csv, headers = get_raw(base, csv_path, finance)
    assert status == 200, api_csv
    assert headers.get("Content-Type", "").startswith("text/csv")
    cli_csv, _, cli_manifest = settle(system.env, D, tmp_path / "out")
    assert api_csv == cli_csv == EXPECTED_D.encode()
    # The day was recorded by the API: the audit trail names the finance token that asked.
    engine = make_engine(url)
    with engine.connect() as conn:
        recorded = conn.execute(text(
            "SELECT subject, actor_kind, actor_id, actor_role FROM audit_log WHERE action = "
            "'settlement.recorded' ORDER BY seq")).all()
    engine.dispose()
    assert [tuple(r) for r in recorded] == [(D, "token", finance.split("_")[1], "finance")]
    assert api_manifest == cli_manifest
    assert json.loads(api_manifest)["sha256"] == sha(api_csv)

    d1_csv, d1_manifest, d1_raw = settle(system.env, D1, tmp_path / "out")
    assert d1_csv == EXPECTED_D1.encode()
    engine = make_engine(url)
    with engine.connect() as conn:
        kinds = conn.execute(text("SELECT actor_kind FROM audit_log WHERE action = "
                                  "'settlement.recorded' AND subject = :d"), {"d": D1}).all()
    engine.dispose()
    assert [k for k, in kinds] == ["command"]
    for token in (finance, admin):
        assert get_raw(base, f"/api/v1/settlements/{D1}", token)[:2] == (200, d1_raw)
        assert get_raw(base, f"/api/v1/settlements/{D1}/lines.csv", token)[:2] == (200, d1_csv)
    assert d1_manifest["previous_sha256"] == sha(api_csv)

    for path in (m_path, csv_path):
        assert get_raw(base, path, ops)[0] == 403
        assert get_raw(base, path)[0] == 401
        assert get_raw(base, path, "tt_not_a_real_token")[0] == 401
    for bad in ("2025-13-01", "2025-02-30", "yesterday", "2025-11-27x", "-1"):
        for suffix in ("", "/lines.csv"):
            status, body, _ = get_raw(base, f"/api/v1/settlements/{bad}{suffix}", finance)
            assert status == 400, (bad, suffix, status, body)
            assert json.loads(body)["error"]["code"]
    for suffix in ("", "/lines.csv"):
        status, body, _ = get_raw(base, f"/api/v1/settlements/2099-01-01{suffix}", finance)
        assert status == 409, (suffix, status, body)
        assert json.loads(body)["error"]["code"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_settlement_api_never_answers_500(system: System) -> None:
    """Contract section 3: bad input is a 400/404/409/422, never a 500."""
    url = system.env["TRANSIT_DATABASE_URL"]
    w = new_world(url)
    try:
        w.topup(A, 20000, "pos-A-d", at(D, 9))
    finally:
        w.engine.dispose()
    finance = system.token("finance")
    base = system.gateway.base_url
    answers = {}
    for odd in ("0001-01-01", "9999-12-31", "9999-12-30", "0000-00-00", "2025-11-27%00",
                "%2e%2e", "2025-11-27.json", "x" * 300):
        for suffix in ("", "/lines.csv"):
            status, body, _ = get_raw(base, f"/api/v1/settlements/{odd}{suffix}", finance)
            answers[odd + suffix] = (status, body[:200])
    five_hundreds = {k: v for k, v in answers.items() if v[0] >= 500}
    assert five_hundreds == {}, five_hundreds


def test_settle_command_refuses_days_it_cannot_settle(pg_url: str, tmp_path: Path) -> None:
    """One clear `Error:` line and a non-zero exit, never a traceback."""
    w = new_world(pg_url)
    try:
        w.topup(A, 20000, "pos-A-d", at(D, 9))
    finally:
        w.engine.dispose()
    env = env_for(pg_url)
    out = tmp_path / "out"
    future = transit("settle", "2099-01-01", "--out", str(out), env=env, check=False)
    assert future.returncode != 0 and "Traceback" not in future.stderr, future.stderr
    assert "2099-01-01" in future.stderr and "Error:" in future.stderr, future.stderr
    bad = transit("settle", "2025-13-01", "--out", str(out), env=env, check=False)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr, bad.stderr
    assert "YYYY-MM-DD" in bad.stderr, bad.stderr
    assert not out.exists() or not any(out.iterdir())
    last = transit("settle", "9999-12-31", "--out", str(out), env=env, check=False)
    assert last.returncode != 0, last.stdout
    assert "Traceback" not in last.stderr, last.stderr[-1500:]
    assert [line for line in last.stderr.splitlines() if line.startswith("Error:")], last.stderr
