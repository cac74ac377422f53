"""The statement's pure parts: its lines, their order, the running balance, the window,
and sentences that say what the engine decided when the money moved.

The days below go through the real tap service (`TapService` over the hand-written
store of tests/unit/fare_gateway/taps/fakes.py), batch by batch, so that the entries
are those the gateway posts; this file adds what the database would: each inbox row's
arrival time, each entry's id and posting time. Fares are contract section 5's, by
hand: the built-in Surabaya table (5000 regular from 07:00, 2000 from 05:00 to 07:00,
transfers within 120 minutes pay the difference, a repeat within 120 s on the same bus
is free, daily cap 10000) and the KRL distance rule (3000 up to 25 km, +1000 per
started 10 km, at most 13000).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from fare_gateway.fares.engine import price_day
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.metrics import Metrics
from fare_gateway.riders.statement import (
    MAX_DAYS,
    DayPrices,
    Movement,
    Replacement,
    Statement,
    StatementError,
    StopRow,
    TapRow,
    arrival_key,
    assemble,
    event_key,
    nearest_stops,
    statement_window,
)
from fare_gateway.taps import Inbound, TapService
from ledger.domain import (
    CARD,
    EntryDraft,
    refund_entry,
    topup_entry,
    transfer_entry,
)
from tests.unit.fare_gateway.fares.test_engine_worked_examples import (
    KM_40,
    LON_E6,
    START_LAT_E6,
)
from tests.unit.fare_gateway.fares.test_engine_worked_examples import KRL as KRL_POLICY
from tests.unit.fare_gateway.taps.fakes import (
    BUS,
    KRL_TRAIN,
    OTHER_BUS,
    SBY_POLICY,
    WIB,
    FakeDevices,
    FakeRoutes,
    FakeStore,
    at,
    card,
    tap,
)
from tracking.domain import approx_metres
from transit.topics import Topics
from transit.wire import Tap

A = "04A0000000000001"
NEW = "04B0000000000002"
DAY = date(2025, 11, 27)


@dataclass
class Recorded:
    """A card's days through the real tap service, with what the database adds."""

    policy: FarePolicy = SBY_POLICY
    category: str = "regular"
    store: FakeStore = field(default_factory=FakeStore)
    received: dict[str, int] = field(default_factory=dict)
    entries: list[tuple[int, EntryDraft]] = field(default_factory=list)  # (posted_ms, entry)

    def __post_init__(self) -> None:
        self.store.state.cards = {A: card(A, 0, self.category)}

    def send(self, now: int, *taps: Tap) -> None:
        """One batch, arriving at `now`."""
        service = TapService(self.store.unit, self.policy,
                             FakeDevices(BUS, OTHER_BUS, KRL_TRAIN),
                             FakeRoutes({"R1": "SBY", "KRL-BOGOR": "KAI"}), Topics(),
                             Metrics(), clock=lambda: now)
        before = len(self.store.state.entries)
        service.handle([Inbound(f"transit/v1/dev/{t.device_id}/tap", t.encode(), now)
                        for t in taps])
        for t in taps:
            self.received.setdefault(t.tap_id, now)
        self.entries += [(now, d) for d in self.store.state.entries[before:]]

    def post(self, now: int, draft: EntryDraft) -> None:
        """An entry posted outside the tap path (a top-up, a refund, a transfer)."""
        self.entries.append((now, draft))

    def taps(self) -> list[TapRow]:
        return [TapRow(t.tap_id, t.device_id, t.seq, t.ts, t.vehicle_id, t.route_id, t.kind,
                       t.accepted, e.reason, t.lat_e6, t.lon_e6, e.service_date, e.status,
                       self.received[tap_id])
                for tap_id, e in self.store.state.inbox.items() if (t := e.tap)]

    def movements(self, of: str = A) -> list[Movement]:
        return [Movement(i, d.kind, d.idem_key, posted, p.amount, d.tap_id, d.reference,
                         d.service_date, d.route_id, d.category, d.card)
                for i, (posted, d) in enumerate(self.entries, start=1)
                for p in d.postings if p.account.kind == CARD and p.account.ref == of]

    def statement(self, first: date = DAY, last: date = DAY, lang: str = "en",
                  opening: int = 0, **kwargs: object) -> Statement:
        window = statement_window(self.policy, first, last, last)
        return assemble(self.policy, A, self.category, opening, self.movements(),
                        self.taps(), window, lang, **kwargs)  # type: ignore[arg-type]


