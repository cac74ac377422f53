"""The statement over weeks and months, and on a rule that infers exits: each day's caps
start from what the ledger held for the card's earlier days of its week and month when
the day's taps were priced, a late tap of an earlier day is named on the corrections it
caused on later days, and a ride priced to where the card next boarded says so.

The rows are written by hand as the gateway leaves them (and, once, made by the real tap
service), and every amount is worked out by hand from contract section 5:

    WEEKLY: 5000 a ride on any route, no transfers, no daily cap, a weekly cap of 12000.
    INFERRING: KRL-BOGOR by distance (3000 up to 25 km, +1000 per started 10 km, at
    most 13000), the card's next entry within 120 minutes standing in for a missing
    tap-out; any other route 5000; no transfers.
"""

from __future__ import annotations

import tomllib
from datetime import date

from fare_gateway.fares.engine import Earlier
from fare_gateway.fares.policy import builtin_policy, parse_policy
from fare_gateway.riders.evidence import explain_day, price_of_day
from fare_gateway.riders.statement import (
    DayPrices,
    DayTotals,
    Movement,
    Statement,
    TapRow,
    assemble,
    period_start,
    statement_window,
)
from tests.unit.fare_gateway.fares.test_engine_worked_examples import (
    KM_40,
    LON_E6,
    START_LAT_E6,
)
from tests.unit.fare_gateway.riders.test_disputes_evidence import a_tap, inbox_row
from tests.unit.fare_gateway.riders.test_statement import A, Recorded
from tests.unit.fare_gateway.taps.fakes import OTHER_BUS, at, tap

CARD = "04A0000000000009"
WEEKLY = parse_policy(tomllib.loads("""
timezone = "Asia/Jakarta"
[[fares]]
routes = ["*"]
amount = { regular = 5000 }
[caps]
weekly = { regular = 12000 }
"""))
INFERRING = parse_policy(tomllib.loads("""
timezone = "Asia/Jakarta"
[[fares]]
routes = ["KRL-BOGOR"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000, infer_exit_minutes = 120 }
[[fares]]
routes = ["*"]
amount = { regular = 5000 }
"""))


def ride(tap_id: str, ts: int, received_ms: int, *, vehicle: str = "SBY-0042",
         route: str = "R1", lat_e6: int = -7_257_500, lon_e6: int = 112_752_100) -> TapRow:
    """An accepted entry as the inbox holds it (its service day: Jakarta, from 03:00)."""
    device, seq = tap_id.split(":")
    return TapRow(tap_id, device, int(seq), ts, vehicle, route, "entry", True, None, lat_e6,
                  lon_e6, WEEKLY.service_date(ts).isoformat(), "charged", received_ms)


class Ledger:
    """The card's entries as the tap path posts them: each fare and correction with its
    posting time (its batch's) and service date."""

    def __init__(self) -> None:
        self.movements: list[Movement] = []

    def fare(self, tap: TapRow, amount: int, posted_ms: int) -> None:
        self._entry("fare", f"tap:{tap.tap_id}", tap, amount, posted_ms)

    def correction(self, tap: TapRow, cause: TapRow, amount: int, posted_ms: int) -> None:
        self._entry("correction", f"corr:{tap.tap_id}:{cause.tap_id}", tap, amount, posted_ms)

    def _entry(self, kind: str, key: str, tap: TapRow, amount: int, posted_ms: int) -> None:
        # The card's posting moves the entry's amount negated: a fare is negative.
        self.movements.append(Movement(len(self.movements) + 1, kind, key, posted_ms,
                                       -amount, tap.tap_id, None, tap.service_date,
                                       tap.route_id, "regular", CARD))

    def totals(self) -> DayTotals:
        """What `statement.day_totals` reads: the entries summed by date and time."""
        sums: dict[tuple[str, int], int] = {}
        for m in self.movements:
            assert m.service_date is not None
            key = (m.service_date, m.posted_ms)
            sums[key] = sums.get(key, 0) - m.amount
        return DayTotals((day, posted, total) for (day, posted), total in sums.items())


