"""One sentence for each line of a rider's statement, in Indonesian (the default) or English.

The sentences say what the fare engine decided (`fare_gateway.fares.engine.Charge`:
which rule, transfer, cap (daily, weekly or monthly), repeat, distance, or the next
boarding that stood in for a missing tap-out) and what moved a card's balance otherwise
(top-ups, refunds, a lost card's balance moved to its replacement, a correction after a
tap that reached the gateway late, on the same day or on an earlier day of the week or
month). Pure functions of plain values: the statement works out the facts, these only
word them.

Amounts are written the Indonesian way in both languages, `Rp5.000` (a dot between
thousands, no decimals: the rupiah has none in use), so that a rider who switches
language sees the same figures as on the bus and the top-up receipt. Kilometres keep
the language's own decimal mark (`12,3 km`, `12.3 km`). Times are the network's local
wall-clock time, `07:42`, as on the bus; dates are written out, `17 November 2025`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import NamedTuple

from fare_gateway.fares.engine import Charge
from fare_gateway.fares.policy import week_of

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
# An Accept-Language header is short (a browser sends a few dozen characters); past
# these bounds the rest is not read.
MAX_HEADER_CHARS = 1000
MAX_RANGES = 40
QUALITY = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")


def language(accept_language: str | None) -> str:
    """`id` or `en` for an Accept-Language header: the one of the two with the higher q
    (the first named on a tie), `id` when the header names neither."""
    best: dict[str, tuple[float, int]] = {}
    refused: set[str] = set()
    ranges = (accept_language or "")[:MAX_HEADER_CHARS].split(",")[:MAX_RANGES]
    for position, part in enumerate(ranges):
        tag, _, params = part.partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        # `in` is the withdrawn ISO 639 code for Indonesian that old systems still send.
        lang = "id" if primary in ("id", "in") else "en" if primary == "en" else None
        if lang is None:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                q = float(value.strip()) if QUALITY.fullmatch(value.strip()) else -1.0
        if q < 0:
            continue  # a malformed weight: the range says nothing
        if q == 0:
            refused.add(lang)
        elif lang not in best or q > best[lang][0]:
            best[lang] = (q, best[lang][1] if lang in best else position)
    if best:
        return max(best, key=lambda lang: (best[lang][0], -best[lang][1]))
    if DEFAULT_LANGUAGE in refused and "en" not in refused:
        return "en"
    return DEFAULT_LANGUAGE


def rupiah(amount: int) -> str:
    """`Rp5.000`: whole rupiah with a dot between thousands (`-Rp5.000` below zero)."""
    text = f"Rp{abs(amount):,}".replace(",", ".")
    return f"-{text}" if amount < 0 else text


def kilometres(km: float, lang: str) -> str:
    """`12,3 km` in Indonesian, `12.3 km` in English."""
    text = f"{km:.1f}"
    return f"{text.replace('.', ',') if lang == 'id' else text} km"


def clock(minute_of_day: int) -> str:
    """`05:00` for a local minute of the day."""
    return f"{minute_of_day // 60 % 24:02d}:{minute_of_day % 60:02d}"


MONTHS = {
    "id": ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
           "September", "Oktober", "November", "Desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
}


def long_date(service_date: str, lang: str) -> str:
    """`17 November 2025` for an ISO date, the month named in the language."""
    day = date.fromisoformat(service_date)
    months = MONTHS[lang] if lang in MONTHS else MONTHS[DEFAULT_LANGUAGE]
    return f"{day.day} {months[day.month - 1]} {day.year}"


class LateTap(NamedTuple):
    """The tap whose late arrival re-priced a day, as a correction's sentence names it."""

    tap_id: str
    clock: str  # local time it was made, `07:42`
    route_id: str
    kind: str  # entry | exit
    service_date: str = ""  # its own service day (ISO), when known


class Boarding(NamedTuple):
    """Where a card next boarded: the entry that stood in for a missing tap-out."""

    clock: str  # local time, `08:50`
    route_id: str
    vehicle_id: str