def lines(s: Statement) -> list[tuple[str, int, int]]:
    return [(i.type, i.amount, i.balance_after) for i in s.items]


def said(s: Statement) -> list[str]:
    return [i.explanation for i in s.items]


def test_a_day_of_rides_line_by_line_in_both_languages() -> None:
    r = Recorded()
    r.post(at(27, 7), topup_entry(card=A, amount=50_000, reference="TU-1", currency="IDR"))
    ride = tap(A, at(27, 8))
    onward = tap(A, at(27, 8, 30), OTHER_BUS)
    again = tap(A, at(27, 8, 31), OTHER_BUS)
    refused = tap(A, at(27, 9), BUS, accepted=False, reason="denylisted")
    for t in (ride, onward, again, refused):
        r.send(t.ts + 60_000, t)

    s = r.statement()
    assert lines(s) == [("topup", 50_000, 50_000), ("tap", -5000, 45_000),
                        ("tap", 0, 45_000), ("tap", 0, 45_000), ("denied", 0, 45_000)]
    assert (s.opening_balance, s.closing_balance) == (0, 45_000)
    assert said(s) == [
        "Top-up of Rp50.000 (reference TU-1).",
        "New journey: the full fare of Rp5.000 (the standard fare).",
        "Free transfer within the same journey: the full fare of Rp5.000 (the standard "
        "fare), no more than the Rp5.000 already paid.",
        "Repeat tap on the same bus 60 s after the previous one: not charged.",
        "Refused at the reader: the card was on the deny list (balance below the lowest "
        "fare, or the card blocked); not charged."]
    assert [(i.tap_id, i.route_id, i.vehicle_id, i.reason) for i in s.items] == [
        (None, None, None, None), (ride.tap_id, "R1", "SBY-0042", None),
        (onward.tap_id, "R1", "SBY-0077", None), (again.tap_id, "R1", "SBY-0077", None),
        (refused.tap_id, "R1", "SBY-0042", "denylisted")]
    assert [i.ts for i in s.items] == [at(27, 7), ride.ts, onward.ts, again.ts, refused.ts]
    assert {i.service_date for i in s.items} == {"2025-11-27"}

    indonesian = r.statement(lang="id")
    assert lines(indonesian) == lines(s)
    assert said(indonesian) == [
        "Isi ulang saldo Rp50.000 (referensi TU-1).",
        "Perjalanan baru: tarif penuh Rp5.000 (tarif umum).",
        "Transfer gratis dalam perjalanan yang sama: tarif penuh Rp5.000 (tarif umum), "
        "tidak lebih dari Rp5.000 yang sudah dibayar.",
        "Tap ulang di bus yang sama 60 detik setelah tap sebelumnya: tidak ditagih.",
        "Ditolak di pembaca kartu: kartu ada di daftar tolak (saldo kurang dari tarif terendah, "
        "atau kartu diblokir); tidak ditagih."]
    json = s.as_json()
    assert json["items"][1]["ts"] == "2025-11-27T01:00:00.000Z"  # 08:00 WIB
    assert (json["from"], json["to"], json["currency"]) == ("2025-11-27", "2025-11-27", "IDR")