def statement(policy: object, ledger: Ledger, taps: list[TapRow], first: date, last: date,
              lang: str = "en") -> Statement:
    window = statement_window(WEEKLY, first, last, last)
    return assemble(policy, CARD, "regular", 0, ledger.movements, taps,  # type: ignore[arg-type]
                    window, lang, held=ledger.totals())


def lines(s: Statement) -> list[tuple[str, int, str | None]]:
    return [(i.type, i.amount, i.tap_id) for i in s.items]


def test_day_totals_give_each_day_its_week_and_month_before_it() -> None:
    # The week of Monday 29 December 2025 runs into January 2026.
    totals = DayTotals([("2025-12-28", 10, 7000), ("2025-12-29", 10, 5000),
                        ("2025-12-31", 10, 4000), ("2025-12-31", 90, -1000),
                        ("2026-01-02", 20, 3000)])
    assert totals.earlier("2026-01-03") == Earlier(week=5000 + 3000 + 3000, month=3000)
    assert totals.earlier("2025-12-31") == Earlier(week=5000, month=7000 + 5000)
    assert totals.earlier("2025-12-29") == Earlier(week=0, month=7000)
    # As it stood before the correction posted at 90 on 31 December:
    assert totals.earlier("2026-01-03", at_ms=50) == Earlier(week=5000 + 4000 + 3000,
                                                            month=3000)
    assert totals.earlier("2026-01-03", at_ms=5) == Earlier(0, 0)
    assert (totals.settled_by("2026-01-03"), totals.settled_by("2025-12-28")) == (90, -1)
    assert period_start(["2026-01-03"]) == "2025-12-29"
    assert period_start(["2026-01-13", "2025-12-30"]) == "2025-12-01"


def test_a_late_tap_of_monday_moves_what_the_weekly_cap_leaves_on_tuesday() -> None:
    """Monday 17 November: a ride at 08:00; the 18:00 one is on a bus that is offline
    until Wednesday 09:00. Tuesday: 08:00 costs 5000 (the week held 5000), 18:00 only
    2000 (12000 - 10000). Monday's late tap costs 5000, so Tuesday starts from 10000:
    08:00 now costs 2000 and 18:00 nothing, 3000 and 2000 back."""
    m1 = ride("SBY-0042-A:1", at(17, 8), at(17, 8, 0, 1))
    m2 = ride("SBY-0077-B:1", at(17, 18), at(19, 9), vehicle="SBY-0077")
    t1 = ride("SBY-0042-A:2", at(18, 8), at(18, 8, 0, 1))
    t2 = ride("SBY-0042-A:3", at(18, 18), at(18, 18, 0, 1))
    ledger = Ledger()
    ledger.fare(m1, 5000, m1.received_ms)
    ledger.fare(t1, 5000, t1.received_ms)
    ledger.fare(t2, 2000, t2.received_ms)
    ledger.fare(m2, 5000, m2.received_ms + 3)  # one batch: one posting time
    ledger.correction(t1, m2, -3000, m2.received_ms + 3)
    ledger.correction(t2, m2, -2000, m2.received_ms + 3)
    taps = [m1, m2, t1, t2]

    week = statement(WEEKLY, ledger, taps, date(2025, 11, 17), date(2025, 11, 19))
    assert lines(week) == [("tap", -5000, m1.tap_id), ("tap", -5000, m2.tap_id),
                           ("tap", -5000, t1.tap_id), ("tap", -2000, t2.tap_id),
                           ("correction", 3000, t1.tap_id), ("correction", 2000, t2.tap_id)]
    said = [i.explanation for i in week.items]
    # Each tap as it was priced: Monday's late tap was not known on Tuesday.
    assert said[:4] == ["New journey: the full fare of Rp5.000 (the standard fare)."] * 3 + [
        "New journey: the full fare of Rp5.000 (the standard fare); the weekly cap was "
        "reached, so only Rp2.000 was charged (Rp3.000 waived)."]
    assert said[4:] == [
        "A tap made on 17 November 2025 at 18:00 on route R1 that reached us later changed "
        "what was left of the weekly cap: new journey: the full fare of Rp5.000 (the "
        "standard fare); the weekly cap was reached, so only Rp2.000 was charged (Rp3.000 "
        "waived); Rp3.000 back to the card.",
        "A tap made on 17 November 2025 at 18:00 on route R1 that reached us later changed "
        "what was left of the weekly cap: new journey: the full fare of Rp5.000 (the "
        "standard fare); the weekly cap was reached, so nothing was charged (Rp5.000 "
        "waived); Rp2.000 back to the card."]
    assert week.closing_balance == -5000 - 5000 - 2000
    # Tuesday's window alone: the same lines of its own, Monday's tap named all the same.
    tuesday = statement(WEEKLY, ledger, taps, date(2025, 11, 18), date(2025, 11, 19), "id")
    assert lines(tuesday) == lines(week)[2:]
    assert tuesday.items[2].explanation == (
        "Tap pada 17 November 2025 pukul 18:00 di rute R1 yang baru kami terima kemudian "
        "mengubah sisa batas mingguan: perjalanan baru: tarif penuh Rp5.000 (tarif umum); "
        "batas mingguan tercapai, jadi hanya Rp2.000 yang ditagih (Rp3.000 dibebaskan); "
        "Rp3.000 dikembalikan ke kartu.")