TEXT: dict[str, dict[str, str]] = {
    "id": {
        "rule_any": "tarif umum",
        "rule_window": "tarif jam {start}–{end}",
        "rule_routes": "tarif rute {routes}",
        "rule_routes_window": "tarif rute {routes} jam {start}–{end}",
        "flat": "tarif penuh {fare} ({rule})",
        "distance": "tarif jarak {fare} untuk {km} ({rule})",
        "max_no_exit": "tarif maksimum {fare} karena tidak ada tap keluar ({rule})",
        "inferred_exit": "tarif jarak {fare} untuk {km} sampai tempat Anda naik berikutnya "
                         "({boarded}), karena tidak ada tap keluar ({rule})",
        "inferred_exit_bare": "tarif jarak {fare} untuk {km} sampai tempat Anda naik "
                              "berikutnya, karena tidak ada tap keluar ({rule})",
        "boarded": "pukul {clock} di rute {route}, kendaraan {vehicle}",
        "new_journey": "Perjalanan baru: {fare}",
        "transfer_paid": "Transfer dalam perjalanan yang sama: {fare}, dikurangi {paid} yang "
                         "sudah dibayar, jadi Anda membayar selisihnya {due}",
        "transfer_free": "Transfer gratis dalam perjalanan yang sama: {fare}, tidak lebih "
                         "dari {paid} yang sudah dibayar",
        "daily": "batas harian",
        "weekly": "batas mingguan",
        "monthly": "batas bulanan",
        "capped_all": "; {cap} sudah tercapai, jadi tidak ditagih ({cut} dibebaskan)",
        "capped_part": "; {cap} tercapai, jadi hanya {charged} yang ditagih ({cut} "
                       "dibebaskan)",
        "repeat": "Tap ulang di bus yang sama {seconds} detik setelah tap sebelumnya: "
                  "tidak ditagih.",
        "exit_leg": "Tap keluar setelah perjalanan {km}: tap ini sendiri tidak ditagih, ia "
                    "menetapkan tarif jarak perjalanan itu.",
        "exit": "Tap keluar: tidak ditagih.",
        "tap": "Tap tercatat.",
        "after_replacement": "Tap ini baru sampai setelah kartu diganti dengan {card} (bus "
                             "sedang offline), jadi ditagihkan ke kartu ini sebagai "
                             "perjalanan sungguhan: {why}",
        "corr_exit": "Tap keluar Anda pukul {clock} menghitung ulang perjalanan ini menurut "
                     "jarak ({km}): sekarang {now}; {change}.",
        "corr_inferred": "Tidak ada tap keluar, jadi perjalanan ini dihitung ulang menurut "
                         "jarak sampai tempat Anda naik berikutnya, pukul {clock} di rute "
                         "{route} ({km}): sekarang {now}; {change}.",
        "corr_late": "Tap pukul {clock} di rute {route} yang baru kami terima kemudian "
                     "menghitung ulang hari itu: {why}; {change}.",
        "corr_period": "Tap pada {date} pukul {clock} di rute {route} yang baru kami terima "
                       "kemudian mengubah sisa {cap}: {why}; {change}.",
        "corr_period_bare": "Tap pada {date} pukul {clock} di rute {route} yang baru kami "
                            "terima kemudian mengubah sisa {cap}; {change}.",
        "corr_unknown": "Tap lain yang baru kami terima kemudian menghitung ulang hari itu: "
                        "{why}; {change}.",
        "corr_bare": "Tap lain yang baru kami terima kemudian menghitung ulang hari itu; "
                     "{change}.",
        "back": "{amount} dikembalikan ke kartu",
        "more": "tambahan {amount} ditagih",
        "same": "tanpa perubahan",
        "fare_entry": "Tarif {amount} untuk tap di rute {route}.",
        "denied": "Ditolak di pembaca kartu: {why}; tidak ditagih.",
        "denied_none": "Ditolak di pembaca kartu; tidak ditagih.",
        "denied_other": "Ditolak di pembaca kartu (alasan: {reason}); tidak ditagih.",
        "denylisted": "kartu ada di daftar tolak (saldo kurang dari tarif terendah, atau "
                      "kartu diblokir)",
        "reason_repeat": "tap ulang di bus yang sama",
        "not_authentic": "kartu tidak lolos pemeriksaan keaslian",
        "spool_full": "memori validator penuh, jadi tap tidak dapat disimpan",
        "unreadable": "kartu tidak terbaca",
        "balance": "saldo tidak cukup",
        "blocked": "kartu diblokir",
        "topup": "Isi ulang saldo {amount} (referensi {reference}).",
        "refund": "Pengembalian dana {amount} atas pengaduan no. {dispute}.",
        "refund_bare": "Pengembalian dana {amount} atas sebuah pengaduan.",
        "transfer_in": "Saldo {amount} dipindahkan dari kartu {card}, yang digantikan oleh "
                       "kartu ini.",
        "transfer_out": "Seluruh saldo {amount} dipindahkan ke kartu pengganti {card}.",
        "adjustment_in": "Penyesuaian manual: {amount} dikreditkan (referensi {reference}).",
        "adjustment_out": "Penyesuaian manual: {amount} didebit (referensi {reference}).",
        "other": "Pergerakan saldo {amount} ({kind}).",
    },
    "en": {
        "rule_any": "the standard fare",
        "rule_window": "the {start}–{end} fare",
        "rule_routes": "the fare of route {routes}",
        "rule_routes_window": "the {start}–{end} fare of route {routes}",
        "flat": "the full fare of {fare} ({rule})",
        "distance": "the distance fare of {fare} for {km} ({rule})",
        "max_no_exit": "the maximum fare of {fare}, as there was no tap-out ({rule})",
        "inferred_exit": "the distance fare of {fare} for {km} to where you next boarded "
                         "({boarded}), as there was no tap-out ({rule})",
        "inferred_exit_bare": "the distance fare of {fare} for {km} to where you next "
                              "boarded, as there was no tap-out ({rule})",
        "boarded": "at {clock} on route {route}, vehicle {vehicle}",
        "new_journey": "New journey: {fare}",
        "transfer_paid": "Transfer within the same journey: {fare}, less {paid} already "
                         "paid, so you paid the difference of {due}",
        "transfer_free": "Free transfer within the same journey: {fare}, no more than the "
                         "{paid} already paid",
        "daily": "daily cap",
        "weekly": "weekly cap",
        "monthly": "monthly cap",
        "capped_all": "; the {cap} was reached, so nothing was charged ({cut} waived)",
        "capped_part": "; the {cap} was reached, so only {charged} was charged ({cut} "
                       "waived)",
        "repeat": "Repeat tap on the same bus {seconds} s after the previous one: not "
                  "charged.",
        "exit_leg": "Tap-out after a ride of {km}: free in itself, it sets that ride's "
                    "distance fare.",
        "exit": "Tap-out: not charged.",
        "tap": "Tap recorded.",
        "after_replacement": "This tap reached us after the card was replaced by {card} "
                             "(the bus was offline), so it is charged to this card as a "
                             "real ride: {why}",
        "corr_exit": "Your tap-out at {clock} re-priced this ride by distance ({km}): it "
                     "now costs {now}; {change}.",
        "corr_inferred": "There was no tap-out, so this ride was re-priced by distance to "
                         "where you next boarded, at {clock} on route {route} ({km}): it "
                         "now costs {now}; {change}.",
        "corr_late": "A tap made at {clock} on route {route} that reached us later "
                     "re-priced the day: {why}; {change}.",
        "corr_period": "A tap made on {date} at {clock} on route {route} that reached us "
                       "later changed what was left of the {cap}: {why}; {change}.",
        "corr_period_bare": "A tap made on {date} at {clock} on route {route} that reached "
                            "us later changed what was left of the {cap}; {change}.",
        "corr_unknown": "A tap that reached us later re-priced the day: {why}; {change}.",
        "corr_bare": "A tap that reached us later re-priced the day; {change}.",
        "back": "{amount} back to the card",
        "more": "{amount} more charged",
        "same": "no change",
        "fare_entry": "Fare of {amount} for a tap on route {route}.",
        "denied": "Refused at the reader: {why}; not charged.",
        "denied_none": "Refused at the reader; not charged.",
        "denied_other": "Refused at the reader (reason: {reason}); not charged.",
        "denylisted": "the card was on the deny list (balance below the lowest fare, or "
                      "the card blocked)",
        "reason_repeat": "a repeat tap on the same bus",
        "not_authentic": "the card failed the authenticity check",
        "spool_full": "the validator's storage was full, so the tap could not be kept",
        "unreadable": "the card could not be read",
        "balance": "the balance was too low",
        "blocked": "the card is blocked",
        "topup": "Top-up of {amount} (reference {reference}).",
        "refund": "Refund of {amount} for dispute no. {dispute}.",
        "refund_bare": "Refund of {amount} for a dispute.",
        "transfer_in": "Balance of {amount} moved here from card {card}, which this card "
                       "replaces.",
        "transfer_out": "The whole balance of {amount} moved to the replacement card {card}.",
        "adjustment_in": "Manual adjustment: {amount} credited (reference {reference}).",
        "adjustment_out": "Manual adjustment: {amount} debited (reference {reference}).",
        "other": "Balance movement of {amount} ({kind}).",
    },
}
# The reasons a reader gives for a refusal (validator_agent.domain.Decision), and the
# spellings of a low balance other readers use; any other reason is shown as it is.
DENIAL_REASONS = {"denylisted": "denylisted", "repeat": "reason_repeat",
                  "not_authentic": "not_authentic", "spool_full": "spool_full",
                  "unreadable": "unreadable", "insufficient_balance": "balance",
                  "low_balance": "balance", "balance": "balance", "blocked": "blocked"}


