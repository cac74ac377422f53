"""The statement's sentences, every kind in Indonesian and English, the language an
Accept-Language header chooses, and what the fare engine tells them (its `Charge`)."""

from __future__ import annotations

import pytest

from fare_gateway.fares.engine import Charge, price_day
from fare_gateway.riders import explain
from fare_gateway.riders.explain import LateTap
from tests.unit.fare_gateway.fares.test_engine_worked_examples import (
    KM_40,
    KRL,
    SBY,
    at,
    tap,
)


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
CAPPED = FULL._replace(amount=3000, capped=True, capped_by=2000)
CAPPED_ALL = FULL._replace(amount=0, capped=True, capped_by=5000)
REPEAT = Charge("D:2", 0, 0, "repeat", related="D:1", since_ms=35_400)
EXIT = Charge("K:2", 0, 0, "exit", km=40.0, related="K:1")
UNPRICED = Charge("D:3", 0, 0, "new_journey", pricing="unpriced")

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
    (CAPPED, "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas tarif harian "
             "tercapai, jadi hanya Rp3.000 yang ditagih (Rp2.000 dibebaskan).",
     "New journey: the full fare of Rp5.000 (the standard fare); the daily fare cap was "
     "reached, so only Rp3.000 was charged (Rp2.000 waived)."),
    (CAPPED_ALL, "Perjalanan baru: tarif penuh Rp5.000 (tarif umum); batas tarif harian "
                 "sudah tercapai, jadi tidak ditagih.",
     "New journey: the full fare of Rp5.000 (the standard fare); the daily fare cap was "
     "reached, so nothing was charged."),
    (REPEAT, "Tap ulang di bus yang sama 35 detik setelah tap sebelumnya: tidak ditagih.",
     "Repeat tap on the same bus 35 s after the previous one: not charged."),
    (EXIT, "Tap keluar setelah perjalanan 40,0 km: tap ini sendiri tidak ditagih, ia "
           "menetapkan tarif jarak perjalanan itu.",
     "Tap-out after a ride of 40.0 km: free in itself, it sets that ride's distance fare."),
    (Charge("K:3", 0, 0, "exit"), "Tap keluar: tidak ditagih.", "Tap-out: not charged."),
    (UNPRICED, "Perjalanan baru: tidak ada tarif untuk rute dan jam ini.",
     "New journey: no fare applies to this route and time."),
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
