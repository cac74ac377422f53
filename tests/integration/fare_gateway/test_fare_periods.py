"""The cards' week and month totals (`fare_periods`) on PostgreSQL: filled by migration
0012 from a ledger written before it, kept by the real tap service through the SQL unit
of work when a late tap moves a week's cap, and checked by `transit reconcile`.

The late tap is the worked example of tests/unit/fare_gateway/taps/test_periods.py
(built-in policy): Monday 17 November 2025's 10:30 tap arrives on Wednesday 26 and
takes Saturday 22's 08:00 fare back, the week staying at its 50,000 cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import FarePeriod
from fare_gateway.cards import issue_card, topup_card
from fare_gateway.devices import DeviceDirectory, add_device
from fare_gateway.fares.engine import price_card
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from fare_gateway.schema import load_all_models, revisions, upgrade
from fare_gateway.taps import Outcome, TapService
from fare_gateway.taps.planning import priced_tap
from fare_gateway.taps.sql import sql_units
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import Card, Entry
from ledger.audit import Actor
from ledger.domain import EntryDraft, fare_entry
from ledger.services import Ledger, check_invariants
from tests.support.commands import transit_here
from tests.unit.fare_gateway.taps.fakes import BUS, OTHER_BUS, at, tap
from tests.unit.fare_gateway.taps.test_periods import FUNDS, LateMonday, late_monday
from tests.unit.fare_gateway.taps.test_service import inbound, said
from transit.topics import Topics
from transit.window import EventWindow
from transit.wire import Tap

POLICY = builtin_policy()
A = "04A0000000000001"
X, Y = "04B0000000000001", "04B0000000000002"
WEEK_17, WEEK_24 = (A, "week", "2025-11-17"), (A, "week", "2025-11-24")
NOVEMBER = (A, "month", "2025-11-01")


@dataclass
class Rig:
    """A migrated database with two buses and funded cards, and the real tap service on
    it; `now` is the gateway's clock. No GTFS feed is loaded: the fares go to the
    unassigned operator."""

    engine: Engine
    sessions: sessionmaker[Session]
    ledger: Ledger
    now: int = 0
    service: TapService = field(init=False)

    def __post_init__(self) -> None:
        with self.sessions.begin() as s:
            for device_id, vehicle_id, secret in (BUS, OTHER_BUS):
                add_device(s, device_id, vehicle_id, secret.hex(), key=None)
        # Taps up to 10 days old are believed, as in the worked example.
        self.service = TapService(
            sql_units(self.sessions, self.ledger, POLICY), POLICY,
            DeviceDirectory(self.sessions, ttl_s=3600, key=None),
            RouteDirectory(self.sessions, ttl_s=3600), Topics(), Metrics(),
            window=EventWindow(max_age_days=10), clock=lambda: self.now)

    def issue(self, token: str, category: str = "regular", funds: int = FUNDS) -> None:
        with self.sessions.begin() as s:
            issue_card(s, self.ledger, POLICY, token, category, actor=Actor.command())
        with self.sessions.begin() as s:
            topup_card(s, self.ledger, POLICY, token, funds, f"fund-{token}",
                       actor=Actor.command())

    def arrive(self, now: int, taps: list[Tap]) -> list[Outcome]:
        self.now = now
        return self.service.handle([inbound(t) for t in taps])

    def entries_after(self, last_id: int) -> list[tuple[str, str, int, str | None]]:
        with self.sessions() as s:
            return [tuple(r) for r in s.execute(  # type: ignore[misc]
                select(Entry.idem_key, Entry.kind, Entry.amount, Entry.service_date)
                .where(Entry.id > last_id).order_by(Entry.id))]

    def last_entry(self) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(Entry.id).order_by(Entry.id.desc()).limit(1)) or 0)

    def periods(self) -> dict[tuple[str, str, str], int]:
        with self.sessions() as s:
            return {(c, k, st): int(t) for c, k, st, t in s.execute(
                select(FarePeriod.card, FarePeriod.kind, FarePeriod.start, FarePeriod.total))}

    def fares(self) -> dict[str, int]:
        """What each tap costs now: the net of its entries."""
        with self.sessions() as s:
            return {str(t): int(n) for t, n in s.execute(
                select(Entry.tap_id, func.sum(Entry.amount))
                .where(Entry.tap_id.is_not(None)).group_by(Entry.tap_id))}

    def balance(self, token: str) -> int:
        with self.sessions() as s:
            return int(s.scalar(select(Card.balance).where(Card.card == token)) or 0)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    load_all_models()
    engine = make_engine(db_url)
    yield engine
    with session_factory(engine)() as s:
        assert check_invariants(s) == []
    engine.dispose()


def rig_on(engine: Engine) -> Rig:
    return Rig(engine, session_factory(engine), Ledger(engine, POLICY.currency))


# -- migration 0012 -----------------------------------------------------------------------

def test_migration_0012_fills_the_totals_from_the_ledger(engine: Engine) -> None:
    upgrade(engine, "0011")  # before the totals: only daily caps were applied
    sessions = session_factory(engine)
    ledger = Ledger(engine, POLICY.currency)
    for token, category in ((X, "regular"), (Y, "student")):
        with sessions.begin() as s:
            issue_card(s, ledger, POLICY, token, category, actor=Actor.command())
        with sessions.begin() as s:
            topup_card(s, ledger, POLICY, token, FUNDS, f"fund-{token}", actor=Actor.command())

    def fare(token: str, tap_id: str, amount: int, day: str, category: str = "regular",
             key: str | None = None) -> EntryDraft:
        return fare_entry(tap_id=tap_id, card=token, fare=amount, digest="d" * 64,
                          currency="IDR", operator_id="unassigned", route_id="R1",
                          category=category, service_date=day,
                          kind="correction" if key else "fare", idem_key=key)

    # What the ledger held: X rode twice a day from Monday 27 to Friday 31 October
    # (October's 50,000), then three times on Saturday 1 November, the third tap making
    # the second a transfer; Y once on Tuesday 4 November.
    drafts = [fare(X, f"BUS-A:{27 + i}{n}", 5000, f"2025-10-{27 + i}")
              for i in range(5) for n in (1, 2)]
    drafts += [fare(X, f"BUS-A:1{n}", 5000, "2025-11-01") for n in (1, 2, 3)]
    drafts.append(fare(X, "BUS-A:12", -5000, "2025-11-01", key="corr:BUS-A:12:BUS-A:13"))
    drafts.append(fare(Y, "BUS-A:41", 2500, "2025-11-04", "student"))
    with sessions.begin() as s:
        ledger.post(s, drafts)

    assert upgrade(engine) == revisions()[0]
    rig = Rig(engine, sessions, ledger)
    assert rig.periods() == {
        (X, "week", "2025-10-27"): 60_000,   # Mon..Fri 50,000 and Saturday 10,000
        (X, "month", "2025-10-01"): 50_000,
        (X, "month", "2025-11-01"): 10_000,  # 15,000 less the correction
        (Y, "week", "2025-11-03"): 2500,
        (Y, "month", "2025-11-01"): 2500,
    }  # the top-ups name no tap: in no total

    # The first tap charged after the upgrade counts from them: that week was charged
    # above the 50,000 the weekly cap allows now, so Sunday costs nothing.
    sunday = tap(X, at(2, 8), BUS)
    assert said(rig.arrive(at(2, 21), [sunday])) == [("charged", 0, FUNDS - 60_000)]
    assert rig.periods()[(X, "week", "2025-10-27")] == 60_000


# -- the late Monday, through the SQL unit of work ------------------------------------------

def charged_late_monday(engine: Engine) -> tuple[Rig, LateMonday]:
    """The worked example charged on a fresh database, up to the late tap's batch."""
    upgrade(engine)
    rig = rig_on(engine)
    rig.issue(A)
    taps = late_monday(A)
    *on_time, (now, late) = taps.arrivals()
    for clock, batch in on_time:
        rig.arrive(clock, batch)
    assert rig.periods() == {WEEK_17: 50_000, WEEK_24: 15_000, NOVEMBER: 65_000}
    last = rig.last_entry()
    assert said(rig.arrive(now, late)) == [("charged", 5000, 35_000)]
    assert rig.entries_after(last) == [
        (f"tap:{taps.late.tap_id}", "fare", 5000, "2025-11-17"),
        (f"corr:{taps.sat[0].tap_id}:{taps.late.tap_id}", "correction", -5000, "2025-11-22")]
    return rig, taps