def _text(lang: str) -> dict[str, str]:
    return TEXT[lang] if lang in TEXT else TEXT[DEFAULT_LANGUAGE]


def _lower_first(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def rule_name(charge: Charge, lang: str = DEFAULT_LANGUAGE) -> str:
    """The rule that priced an entry, as a sentence names it (`tarif jam 05:00–07:00`)."""
    t = _text(lang)
    routes = ", ".join(charge.routes) if "*" not in charge.routes else ""
    if charge.window is None:
        return t["rule_routes"].format(routes=routes) if routes else t["rule_any"]
    start, end = clock(charge.window[0]), clock(charge.window[1])
    if routes:
        return t["rule_routes_window"].format(routes=routes, start=start, end=end)
    return t["rule_window"].format(start=start, end=end)


CAPS = ("daily", "weekly", "monthly")


def _fare(charge: Charge, lang: str, boarded: Boarding | None) -> str:
    t = _text(lang)
    rule = rule_name(charge, lang)
    fare = rupiah(charge.full_fare)
    if charge.pricing == "distance" and charge.km is not None:
        return t["distance"].format(fare=fare, km=kilometres(charge.km, lang), rule=rule)
    if charge.pricing == "inferred_exit" and charge.km is not None:
        km = kilometres(charge.km, lang)
        if boarded is None:
            return t["inferred_exit_bare"].format(fare=fare, km=km, rule=rule)
        where = t["boarded"].format(clock=boarded.clock, route=boarded.route_id,
                                    vehicle=boarded.vehicle_id)
        return t["inferred_exit"].format(fare=fare, km=km, boarded=where, rule=rule)
    if charge.pricing == "max_no_exit":
        return t["max_no_exit"].format(fare=fare, rule=rule)
    return t["flat"].format(fare=fare, rule=rule)


def cap_name(cap: str, lang: str = DEFAULT_LANGUAGE) -> str:
    """`batas mingguan` / `weekly cap`: the cap that lowered a charge (daily when the
    charge does not say)."""
    return _text(lang)[cap if cap in CAPS else "daily"]


def _charge_clause(charge: Charge, lang: str, boarded: Boarding | None = None) -> str:
    """Why an entry, exit or repeat cost what it did, without the closing full stop."""
    return charge_sentence(charge, lang, boarded).removesuffix(".")


def charge_sentence(charge: Charge, lang: str = DEFAULT_LANGUAGE,
                    boarded: Boarding | None = None) -> str:
    """Why a tap cost what it did: full fare, transfer, cap, repeat, distance, tap-out;
    `boarded` is the next entry that stood in for a missing tap-out (an inferred exit)."""
    t = _text(lang)
    if charge.role == "repeat":
        return t["repeat"].format(seconds=round(charge.since_ms / 1000))
    if charge.role == "exit":
        if charge.km is not None and charge.related is not None:
            return t["exit_leg"].format(km=kilometres(charge.km, lang))
        return t["exit"]
    fare = _fare(charge, lang, boarded)
    due = charge.amount + charge.capped_by  # what the rules asked before the cap
    if charge.role == "transfer":
        paid = rupiah(charge.paid_before)
        text = (t["transfer_paid"].format(fare=fare, paid=paid, due=rupiah(due)) if due > 0
                else t["transfer_free"].format(fare=fare, paid=paid))
    else:
        text = t["new_journey"].format(fare=fare)
    if charge.capped:
        cap, cut = cap_name(charge.cap, lang), rupiah(charge.capped_by)
        text += (t["capped_all"].format(cap=cap, cut=cut) if charge.amount == 0 else
                 t["capped_part"].format(cap=cap, charged=rupiah(charge.amount), cut=cut))
    return text + "."


def tap_sentence(charge: Charge | None, lang: str = DEFAULT_LANGUAGE,
                 replaced_by: str | None = None, boarded: Boarding | None = None) -> str:
    """A tap line: why it cost what it did when it was posted; `replaced_by` names the
    new card when the tap reached the gateway after this card had been replaced, and
    `boarded` the next entry that stood in for a missing tap-out."""
    t = _text(lang)
    why = t["tap"] if charge is None else charge_sentence(charge, lang, boarded)
    if replaced_by is not None:
        return t["after_replacement"].format(card=replaced_by, why=_lower_first(why))
    return why


def _change(amount: int, lang: str) -> str:
    """What a correction did to the balance: `amount` as the statement signs it."""
    t = _text(lang)
    if amount > 0:
        return t["back"].format(amount=rupiah(amount))
    if amount < 0:
        return t["more"].format(amount=rupiah(-amount))
    return t["same"]


def period_moved(charge: Charge | None, late_on: str, corrected_on: str) -> str:
    """Which cap a late tap of an earlier day moved for a later day: the week's when
    both days are in one week (unless the month's is the cap that binds now), else the
    month's."""
    same_week = week_of(date.fromisoformat(late_on)) == week_of(date.fromisoformat(corrected_on))
    if not same_week or (charge is not None and charge.cap == "monthly"):
        return "monthly"
    return "weekly"


def correction_sentence(charge: Charge | None, amount: int, late: LateTap | None,
                        lang: str = DEFAULT_LANGUAGE, *, corrected_on: str = "",
                        boarded: Boarding | None = None) -> str:
    """A correction line: which later tap re-priced the day, what the corrected tap costs
    since (`charge`, as of that tap) and what it did to the balance (`amount`, signed as
    on the statement: more than 0 is money back).

    `corrected_on` is the corrected tap's service day: a late tap of another day moved
    what that day's week or month had left under its cap. `boarded` is the next entry
    that stands in for the corrected ride's missing tap-out, if one does.
    """
    t = _text(lang)
    change = _change(amount, lang)
    if (late is not None and late.service_date and corrected_on
            and late.service_date != corrected_on):
        facts = dict(date=long_date(late.service_date, lang), clock=late.clock,
                     route=late.route_id, change=change,
                     cap=cap_name(period_moved(charge, late.service_date, corrected_on),
                                  lang))
        if charge is None:
            return t["corr_period_bare"].format(**facts)
        return t["corr_period"].format(why=_lower_first(_charge_clause(charge, lang, boarded)),
                                       **facts)
    if charge is None:
        return t["corr_bare"].format(change=change)
    if late is not None and charge.related == late.tap_id and charge.km is not None:
        if late.kind == "exit":
            return t["corr_exit"].format(clock=late.clock, km=kilometres(charge.km, lang),
                                         now=rupiah(charge.amount), change=change)
        if charge.pricing == "inferred_exit":
            return t["corr_inferred"].format(clock=late.clock, route=late.route_id,
                                             km=kilometres(charge.km, lang),
                                             now=rupiah(charge.amount), change=change)
    why = _lower_first(_charge_clause(charge, lang, boarded))
    if late is None:
        return t["corr_unknown"].format(why=why, change=change)
    return t["corr_late"].format(clock=late.clock, route=late.route_id, why=why,
                                 change=change)


def denied_sentence(reason: str | None, lang: str = DEFAULT_LANGUAGE) -> str:
    """A tap refused at the reader, with the reader's reason (an unknown one as it is)."""
    t = _text(lang)
    if not reason:
        return t["denied_none"]
    key = DENIAL_REASONS.get(reason)
    if key is None:
        return t["denied_other"].format(reason=reason)
    return t["denied"].format(why=t[key])


def fare_entry_sentence(amount: int, route_id: str | None, lang: str = DEFAULT_LANGUAGE
                        ) -> str:
    """A fare whose tap the statement cannot show (its inbox row is missing)."""
    return _text(lang)["fare_entry"].format(amount=rupiah(abs(amount)), route=route_id or "?")


def topup_sentence(amount: int, reference: str | None, lang: str = DEFAULT_LANGUAGE) -> str:
    """Money loaded onto the card, with the payment's reference."""
    return _text(lang)["topup"].format(amount=rupiah(amount), reference=reference or "-")


def refund_sentence(amount: int, dispute_id: int | None, lang: str = DEFAULT_LANGUAGE
                    ) -> str:
    """Money given back by a dispute's answer."""
    t = _text(lang)
    if dispute_id is None:
        return t["refund_bare"].format(amount=rupiah(amount))
    return t["refund"].format(amount=rupiah(amount), dispute=dispute_id)


def transfer_in_sentence(amount: int, from_card: str | None,
                         lang: str = DEFAULT_LANGUAGE) -> str:
    """A lost card's balance arriving on its replacement."""
    return _text(lang)["transfer_in"].format(amount=rupiah(amount), card=from_card or "?")


def transfer_out_sentence(amount: int, to_card: str | None,
                          lang: str = DEFAULT_LANGUAGE) -> str:
    """A lost card's whole balance leaving for its replacement (`amount` as it moved)."""
    return _text(lang)["transfer_out"].format(amount=rupiah(abs(amount)), card=to_card or "?")


def adjustment_sentence(amount: int, reference: str | None,
                        lang: str = DEFAULT_LANGUAGE) -> str:
    """A manual adjustment approved by the back office, credit or debit."""
    key = "adjustment_in" if amount >= 0 else "adjustment_out"
    return _text(lang)[key].format(amount=rupiah(abs(amount)), reference=reference or "-")


def movement_sentence(kind: str, amount: int, lang: str = DEFAULT_LANGUAGE) -> str:
    """A movement of a kind this version does not know, named by its kind."""
    return _text(lang)["other"].format(amount=rupiah(amount), kind=kind)