def test_the_early_fare_then_a_transfer_that_pays_the_difference() -> None:
    r = Recorded()
    early, onward = tap(A, at(27, 6, 30)), tap(A, at(27, 7, 15), OTHER_BUS)
    r.send(at(27, 7, 20), early, onward)  # one batch: priced in tap order
    assert lines(r.statement()) == [("tap", -2000, -2000), ("tap", -3000, -5000)]
    assert said(r.statement()) == [
        "New journey: the full fare of Rp2.000 (the 05:00–07:00 fare).",
        "Transfer within the same journey: the full fare of Rp5.000 (the standard fare), "
        "less Rp2.000 already paid, so you paid the difference of Rp3.000."]
    assert said(r.statement(lang="id"))[0] == \
        "Perjalanan baru: tarif penuh Rp2.000 (tarif jam 05:00–07:00)."


def test_the_daily_cap_partly_then_wholly() -> None:
    r = Recorded()
    for t in (tap(A, at(27, 6)), tap(A, at(27, 9)), tap(A, at(27, 12)), tap(A, at(27, 15))):
        r.send(t.ts + 1000, t)
    s = r.statement()
    assert [a for _, a, _ in lines(s)] == [-2000, -5000, -3000, 0]  # cap 10000
    assert said(s)[2:] == [
        "New journey: the full fare of Rp5.000 (the standard fare); the daily cap was "
        "reached, so only Rp3.000 was charged (Rp2.000 waived).",
        "New journey: the full fare of Rp5.000 (the standard fare); the daily cap was "
        "reached, so nothing was charged (Rp5.000 waived)."]
    assert said(r.statement(lang="id"))[3] == (
        "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas harian sudah tercapai, "
        "jadi tidak ditagih (Rp5.000 dibebaskan).")


def test_a_distance_ride_charged_the_maximum_then_corrected_by_its_exit() -> None:
    r = Recorded(KRL_POLICY)
    entry = tap(A, at(27, 8), KRL_TRAIN, route_id="KRL-BOGOR", lat_e6=START_LAT_E6,
                lon_e6=LON_E6)
    exit_ = tap(A, at(27, 8, 50), KRL_TRAIN, route_id="KRL-BOGOR", kind="exit",
                lat_e6=KM_40, lon_e6=LON_E6)
    r.send(at(27, 8, 1), entry)
    r.send(at(27, 8, 52), exit_)
    s = r.statement()
    # 40 km: 3000 + 1000 * ceil(15 / 10) = 5000, so 8000 of the 13000 comes back.
    assert lines(s) == [("tap", -13_000, -13_000), ("tap", 0, -13_000),
                        ("correction", 8000, -5000)]
    assert said(s) == [
        "New journey: the maximum fare of Rp13.000, as there was no tap-out (the fare of "
        "route KRL-BOGOR).",
        "Tap-out after a ride of 40.0 km: free in itself, it sets that ride's distance fare.",
        "Your tap-out at 08:50 re-priced this ride by distance (40.0 km): it now costs "
        "Rp5.000; Rp8.000 back to the card."]
    correction = s.items[2]
    assert (correction.tap_id, correction.route_id, correction.ts) == (
        entry.tap_id, "KRL-BOGOR", at(27, 8, 52))
    assert said(r.statement(lang="id"))[2] == (
        "Tap keluar Anda pukul 08:50 menghitung ulang perjalanan ini menurut jarak "
        "(40,0 km): sekarang Rp5.000; Rp8.000 dikembalikan ke kartu.")

    # In one batch the gateway prices the entry (the maximum) before its exit all the
    # same: the same lines and sentences.
    together = Recorded(KRL_POLICY)
    together.send(at(27, 8, 52), entry, exit_)
    assert lines(together.statement()) == lines(s)
    assert said(together.statement()) == said(s)