def test_a_day_priced_after_its_week_moved_is_priced_from_the_totals_then() -> None:
    """Had Tuesday's taps come in after Monday's late one, they would cost 2000 and 0,
    and say so; the earlier totals did not move during the day, so the day is causal."""
    m1 = ride("SBY-0042-A:1", at(17, 8), at(17, 8, 0, 1))
    m2 = ride("SBY-0077-B:1", at(17, 18), at(17, 18, 0, 1), vehicle="SBY-0077")
    t1 = ride("SBY-0042-A:2", at(18, 8), at(18, 8, 0, 1))
    t2 = ride("SBY-0042-A:3", at(18, 18), at(18, 18, 0, 1))
    ledger = Ledger()
    for row, amount in ((m1, 5000), (m2, 5000), (t1, 2000), (t2, 0)):
        ledger.fare(row, amount, row.received_ms)
    day = DayPrices(WEEKLY, "regular", [t1, t2], ledger.totals())
    assert day.causal and day.earlier() == Earlier(10_000, 10_000)
    said = [i.explanation for i in statement(WEEKLY, ledger, [m1, m2, t1, t2],
                                             date(2025, 11, 18), date(2025, 11, 18)).items]
    assert said == [
        "New journey: the full fare of Rp5.000 (the standard fare); the weekly cap was "
        "reached, so only Rp2.000 was charged (Rp3.000 waived).",
        "New journey: the full fare of Rp5.000 (the standard fare); the weekly cap was "
        "reached, so nothing was charged (Rp5.000 waived)."]


