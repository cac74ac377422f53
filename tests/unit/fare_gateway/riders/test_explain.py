"""The statement's sentences, every kind in Indonesian and English, the language an
Accept-Language header chooses, and what the fare engine tells them (its `Charge`):
which cap lowered a charge (daily, weekly, monthly), the next boarding that stood in
for a missing tap-out, a late tap of an earlier day that moved a week's or month's cap."""

from __future__ import annotations

import tomllib

import pytest

from fare_gateway.fares.engine import Charge, Earlier, price_day
from fare_gateway.fares.policy import parse_policy
from fare_gateway.riders import explain
from fare_gateway.riders.explain import Boarding, LateTap
from tests.unit.fare_gateway.fares.test_engine_worked_examples import (
    KM_40,
    KRL,
    SBY,
    at,
    tap,
)

# The KRL rule with a next entry within 120 minutes standing in for a missing tap-out;
# any other route 5000 flat.
KRL_INFERRING = parse_policy(tomllib.loads("""
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


@pytest.mark.parametrize("header,expected", [
    (None, "id"), ("", "id"), ("fr-FR, de;q=0.8", "id"),
    ("en", "en"), ("en-US,en;q=0.9", "en"), ("id-ID", "id"), ("in", "id"),
    ("en;q=0.5, id;q=0.8", "id"), ("id;q=0.4, en-GB;q=0.9", "en"),
    ("en, id", "en"), ("id, en", "id"),  # equal weights: the first named
    ("fr, en;q=0.1", "en"), ("EN-us", "en"),
    ("id;q=0", "en"), ("en;q=0", "id"), ("id;q=0, en;q=0", "id"),
    ("en;q=abc, id;q=0.3", "id"), ("en;q=1.5", "id"), ("en;q=1.", "en"), ("en;q=0.", "id"),
    ("*", "id"), (";;,,", "id"), ("en" + ", x" * 5000, "en"),
])
def test_accept_language_chooses_id_or_en(header: str | None, expected: str) -> None:
    assert explain.language(header) == expected


def test_rupiah_are_written_the_indonesian_way_in_both_languages() -> None:
    assert [explain.rupiah(n) for n in (0, 500, 5000, 13_000, 1_250_000, -5000)] == [
        "Rp0", "Rp500", "Rp5.000", "Rp13.000", "Rp1.250.000", "-Rp5.000"]
    assert explain.kilometres(12.345, "id") == "12,3 km"
    assert explain.kilometres(12.345, "en") == "12.3 km"
    assert explain.clock(5 * 60) == "05:00" and explain.clock(23 * 60 + 59) == "23:59"


# -- the engine says why -------------------------------------------------------------


def test_the_engine_names_the_rule_the_transfer_the_cap_and_the_repeat() -> None:
    taps = [tap(at(6, 30), "SBY-0042"),   # 2000: the early rule, index 0
            tap(at(6, 31), "SBY-0042"),   # repeat, 60 s after
            tap(at(7, 15), "SBY-0117"),   # transfer: 5000 - 2000
            tap(at(10, 0), "SBY-0200"),   # new journey 5000
            tap(at(13, 0), "SBY-0300")]   # 5000, capped to 0 (10000 a day)
    day = price_day(SBY, "regular", taps)
    early, repeat, onward, ride, capped = (day.charges[t.tap_id] for t in taps)
    assert (early.role, early.rule, early.window, early.routes, early.pricing) == (
        "new_journey", 0, (300, 420), ("*",), "flat")
    assert (repeat.role, repeat.related, repeat.since_ms, repeat.rule) == (
        "repeat", taps[0].tap_id, 60_000, None)
    assert (onward.role, onward.amount, onward.full_fare, onward.paid_before, onward.rule,
            onward.window) == ("transfer", 3000, 5000, 2000, 1, None)
    assert (ride.amount, ride.capped, ride.capped_by) == (5000, False, 0)
    # 2000 + 3000 + 5000 reach the cap of 10000: the last ride's 5000 is all cut.
    assert (capped.amount, capped.capped, capped.capped_by, capped.full_fare) == (
        0, True, 5000, 5000)


def test_the_engine_tells_a_distance_leg_by_its_exit_or_its_missing_exit() -> None:
    entry = tap(at(8, 0), "KRL-1001", "KRL-BOGOR")
    exit_ = tap(at(8, 50), "KRL-1001", "KRL-BOGOR", kind="exit", lat_e6=KM_40)
    alone = price_day(KRL, "regular", [entry]).charges[entry.tap_id]
    assert (alone.pricing, alone.amount, alone.km, alone.related, alone.routes) == (
        "max_no_exit", 13_000, None, None, ("KRL-BOGOR",))
    day = price_day(KRL, "regular", [entry, exit_])
    leg, out = day.charges[entry.tap_id], day.charges[exit_.tap_id]
    assert (leg.pricing, leg.amount, leg.related) == ("distance", 5000, exit_.tap_id)
    assert leg.km is not None and 39.9 < leg.km < 40.1
    assert (out.role, out.amount, out.related, out.km) == ("exit", 0, entry.tap_id, leg.km)
    # The charge is its first five fields: the reasons ride along.
    assert leg == Charge(entry.tap_id, 5000, 5000, "new_journey", False)
    assert hash(leg) == hash(Charge(entry.tap_id, 5000, 5000, "new_journey", False))
    assert leg != alone


def test_the_engine_names_the_cap_that_took_the_charge_down() -> None:
    ride = tap(at(9, 0), "SBY-0042")
    # 48,000 already this week (cap 50,000), nothing this month beyond it: 2000 is left.
    weekly = price_day(SBY, "regular", [ride], Earlier(week=48_000, month=48_000))
    charge = weekly.charges[ride.tap_id]
    assert (charge.amount, charge.capped_by, charge.cap) == (2000, 3000, "weekly")
    assert explain.tap_sentence(charge, "en") == (
        "New journey: the full fare of Rp5.000 (the standard fare); the weekly cap was "
        "reached, so only Rp2.000 was charged (Rp3.000 waived).")
    # 179,000 this month (cap 180,000): the month's cap is the tighter.
    monthly = price_day(SBY, "regular", [ride], Earlier(week=0, month=179_000))
    charge = monthly.charges[ride.tap_id]
    assert (charge.amount, charge.capped_by, charge.cap) == (1000, 4000, "monthly")
    assert explain.tap_sentence(charge, "id") == (
        "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas bulanan tercapai, jadi "
        "hanya Rp1.000 yang ditagih (Rp4.000 dibebaskan).")


def test_the_engine_prices_a_ride_to_where_the_card_next_boarded() -> None:
    entry = tap(at(8, 0), "KRL-1001", "KRL-BOGOR")
    onward = tap(at(8, 50), "SBY-0077", "R1", lat_e6=KM_40)
    day = price_day(KRL_INFERRING, "regular", [entry, onward])
    leg = day.charges[entry.tap_id]
    # 40 km: 3000 + 1000 * ceil(15 / 10) = 5000, not the maximum of 13000.
    assert (leg.pricing, leg.amount, leg.related) == ("inferred_exit", 5000, onward.tap_id)
    boarded = Boarding("08:50", "R1", "SBY-0077")
    assert explain.tap_sentence(leg, "en", boarded=boarded) == (
        "New journey: the distance fare of Rp5.000 for 40.0 km to where you next boarded "
        "(at 08:50 on route R1, vehicle SBY-0077), as there was no tap-out (the fare of "
        "route KRL-BOGOR).")
    assert explain.tap_sentence(leg, "id", boarded=boarded) == (
        "Perjalanan baru: tarif jarak Rp5.000 untuk 40,0 km sampai tempat Anda naik "
        "berikutnya (pukul 08:50 di rute R1, kendaraan SBY-0077), karena tidak ada tap "
        "keluar (tarif rute KRL-BOGOR).")
    # Only an inferred exit names where the card boarded next.
    assert explain.tap_sentence(FULL, "en", boarded=boarded) == SENTENCES[0][2]


# -- every kind, both languages ------------------------------------------------------


FULL = Charge("D:1", 5000, 5000, "new_journey", pricing="flat", rule=1, routes=("*",))
EARLY = FULL._replace(amount=2000, full_fare=2000, rule=0, window=(300, 420))
ROUTE = FULL._replace(routes=("R1", "R2"), window=(1320, 240))
MAXED = Charge("K:1", 13_000, 13_000, "new_journey", pricing="max_no_exit", rule=0,
               routes=("KRL-BOGOR",))
LEG = MAXED._replace(amount=5000, full_fare=5000, pricing="distance", km=40.0,
                     related="K:2")
TRANSFER = FULL._replace(role="transfer", amount=3000, paid_before=2000)
FREE = FULL._replace(role="transfer", amount=0, paid_before=5000)
CAPPED = FULL._replace(amount=3000, capped=True, capped_by=2000, cap="daily")
CAPPED_ALL = FULL._replace(amount=0, capped=True, capped_by=5000, cap="daily")
WEEKLY = FULL._replace(amount=2000, capped=True, capped_by=3000, cap="weekly")
MONTHLY_ALL = TRANSFER._replace(amount=0, capped=True, capped_by=3000, cap="monthly")
INFERRED = MAXED._replace(amount=5000, full_fare=5000, pricing="inferred_exit", km=40.0,
                          related="SBY-0077-B:4")
REPEAT = Charge("D:2", 0, 0, "repeat", related="D:1", since_ms=35_400)
EXIT = Charge("K:2", 0, 0, "exit", km=40.0, related="K:1")

# A list, not a dict: charges equal in their first five fields are one dict key.
SENTENCES: list[tuple[Charge, str, str]] = [
    (FULL, "Perjalanan baru: tarif penuh Rp5.000 (tarif umum).",
     "New journey: the full fare of Rp5.000 (the standard fare)."),
    (EARLY, "Perjalanan baru: tarif penuh Rp2.000 (tarif jam 05:00–07:00).",
     "New journey: the full fare of Rp2.000 (the 05:00–07:00 fare)."),
    (ROUTE, "Perjalanan baru: tarif penuh Rp5.000 (tarif rute R1, R2 jam 22:00–04:00).",
     "New journey: the full fare of Rp5.000 (the 22:00–04:00 fare of route R1, R2)."),
    (MAXED, "Perjalanan baru: tarif maksimum Rp13.000 karena tidak ada tap keluar (tarif "
            "rute KRL-BOGOR).",
     "New journey: the maximum fare of Rp13.000, as there was no tap-out (the fare of "
     "route KRL-BOGOR)."),
    (LEG, "Perjalanan baru: tarif jarak Rp5.000 untuk 40,0 km (tarif rute KRL-BOGOR).",
     "New journey: the distance fare of Rp5.000 for 40.0 km (the fare of route KRL-BOGOR)."),
    (TRANSFER, "Transfer dalam perjalanan yang sama: tarif penuh Rp5.000 (tarif umum), "
               "dikurangi Rp2.000 yang sudah dibayar, jadi Anda membayar selisihnya Rp3.000.",
     "Transfer within the same journey: the full fare of Rp5.000 (the standard fare), less "
     "Rp2.000 already paid, so you paid the difference of Rp3.000."),
    (FREE, "Transfer gratis dalam perjalanan yang sama: tarif penuh Rp5.000 (tarif umum), "
           "tidak lebih dari Rp5.000 yang sudah dibayar.",
     "Free transfer within the same journey: the full fare of Rp5.000 (the standard fare), "
     "no more than the Rp5.000 already paid."),
    (CAPPED, "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas harian tercapai, "
             "jadi hanya Rp3.000 yang ditagih (Rp2.000 dibebaskan).",
     "New journey: the full fare of Rp5.000 (the standard fare); the daily cap was "
     "reached, so only Rp3.000 was charged (Rp2.000 waived)."),
    (CAPPED_ALL, "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas harian sudah "
                 "tercapai, jadi tidak ditagih (Rp5.000 dibebaskan).",
     "New journey: the full fare of Rp5.000 (the standard fare); the daily cap was "
     "reached, so nothing was charged (Rp5.000 waived)."),
    (WEEKLY, "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas mingguan tercapai, "
             "jadi hanya Rp2.000 yang ditagih (Rp3.000 dibebaskan).",
     "New journey: the full fare of Rp5.000 (the standard fare); the weekly cap was "
     "reached, so only Rp2.000 was charged (Rp3.000 waived)."),
    (MONTHLY_ALL, "Transfer dalam perjalanan yang sama: tarif penuh Rp5.000 (tarif umum), "
                  "dikurangi Rp2.000 yang sudah dibayar, jadi Anda membayar selisihnya "
                  "Rp3.000; batas bulanan sudah tercapai, jadi tidak ditagih (Rp3.000 "
                  "dibebaskan).",
     "Transfer within the same journey: the full fare of Rp5.000 (the standard fare), less "
     "Rp2.000 already paid, so you paid the difference of Rp3.000; the monthly cap was "
     "reached, so nothing was charged (Rp3.000 waived)."),
    (INFERRED, "Perjalanan baru: tarif jarak Rp5.000 untuk 40,0 km sampai tempat Anda naik "
               "berikutnya, karena tidak ada tap keluar (tarif rute KRL-BOGOR).",
     "New journey: the distance fare of Rp5.000 for 40.0 km to where you next boarded, as "
     "there was no tap-out (the fare of route KRL-BOGOR)."),
    (REPEAT, "Tap ulang di bus yang sama 35 detik setelah tap sebelumnya: tidak ditagih.",
     "Repeat tap on the same bus 35 s after the previous one: not charged."),
    (EXIT, "Tap keluar setelah perjalanan 40,0 km: tap ini sendiri tidak ditagih, ia "
           "menetapkan tarif jarak perjalanan itu.",
     "Tap-out after a ride of 40.0 km: free in itself, it sets that ride's distance fare."),
    (Charge("K:3", 0, 0, "exit"), "Tap keluar: tidak ditagih.", "Tap-out: not charged."),
]


@pytest.mark.parametrize("charge,indonesian,english", SENTENCES,
                         ids=lambda v: v.pricing or v.role if isinstance(v, Charge) else "")
def test_a_charge_in_one_sentence(charge: Charge, indonesian: str, english: str) -> None:
    assert explain.tap_sentence(charge, "id") == indonesian
    assert explain.tap_sentence(charge, "en") == english
    assert explain.tap_sentence(charge) == indonesian  # Indonesian first


def test_a_tap_that_reached_us_after_the_card_was_replaced() -> None:
    assert explain.tap_sentence(FULL, "en", replaced_by="04B2") == (
        "This tap reached us after the card was replaced by 04B2 (the bus was offline), so "
        "it is charged to this card as a real ride: new journey: the full fare of Rp5.000 "
        "(the standard fare).")
    assert explain.tap_sentence(FULL, "id", replaced_by="04B2") == (
        "Tap ini baru sampai setelah kartu diganti dengan 04B2 (bus sedang offline), jadi "
        "ditagihkan ke kartu ini sebagai perjalanan sungguhan: perjalanan baru: tarif penuh "
        "Rp5.000 (tarif umum).")
    assert explain.tap_sentence(None, "en") == "Tap recorded."


def test_corrections_name_the_tap_that_re_priced_the_day() -> None:
    late = LateTap("SBY-0042-A:9", "06:30", "R1", "entry")
    assert explain.correction_sentence(TRANSFER, 2000, late, "en") == (
        "A tap made at 06:30 on route R1 that reached us later re-priced the day: transfer "
        "within the same journey: the full fare of Rp5.000 (the standard fare), less "
        "Rp2.000 already paid, so you paid the difference of Rp3.000; Rp2.000 back to the "
        "card.")
    assert explain.correction_sentence(FULL, -5000, late, "id") == (
        "Tap pukul 06:30 di rute R1 yang baru kami terima kemudian menghitung ulang hari "
        "itu: perjalanan baru: tarif penuh Rp5.000 (tarif umum); tambahan Rp5.000 ditagih.")
    tap_out = LateTap("K:2", "08:50", "KRL-BOGOR", "exit")
    assert explain.correction_sentence(LEG, 8000, tap_out, "en") == (
        "Your tap-out at 08:50 re-priced this ride by distance (40.0 km): it now costs "
        "Rp5.000; Rp8.000 back to the card.")
    assert explain.correction_sentence(FULL, 0, None, "en") == (
        "A tap that reached us later re-priced the day: new journey: the full fare of "
        "Rp5.000 (the standard fare); no change.")
    assert explain.correction_sentence(None, 100, None, "id") == (
        "Tap lain yang baru kami terima kemudian menghitung ulang hari itu; Rp100 "
        "dikembalikan ke kartu.")


def test_a_next_boarding_that_stood_in_for_the_tap_out_re_priced_the_ride() -> None:
    onward = LateTap("SBY-0077-B:4", "08:50", "R1", "entry", "2025-11-28")
    assert explain.correction_sentence(INFERRED, 8000, onward, "en",
                                       corrected_on="2025-11-28") == (
        "There was no tap-out, so this ride was re-priced by distance to where you next "
        "boarded, at 08:50 on route R1 (40.0 km): it now costs Rp5.000; Rp8.000 back to "
        "the card.")
    assert explain.correction_sentence(INFERRED, 8000, onward, "id") == (
        "Tidak ada tap keluar, jadi perjalanan ini dihitung ulang menurut jarak sampai "
        "tempat Anda naik berikutnya, pukul 08:50 di rute R1 (40,0 km): sekarang Rp5.000; "
        "Rp8.000 dikembalikan ke kartu.")


def test_a_late_tap_of_an_earlier_day_moved_what_the_week_or_month_had_left() -> None:
    # Monday 17 November's tap came in on Wednesday: Tuesday's ride is capped since.
    monday = LateTap("SBY-0042-A:7", "07:10", "R1", "entry", "2025-11-17")
    assert explain.correction_sentence(WEEKLY, 3000, monday, "en",
                                       corrected_on="2025-11-18") == (
        "A tap made on 17 November 2025 at 07:10 on route R1 that reached us later changed "
        "what was left of the weekly cap: new journey: the full fare of Rp5.000 (the "
        "standard fare); the weekly cap was reached, so only Rp2.000 was charged (Rp3.000 "
        "waived); Rp3.000 back to the card.")
    assert explain.correction_sentence(WEEKLY, 3000, monday, "id",
                                       corrected_on="2025-11-18") == (
        "Tap pada 17 November 2025 pukul 07:10 di rute R1 yang baru kami terima kemudian "
        "mengubah sisa batas mingguan: perjalanan baru: tarif penuh Rp5.000 (tarif umum); "
        "batas mingguan tercapai, jadi hanya Rp2.000 yang ditagih (Rp3.000 dibebaskan); "
        "Rp3.000 dikembalikan ke kartu.")
    # A tap of an earlier week moves only the month's; a late tap-out that lowered an
    # earlier day leaves more of the cap, and the charge goes up again.
    early_march = LateTap("SBY-0042-A:9", "18:05", "R1", "exit", "2026-03-01")
    assert explain.correction_sentence(FULL, -5000, early_march, "id",
                                       corrected_on="2026-03-04") == (
        "Tap pada 1 Maret 2026 pukul 18:05 di rute R1 yang baru kami terima kemudian "
        "mengubah sisa batas bulanan: perjalanan baru: tarif penuh Rp5.000 (tarif umum); "
        "tambahan Rp5.000 ditagih.")
    assert explain.correction_sentence(None, 100, early_march, "en",
                                       corrected_on="2026-03-04") == (
        "A tap made on 1 March 2026 at 18:05 on route R1 that reached us later changed what "
        "was left of the monthly cap; Rp100 back to the card.")
    # Within one week, the month's cap is named when it is the one that binds now.
    assert explain.period_moved(MONTHLY_ALL, "2025-11-17", "2025-11-18") == "monthly"
    assert explain.period_moved(FULL, "2025-11-17", "2025-11-23") == "weekly"
    assert explain.period_moved(FULL, "2025-11-23", "2025-11-24") == "monthly"
    assert [explain.long_date("2026-01-05", lang) for lang in ("id", "en")] == [
        "5 Januari 2026", "5 January 2026"]


@pytest.mark.parametrize("reason,indonesian,english", [
    ("denylisted", "Ditolak di pembaca kartu: kartu ada di daftar tolak (saldo kurang dari tarif "
                   "terendah, atau kartu diblokir); tidak ditagih.",
     "Refused at the reader: the card was on the deny list (balance below the lowest fare, "
     "or the card blocked); not charged."),
    ("repeat", "Ditolak di pembaca kartu: tap ulang di bus yang sama; tidak ditagih.",
     "Refused at the reader: a repeat tap on the same bus; not charged."),
    ("not_authentic", "Ditolak di pembaca kartu: kartu tidak lolos pemeriksaan keaslian; tidak "
                      "ditagih.",
     "Refused at the reader: the card failed the authenticity check; not charged."),
    ("insufficient_balance", "Ditolak di pembaca kartu: saldo tidak cukup; tidak ditagih.",
     "Refused at the reader: the balance was too low; not charged."),
    ("spool_full", "Ditolak di pembaca kartu: memori validator penuh, jadi tap tidak dapat "
                   "disimpan; tidak ditagih.",
     "Refused at the reader: the validator's storage was full, so the tap could not be "
     "kept; not charged."),
    ("unreadable", "Ditolak di pembaca kartu: kartu tidak terbaca; tidak ditagih.",
     "Refused at the reader: the card could not be read; not charged."),
    ("door_jammed", "Ditolak di pembaca kartu (alasan: door_jammed); tidak ditagih.",
     "Refused at the reader (reason: door_jammed); not charged."),
    (None, "Ditolak di pembaca kartu; tidak ditagih.", "Refused at the reader; not charged."),
])
def test_a_denied_tap_with_its_reason(reason: str | None, indonesian: str,
                                      english: str) -> None:
    assert explain.denied_sentence(reason, "id") == indonesian
    assert explain.denied_sentence(reason, "en") == english


def test_the_other_movements_of_the_balance() -> None:
    cases = [
        (explain.topup_sentence, (50_000, "TU-1"), "Isi ulang saldo Rp50.000 (referensi TU-1).",
         "Top-up of Rp50.000 (reference TU-1)."),
        (explain.refund_sentence, (5000, 12), "Pengembalian dana Rp5.000 atas pengaduan no. 12.",
         "Refund of Rp5.000 for dispute no. 12."),
        (explain.refund_sentence, (5000, None), "Pengembalian dana Rp5.000 atas sebuah "
                                                "pengaduan.", "Refund of Rp5.000 for a dispute."),
        (explain.transfer_in_sentence, (40_000, "04A1"), "Saldo Rp40.000 dipindahkan dari "
                                                         "kartu 04A1, yang digantikan oleh "
                                                         "kartu ini.",
         "Balance of Rp40.000 moved here from card 04A1, which this card replaces."),
        (explain.transfer_out_sentence, (-40_000, "04B2"), "Seluruh saldo Rp40.000 "
                                                           "dipindahkan ke kartu pengganti "
                                                           "04B2.",
         "The whole balance of Rp40.000 moved to the replacement card 04B2."),
        (explain.adjustment_sentence, (2500, "FIN-1"), "Penyesuaian manual: Rp2.500 "
                                                       "dikreditkan (referensi FIN-1).",
         "Manual adjustment: Rp2.500 credited (reference FIN-1)."),
        (explain.adjustment_sentence, (-2500, "FIN-2"), "Penyesuaian manual: Rp2.500 didebit "
                                                        "(referensi FIN-2).",
         "Manual adjustment: Rp2.500 debited (reference FIN-2)."),
        (explain.fare_entry_sentence, (-5000, "R1"), "Tarif Rp5.000 untuk tap di rute R1.",
         "Fare of Rp5.000 for a tap on route R1."),
        (explain.movement_sentence, ("bonus", 700), "Pergerakan saldo Rp700 (bonus).",
         "Balance movement of Rp700 (bonus)."),
    ]
    for fn, args, indonesian, english in cases:
        assert fn(*args, "id") == indonesian  # type: ignore[operator]
        assert fn(*args, "en") == english  # type: ignore[operator]


def test_every_sentence_is_one_sentence_in_each_language() -> None:
    for lang in explain.LANGUAGES:
        texts = [explain.tap_sentence(c, lang) for c, _, _ in SENTENCES]
        texts += [explain.denied_sentence(r, lang) for r in ("denylisted", None, "x")]
        for text in texts:
            assert text.endswith(".") and "\n" not in text, text
            assert text.count(". ") == 0, text  # no second sentence
    assert explain.TEXT["id"].keys() == explain.TEXT["en"].keys()
    assert explain.tap_sentence(FULL, "fr") == SENTENCES[0][1]  # unknown: Indonesian