def test_a_late_tap_re_prices_the_day_and_the_correction_names_it() -> None:
    r = Recorded()
    r.post(at(27, 5), topup_entry(card=A, amount=50_000, reference="TU-2", currency="IDR"))
    early = tap(A, at(27, 6, 30))  # from a bus that was offline until 10:00
    later = tap(A, at(27, 7, 15), OTHER_BUS)
    r.send(at(27, 7, 16), later)
    r.send(at(27, 10), early)
    s = r.statement()
    assert lines(s) == [("topup", 50_000, 50_000), ("tap", -2000, 48_000),
                        ("tap", -5000, 43_000), ("correction", 2000, 45_000)]
    assert said(s)[1:] == [
        "New journey: the full fare of Rp2.000 (the 05:00–07:00 fare).",
        # What it cost when it was posted, before the early tap was known:
        "New journey: the full fare of Rp5.000 (the standard fare).",
        "A tap made at 06:30 on route R1 that reached us later re-priced the day: transfer "
        "within the same journey: the full fare of Rp5.000 (the standard fare), less "
        "Rp2.000 already paid, so you paid the difference of Rp3.000; Rp2.000 back to the "
        "card."]
    assert s.items[3].tap_id == later.tap_id and s.items[3].ts == at(27, 10)
    assert said(r.statement(lang="id"))[3] == (
        "Tap pukul 06:30 di rute R1 yang baru kami terima kemudian menghitung ulang hari "
        "itu: transfer dalam perjalanan yang sama: tarif penuh Rp5.000 (tarif umum), "
        "dikurangi Rp2.000 yang sudah dibayar, jadi Anda membayar selisihnya Rp3.000; "
        "Rp2.000 dikembalikan ke kartu.")


def test_the_window_picks_tap_lines_by_service_date_and_others_by_posting_time() -> None:
    r = Recorded()
    r.post(at(27, 5), topup_entry(card=A, amount=50_000, reference="TU-3", currency="IDR"))
    early, later = tap(A, at(27, 6, 30)), tap(A, at(27, 7, 15), OTHER_BUS)
    r.send(at(27, 7, 16), later)
    r.send(at(28, 10), early)  # the next service day: its correction is posted then
    first = r.statement(DAY, DAY)
    assert lines(first) == [("topup", 50_000, 50_000), ("tap", -2000, 48_000),
                            ("tap", -5000, 43_000)]
    second = r.statement(date(2025, 11, 28), date(2025, 11, 28), opening=43_000)
    assert lines(second) == [("correction", 2000, 45_000)]
    assert second.items[0].service_date == "2025-11-28"
    assert second.items[0].explanation.startswith("A tap made at 06:30 on route R1")
    both = r.statement(DAY, date(2025, 11, 28))
    assert lines(both) == lines(first) + lines(second)
    assert lines(r.statement(date(2025, 11, 29), date(2025, 11, 30), opening=45_000)) == []


def test_lines_at_one_instant_follow_their_entries() -> None:
    r = Recorded()
    for ref in ("TU-B", "TU-A", "TU-C"):
        r.post(at(27, 8), topup_entry(card=A, amount=1000, reference=ref, currency="IDR"))
    s = r.statement()
    assert [i.explanation for i in s.items] == [f"Top-up of Rp1.000 (reference {ref})."
                                                for ref in ("TU-B", "TU-A", "TU-C")]
    assert [i.balance_after for i in s.items] == [1000, 2000, 3000]
    reordered = assemble(SBY_POLICY, A, "regular", 0, list(reversed(r.movements())), [],
                         statement_window(SBY_POLICY, DAY, DAY, DAY), "en")
    assert said(reordered) == said(s)