def test_a_ride_with_no_tap_out_is_priced_to_where_the_card_next_boarded() -> None:
    """08:00 KRL-BOGOR, charged the maximum 13000; at 08:50 the card boards a bus 40 km
    on: that entry stands in for the tap-out, 3000 + 1000 * ceil(15 / 10) = 5000, and
    8000 comes back. The bus ride is a new journey at 5000."""
    train = ride("KRL-1001-A:1", at(28, 8), at(28, 8, 0, 1), vehicle="KRL-1001",
                 route="KRL-BOGOR", lat_e6=START_LAT_E6, lon_e6=LON_E6)
    bus = ride("SBY-0077-B:1", at(28, 8, 50), at(28, 8, 50, 1), vehicle="SBY-0077",
               lat_e6=KM_40, lon_e6=LON_E6)
    ledger = Ledger()
    ledger.fare(train, 13_000, train.received_ms)
    ledger.fare(bus, 5000, bus.received_ms)
    ledger.correction(train, bus, -8000, bus.received_ms)
    day = statement(INFERRING, ledger, [train, bus], date(2025, 11, 28), date(2025, 11, 28))
    assert lines(day) == [("tap", -13_000, train.tap_id), ("tap", -5000, bus.tap_id),
                          ("correction", 8000, train.tap_id)]
    # In tap order and entries only, yet the train ride's charge changed with the bus's.
    assert not DayPrices(INFERRING, "regular", [train, bus]).causal
    assert [i.explanation for i in day.items] == [
        "New journey: the maximum fare of Rp13.000, as there was no tap-out (the fare of "
        "route KRL-BOGOR).",
        "New journey: the full fare of Rp5.000 (the standard fare).",
        "There was no tap-out, so this ride was re-priced by distance to where you next "
        "boarded, at 08:50 on route R1 (40.0 km): it now costs Rp5.000; Rp8.000 back to the "
        "card."]

    # The train's tap arriving after the bus's: priced so at once, where it says.
    late = train._replace(received_ms=at(28, 9))
    ledger = Ledger()
    ledger.fare(bus, 5000, bus.received_ms)
    ledger.fare(late, 5000, late.received_ms)
    for lang, text in (
            ("en", "New journey: the distance fare of Rp5.000 for 40.0 km to where you next "
                   "boarded (at 08:50 on route R1, vehicle SBY-0077), as there was no tap-out "
                   "(the fare of route KRL-BOGOR)."),
            ("id", "Perjalanan baru: tarif jarak Rp5.000 untuk 40,0 km sampai tempat Anda "
                   "naik berikutnya (pukul 08:50 di rute R1, kendaraan SBY-0077), karena "
                   "tidak ada tap keluar (tarif rute KRL-BOGOR).")):
        out = statement(INFERRING, ledger, [late, bus], date(2025, 11, 28),
                        date(2025, 11, 28), lang)
        assert (out.items[0].tap_id, out.items[0].amount) == (late.tap_id, -5000)
        assert out.items[0].explanation == text


def test_the_dispute_evidence_prices_the_day_from_its_week_and_month() -> None:
    rows = [inbox_row(a_tap(1))]  # 14:00 on Friday 28 November
    policy = builtin_policy()  # 5000; weekly cap 50000, monthly 180000
    charge = price_of_day(policy, "regular", rows, Earlier(week=48_000, month=60_000)
                          ).charges[rows[0].tap_id]
    assert (charge.amount, charge.cap) == (2000, "weekly")
    assert price_of_day(policy, "regular", rows).amount(rows[0].tap_id) == 5000  # held by none
    priced = price_of_day(policy, "regular", rows, Earlier(week=0, month=177_000))
    assert explain_day(policy, rows, priced, {rows[0].tap_id: 3000}, "en") == (
        "14:00 R1: New journey: the full fare of Rp5.000 (the standard fare); the monthly "
        "cap was reached, so only Rp3.000 was charged (Rp2.000 waived).")


def test_the_gateways_own_entries_of_a_late_monday_tap_are_explained_so() -> None:
    """The same week through the real tap service: its entries are the hand-written
    ones above, and the statement explains them the same way."""
    r = Recorded(WEEKLY)
    m1, t1, t2 = (tap(A, at(17, 8)), tap(A, at(18, 8)), tap(A, at(18, 18)))
    m2 = tap(A, at(17, 18), OTHER_BUS)
    for t in (m1, t1, t2):
        r.send(t.ts + 1000, t)
    r.send(at(19, 9), m2)
    held = DayTotals((d.service_date or "", posted, d.amount) for posted, d in r.entries
                     if d.tap_id is not None)
    s = assemble(WEEKLY, A, "regular", 0, r.movements(), r.taps(),
                 statement_window(WEEKLY, date(2025, 11, 17), date(2025, 11, 19),
                                  date(2025, 11, 19)), "en", held=held)
    assert [(i.type, i.amount, i.tap_id) for i in s.items] == [
        ("tap", -5000, m1.tap_id), ("tap", -5000, m2.tap_id), ("tap", -5000, t1.tap_id),
        ("tap", -2000, t2.tap_id), ("correction", 3000, t1.tap_id),
        ("correction", 2000, t2.tap_id)]
    assert [i.explanation.split(":")[0] for i in s.items[4:]] == [
        "A tap made on 17 November 2025 at 18"] * 2
    assert "; the weekly cap was reached, so nothing was charged (Rp5.000 waived); Rp2.000 " \
           "back to the card." in s.items[5].explanation