def test_a_late_monday_corrects_saturday_and_keeps_the_totals(engine: Engine) -> None:
    rig, taps = charged_late_monday(engine)
    assert rig.periods() == {WEEK_17: 50_000, WEEK_24: 15_000, NOVEMBER: 65_000}
    assert rig.balance(A) == FUNDS - 65_000
    # Thursday's tap, priced from the kept totals, and the late one sent again.
    last = rig.last_entry()
    assert said(rig.arrive(at(27, 21), [taps.thu_27, taps.late])) == [
        ("charged", 5000, 30_000), ("duplicate", 5000, 30_000)]
    assert rig.entries_after(last) == [(f"tap:{taps.thu_27.tap_id}", "fare", 5000,
                                        "2025-11-27")]
    assert rig.periods() == {WEEK_17: 50_000, WEEK_24: 20_000, NOVEMBER: 70_000}
    everything = [*taps.on_time(), taps.late, taps.thu_27]
    expected = price_card(POLICY, "regular", [priced_tap(t) for t in everything])
    assert rig.fares() == {t.tap_id: expected.amount(t.tap_id) for t in everything}
    assert rig.balance(A) == FUNDS - expected.total


# -- transit reconcile ----------------------------------------------------------------------

def reconcile(db_url: str) -> tuple[int, list[str]]:
    """`transit reconcile`'s exit code, and its mismatches or else its line on the totals."""
    done = transit_here("reconcile", env={"TRANSIT_DATABASE_URL": db_url}, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, ([line for line in lines if line.startswith("MISMATCH")]
                             or [line for line in lines if "week and month total" in line])


def test_reconcile_names_a_total_changed_or_deleted_behind_the_gateways_back(
        engine: Engine, db_url: str) -> None:
    charged_late_monday(engine)
    assert reconcile(db_url) == (0, [
        "ok       3 week and month total(s) agree with the ledger"])

    with engine.begin() as conn:
        conn.execute(text("UPDATE fare_periods SET total = total - 5000 "
                          "WHERE card = :c AND kind = 'week' AND start = '2025-11-17'"),
                     {"c": A})
    code, lines = reconcile(db_url)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"MISMATCH card {A}'s week from 2025-11-17 is kept as 45000 "
                               "but its entries add up to 50000"), lines

    with engine.begin() as conn:
        conn.execute(text("UPDATE fare_periods SET total = 50000 "
                          "WHERE card = :c AND kind = 'week' AND start = '2025-11-17'"),
                     {"c": A})
        conn.execute(text("DELETE FROM fare_periods "
                          "WHERE card = :c AND kind = 'month' AND start = '2025-11-01'"),
                     {"c": A})
    code, lines = reconcile(db_url)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"MISMATCH card {A}'s month from 2025-11-01 is kept as missing "
                               "but its entries add up to 65000"), lines

    # The operator's remedy: the totals set from the ledger, once, and audited.
    env = {"TRANSIT_DATABASE_URL": db_url}
    with engine.begin() as conn:
        conn.execute(text("UPDATE fare_periods SET total = 1 "
                          "WHERE card = :c AND kind = 'week' AND start = '2025-11-17'"),
                     {"c": A})
    mended = transit_here("fares", "rebuild-totals", env=env).stdout.splitlines()
    assert mended == [f"card {A}: month from 2025-11-01 missing -> 65000",
                      f"card {A}: week from 2025-11-17 1 -> 50000",
                      "2 total(s) set to what the ledger says"], mended
    assert reconcile(db_url) == (0, [
        "ok       3 week and month total(s) agree with the ledger"])
    assert transit_here("fares", "rebuild-totals", env=env).stdout.splitlines() == [
        "every total already agrees with the ledger"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_log "
                                 "WHERE action = 'fare_periods.rebuilt'")).scalar() == 1