def test_a_tap_that_arrives_after_the_card_was_replaced_is_a_real_ride_on_it() -> None:
    r = Recorded()
    r.post(at(27, 5), topup_entry(card=A, amount=20_000, reference="TU-4", currency="IDR"))
    ride = tap(A, at(27, 8))  # made on a bus that was offline until 12:00
    r.post(at(27, 9), transfer_entry(old_card=A, new_card=NEW, amount=20_000,
                                     currency="IDR"))
    r.send(at(27, 12), ride)
    s = r.statement(replaced=Replacement(NEW, at(27, 9)))
    # Charged after the whole balance had moved: the lost card goes below zero, and
    # nothing is taken from the new card.
    assert lines(s) == [("topup", 20_000, 20_000), ("tap", -5000, 15_000),
                        ("transfer_out", -20_000, -5000)]
    assert said(s)[1:] == [
        f"This tap reached us after the card was replaced by {NEW} (the bus was offline), "
        "so it is charged to this card as a real ride: new journey: the full fare of "
        "Rp5.000 (the standard fare).",
        f"The whole balance of Rp20.000 moved to the replacement card {NEW}."]
    # The new card sees the same transfer from its side.
    incoming = assemble(SBY_POLICY, NEW, "regular", 0, r.movements(NEW), [],
                        statement_window(SBY_POLICY, DAY, DAY, DAY), "id")
    assert lines(incoming) == [("transfer_in", 20_000, 20_000)]
    assert said(incoming) == [f"Saldo Rp20.000 dipindahkan dari kartu {A}, yang digantikan "
                              "oleh kartu ini."]
    # A tap that came in before the replacement is told as any other.
    assert not said(r.statement(replaced=Replacement(NEW, at(27, 13))))[1].startswith("This")


def test_a_refund_names_its_dispute_and_its_tap() -> None:
    r = Recorded()
    ride = tap(A, at(27, 8))
    r.send(at(27, 8, 1), ride)
    r.post(at(27, 20), refund_entry(dispute_id=12, card=A, amount=5000, currency="IDR",
                                    operator_id="SBY", route_id="R1", category="regular",
                                    service_date="2025-11-27"))
    s = r.statement(disputes={12: ride.tap_id})
    assert lines(s) == [("tap", -5000, -5000), ("refund", 5000, 0)]
    assert (s.items[1].tap_id, s.items[1].route_id) == (ride.tap_id, "R1")
    assert said(s)[1] == "Refund of Rp5.000 for dispute no. 12."
    assert said(r.statement(lang="id"))[1] == "Pengembalian dana Rp5.000 atas pengaduan no. 12."


def test_adjustments_and_kinds_not_known_yet_are_lines_too() -> None:
    window = statement_window(SBY_POLICY, DAY, DAY, DAY)
    moved = [Movement(1, "adjustment", "adj:1", at(27, 9), -1500, None, "FIN-7", None, None,
                      None, A),
             Movement(2, "bonus", "bonus:1", at(27, 10), 700, None, None, None, None, None, A)]
    s = assemble(SBY_POLICY, A, "regular", 10_000, moved, [], window, "en")
    assert lines(s) == [("adjustment", -1500, 8500), ("adjustment", 700, 9200)]
    assert said(s) == ["Manual adjustment: Rp1.500 debited (reference FIN-7).",
                       "Balance movement of Rp700 (bonus)."]


def test_rejected_taps_and_taps_of_unknown_cards_are_left_out() -> None:
    r = Recorded()
    r.send(at(27, 8, 1), tap(A, at(27, 8)))
    row = r.taps()[0]
    hidden = [row._replace(tap_id=f"X:{n}", status=status)
              for n, status in enumerate(("rejected", "unknown_card"))]
    s = assemble(SBY_POLICY, A, "regular", 0, r.movements(), [row, *hidden],
                 statement_window(SBY_POLICY, DAY, DAY, DAY))
    assert [i.tap_id for i in s.items] == [row.tap_id]


def test_rows_in_any_order_make_the_same_statement() -> None:
    """The database returns rows in no order of its own: the lines are the same
    whatever the order of the rows they are made from."""
    r = Recorded()
    r.post(at(27, 5), topup_entry(card=A, amount=50_000, reference="TU-5", currency="IDR"))
    later = tap(A, at(27, 7, 15), OTHER_BUS)
    r.send(at(27, 7, 16), later, tap(A, at(27, 7, 16), OTHER_BUS))  # and a repeat
    r.send(at(27, 10), tap(A, at(27, 6, 30)))
    window = statement_window(SBY_POLICY, DAY, DAY, DAY)
    apart = r.statement()
    shuffled = assemble(SBY_POLICY, A, "regular", 0, list(reversed(r.movements())),
                        list(reversed(r.taps())), window, "en")
    assert shuffled.items == apart.items
    assert [i.type for i in apart.items] == ["topup", "tap", "tap", "tap", "correction"]


def test_a_fare_whose_tap_is_not_in_the_inbox_is_a_line_all_the_same() -> None:
    window = statement_window(SBY_POLICY, DAY, DAY, DAY)
    fare = Movement(3, "fare", "tap:X-A:1", at(27, 8), -5000, "X-A:1", None, "2025-11-27",
                    "R1", "regular", A)
    s = assemble(SBY_POLICY, A, "regular", 10_000, [fare], [], window, "en")
    assert lines(s) == [("tap", -5000, 5000)]
    assert said(s) == ["Fare of Rp5.000 for a tap on route R1."]
    assert s.items[0].tap_id == "X-A:1"


def test_stops_are_named_on_the_lines_of_their_taps() -> None:
    r = Recorded()
    ride = tap(A, at(27, 8))
    r.send(at(27, 8, 1), ride)
    stop = StopRow("S1", "Tunjungan", ride.lat_e6, ride.lon_e6 + 500)
    s = r.statement(stops={ride.tap_id: stop})
    assert (s.items[0].stop_id, s.items[0].stop_name) == ("S1", "Tunjungan")
    assert s.as_json()["items"][0]["stop_name"] == "Tunjungan"


# -- the window asked for ------------------------------------------------------------


def test_the_default_window_is_the_30_days_up_to_today() -> None:
    w = statement_window(SBY_POLICY, None, None, date(2026, 12, 31))
    assert (w.first, w.last) == (date(2026, 12, 2), date(2026, 12, 31))
    # 03:00 WIB (20:00 UTC the day before) on the first day, to 03:00 after the last.
    assert w.start_ms == int(datetime(2026, 12, 2, 3, tzinfo=WIB).timestamp()) * 1000
    assert w.end_ms - w.start_ms == 30 * 86_400_000
    only_to = statement_window(SBY_POLICY, None, date(2026, 1, 31), date(2026, 12, 31))
    assert only_to.first == date(2026, 1, 2)


def test_a_window_that_cannot_be_asked_for() -> None:
    today = date(2026, 12, 31)
    for first, last, code in ((date(2026, 12, 2), date(2026, 12, 1), "bad_window"),
                              (date(2026, 1, 1), None, None),
                              (date(2023, 12, 30), today, "window_too_long")):
        try:
            statement_window(SBY_POLICY, first, last, today)
        except StatementError as exc:
            assert exc.code == code, (first, last, exc)
        else:
            assert code is None, (first, last)
    longest = statement_window(SBY_POLICY, today - timedelta(days=MAX_DAYS - 1), today, today)
    assert (longest.last - longest.first).days + 1 == MAX_DAYS


# -- at the time ---------------------------------------------------------------------


ENTRIES = st.lists(st.tuples(st.integers(0, 3 * 3_600_000),
                             st.sampled_from(["SBY-0042", "SBY-0077"])),
                   min_size=1, max_size=10)


@settings(max_examples=150, deadline=None)
@given(gaps=ENTRIES, batches=st.lists(st.integers(1, 3), min_size=10, max_size=10),
       category=st.sampled_from(["regular", "student", "senior"]))
def test_a_day_that_arrived_in_order_prices_each_tap_as_its_own_arrival_did(
        gaps: list[tuple[int, str]], batches: list[int], category: str) -> None:
    """The shortcut (one pricing of the whole day) against the exact replay."""
    ts, made = at(27, 4), []
    for i, (gap, vehicle) in enumerate(gaps):
        ts += gap
        made.append(TapRow(f"{vehicle}-A:{i}", f"{vehicle}-A", i, ts, vehicle, "R1", "entry",
                           True, None, 0, 0, "2025-11-27", "charged", 0))
    made.sort(key=event_key)
    rows, left, received = [], 0, 0
    for i, row in enumerate(made):  # batches in tap order, each one arrival time
        if left == 0:
            received, left = row.ts + 1, batches[i]
        left -= 1
        rows.append(row._replace(received_ms=received))
    day = DayPrices(SBY_POLICY, category, rows)
    assert day.causal
    for row in rows:
        arrived = [r.priced() for r in rows if arrival_key(r) <= arrival_key(row)]
        exact = price_day(SBY_POLICY, category, arrived)
        assert tuple(day.charge_at(row.tap_id) or ()) == tuple(exact.charges[row.tap_id])


def test_a_day_that_arrived_out_of_order_is_replayed_as_it_arrived() -> None:
    late = TapRow("B:1", "B", 1, at(27, 6, 30), "SBY-0077", "R1", "entry", True, None, 0, 0,
                  "2025-11-27", "charged", at(27, 10))
    first = TapRow("A:1", "A", 1, at(27, 7, 15), "SBY-0042", "R1", "entry", True, None, 0, 0,
                   "2025-11-27", "charged", at(27, 7, 16))
    day = DayPrices(SBY_POLICY, "regular", [late, first])
    assert not day.causal
    at_its_time = day.charge_at(first.tap_id)
    assert at_its_time is not None and (at_its_time.role, at_its_time.amount) == (
        "new_journey", 5000)
    since = day.charge_at(first.tap_id, as_of=late.tap_id)
    assert since is not None and (since.role, since.amount) == ("transfer", 3000)
    assert day.charge_at(first.tap_id, as_of="nobody:1") is None


# -- stops ---------------------------------------------------------------------------


SBY_LAT, SBY_LON = -7_257_500, 112_752_100  # Tunjungan, Surabaya


def test_the_nearest_stop_within_150_m() -> None:
    near = StopRow("NEAR", "Near", SBY_LAT + 500, SBY_LON)     # ~56 m
    nearer = StopRow("NEARER", "Nearer", SBY_LAT, SBY_LON + 300)  # ~33 m
    far = StopRow("FAR", "Far", SBY_LAT + 1400, SBY_LON)       # ~156 m
    points = {"a": (SBY_LAT, SBY_LON), "b": (SBY_LAT + 2000, SBY_LON), "c": (0, 0)}
    found = nearest_stops(points, [near, nearer, far])
    assert found == {"a": nearer, "b": far}  # b is ~67 m from FAR, ~167 m from NEAR
    assert nearest_stops(points, []) == {}


@settings(max_examples=300, deadline=None)
@given(lat=st.integers(-60_000_000, 60_000_000), lon=st.integers(-179_000_000, 179_000_000),
       dlat=st.integers(-1400, 1400), dlon=st.integers(-3000, 3000),
       other=st.integers(-1400, 1400))
def test_the_nearest_stop_found_by_cells_is_the_nearest_within_reach(
        lat: int, lon: int, dlat: int, dlon: int, other: int) -> None:
    """Looking only in the cells around a point misses no stop within 150 m, across cell
    and hemisphere boundaries, and never names one farther away."""
    if (lat, lon) == (0, 0):
        return  # a tap without a fix names no stop
    stops = [StopRow("S", "S", lat + dlat, lon + dlon), StopRow("T", "T", lat + other, lon)]
    within = [(approx_metres(lat, lon, s.lat_e6, s.lon_e6), s.stop_id, s) for s in stops]
    found = nearest_stops({"p": (lat, lon)}, stops).get("p")
    near = sorted(w for w in within if w[0] <= 149.0)
    if near:  # the nearest, or one as near to within the two formulas' difference
        assert found is not None
        assert approx_metres(lat, lon, found.lat_e6, found.lon_e6) <= near[0][0] + 0.5
    if all(m > 151.0 for m, _, _ in within):
        assert found is None
