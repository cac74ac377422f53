"""The tap path's planning step, with no database: what a batch charges, corrects and
answers, given what the transaction would have loaded.

Fares are those of contract section 5 (the built-in Surabaya table: 5000 regular from
07:00; transfers within 120 minutes pay the difference; a repeat within 120 seconds on
the same vehicle is free), worked out by hand in each test.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from fare_gateway.fares.engine import PricedTap
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.taps import planning
from fare_gateway.taps.periods import PeriodKey
from fare_gateway.taps.planning import Arrival, InboxRow, Plan, priced_tap
from ledger.domain import CARD, REVENUE, CardState, EntryDraft, TapAmount, card_deltas
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
    at,
    card,
    tap,
)
from transit.wire import Tap

A = "04A0000000000001"
B = "04B0000000000002"
ARRIVED_ON = "2025-11-28"  # the service day the batches below arrive on


def decide(taps: Sequence[Tap], cards: Mapping[str, CardState], *,
           policy: FarePolicy = SBY_POLICY, inbox: Mapping[str, InboxRow] | None = None,
           history: Sequence[Tap] = (), amounts: Mapping[str, TapAmount] | None = None,
           operators: Mapping[str, str] | None = None,
           rules: Mapping[int, str] | None = None,
           periods: Mapping[PeriodKey, int] | None = None) -> Plan:
    """Admit and plan a batch; tap ids in `inbox` are the ones the insert skips, `rules`
    the rule each tap (by position) breaks, `periods` the cards' week and month totals."""
    inbox = dict(inbox or {})
    rules = rules or {}
    admission = planning.admit([Arrival(i, t, rules.get(i)) for i, t in enumerate(taps)],
                               cards, policy, ARRIVED_ON)
    inserted = {r.tap.tap_id for r in admission.rows} - set(inbox)
    days: dict[tuple[str, str], dict[str, PricedTap]] = {}
    for t in history:
        day = (t.card, policy.service_date(t.ts).isoformat())
        days.setdefault(day, {})[t.tap_id] = priced_tap(t)
    first = planning.first_days(admission.to_price(inserted))
    loaded = {d: taps for d, taps in days.items() if d[0] in first and d[1] >= first[d[0]]}
    return planning.plan(admission, inserted, inbox, cards, loaded, amounts or {},
                         operators or {"R1": "SBY", "KRL-BOGOR": "KAI"}, periods or {},
                         policy)


def summary(drafts: Sequence[EntryDraft]) -> list[tuple[str, str, int, str | None]]:
    return [(d.idem_key, d.kind, d.amount, d.operator_id) for d in drafts]


def answers(plan: Plan) -> list[tuple[int, str, int, str | None]]:
    """Each receipt's position, status, fare, and the card whose balance it tells."""
    return sorted(((d.position, d.status, d.fare, d.card) for d in plan.decisions),
                  key=lambda a: a[0])


def posted_balances(plan: Plan, cards: Mapping[str, CardState]) -> dict[str, int]:
    """What the ledger would return: the new balance of each card the drafts moved."""
    return {c: cards[c].balance + delta for c, delta in card_deltas(plan.drafts).items()
            if delta}


def test_a_new_tap_is_charged_its_full_fare() -> None:
    cards = {A: card(A, 50_000, account_id=7)}
    t = tap(A, at(27, 8))
    plan = decide([t], cards)
    assert summary(plan.drafts) == [(f"tap:{t.tap_id}", "fare", 5000, "SBY")]
    (draft,) = plan.drafts
    assert {(p.account.kind, p.account.ref, p.amount) for p in draft.postings} == {
        (CARD, A, -5000), (REVENUE, "SBY", 5000)}
    assert (draft.tap_id, draft.card, draft.route_id, draft.category, draft.service_date,
            draft.digest, draft.currency) == (t.tap_id, A, "R1", "regular", "2025-11-27",
                                              t.digest, "IDR")
    assert answers(plan) == [(0, "charged", 5000, A)]
    assert plan.fares == {t.tap_id: 5000}
    assert plan.touched == (A,) and plan.conflicts == ()
    assert planning.balances_after(cards, posted_balances(plan, cards)) == {A: 45_000}


def test_the_inbox_rows_go_in_tap_id_order_on_their_service_day() -> None:
    cards = {A: card(A, 50_000)}
    late_night = tap(A, at(28, 1, 30), OTHER_BUS)  # 01:30 belongs to the 27th
    morning = tap(A, at(27, 8), BUS)
    admission = planning.admit([Arrival(0, late_night), Arrival(1, morning)], cards,
                               SBY_POLICY, ARRIVED_ON)
    assert [(r.tap.tap_id, r.service_date, r.status) for r in admission.rows] == [
        (morning.tap_id, "2025-11-27", "charged"),
        (late_night.tap_id, "2025-11-27", "charged")]


def test_the_same_tap_again_is_a_duplicate_with_its_original_fare() -> None:
    cards = {A: card(A, 45_000)}
    t = tap(A, at(27, 8))
    plan = decide([t], cards, inbox={t.tap_id: InboxRow(t.digest, 5000, A, "charged", None)})
    assert answers(plan) == [(0, "duplicate", 5000, A)]
    assert plan.drafts == () and plan.fares == {} and plan.touched == ()

    # Twice in one batch: the first copy is charged, the second answered like it.
    plan = decide([t, t], cards)
    assert answers(plan) == [(0, "charged", 5000, A), (1, "duplicate", 5000, A)]
    assert len(plan.drafts) == 1


def test_the_same_tap_id_with_another_body_is_a_conflict() -> None:
    cards = {A: card(A, 45_000), B: card(B, 20_000)}
    t = tap(A, at(27, 8))
    forged = tap(B, at(27, 8), seq=t.seq)  # same device and seq, another card
    assert forged.tap_id == t.tap_id
    plan = decide([forged], cards,
                  inbox={t.tap_id: InboxRow(t.digest, 5000, A, "charged", None)})
    # A conflict tells no balance: neither the first body's card's nor the forged one's.
    assert answers(plan) == [(0, "conflict", 0, None)]
    assert [a.tap for a in plan.conflicts] == [forged] and plan.drafts == ()

    later = tap(A, at(27, 9), seq=t.seq)
    plan = decide([t, later], cards)
    assert answers(plan) == [(0, "charged", 5000, A), (1, "conflict", 0, None)]
    assert [a.position for a in plan.conflicts] == [1]


def test_a_tap_of_an_unknown_card_is_recorded_not_charged() -> None:
    t = tap(B, at(27, 8))
    plan = decide([t], {A: card(A, 50_000)})
    assert answers(plan) == [(0, "unknown_card", 0, None)]
    assert plan.drafts == () and plan.touched == ()
    assert B not in planning.balances_after({A: card(A, 50_000)}, {})


def test_a_tap_denied_at_the_reader_is_not_charged() -> None:
    cards = {A: card(A, 50_000)}
    plan = decide([tap(A, at(27, 8), accepted=False, reason="denylisted")], cards)
    # No balance either: a validator could otherwise read any card's by denying it.
    assert answers(plan) == [(0, "not_charged", 0, None)]
    assert plan.drafts == () and plan.fares == {} and plan.touched == ()


def test_a_denied_tap_is_answered_the_same_whether_or_not_its_card_exists() -> None:
    cards = {A: card(A, 50_000)}
    known = tap(A, at(27, 8), accepted=False, reason="denylisted")
    unknown = tap(B, at(27, 8, 1), accepted=False, reason="denylisted")
    admission = planning.admit([Arrival(0, known), Arrival(1, unknown)], cards,
                               SBY_POLICY, ARRIVED_ON)
    # Operations still see which card does not exist; the validator does not.
    assert {r.tap.card: r.status for r in admission.rows} == {A: "not_charged",
                                                              B: "unknown_card"}
    plan = decide([known, unknown], cards)
    assert answers(plan) == [(0, "not_charged", 0, None), (1, "not_charged", 0, None)]
    assert all(d.reason is None for d in plan.decisions)
    again = decide([unknown], cards, inbox={unknown.tap_id: InboxRow(
        unknown.digest, 0, B, "unknown_card", "denylisted")})
    assert answers(again) == [(0, "duplicate", 0, None)]


def test_a_late_tap_reprices_its_day_with_keyed_corrections() -> None:
    cards = {A: card(A, 45_000)}
    later = tap(A, at(27, 10, 30), OTHER_BUS)  # charged 5000 when it came
    late = tap(A, at(27, 9, 45), BUS)          # arrives after it
    history = [later]
    before = copy.deepcopy(history)
    # The 10:30 fare was credited to an operator that has since lost the route: its
    # correction goes back to that operator all the same.
    plan = decide([late], cards, history=history,
                  amounts={later.tap_id: TapAmount(5000, "OLD-OPERATOR")})
    # 09:45 starts the journey and pays 5000; 10:30 becomes a transfer costing
    # max(0, 5000 - 5000) = 0, so its 5000 comes back.
    assert summary(plan.drafts) == [
        (f"tap:{late.tap_id}", "fare", 5000, "SBY"),
        (f"corr:{later.tap_id}:{late.tap_id}", "correction", -5000, "OLD-OPERATOR")]
    assert plan.drafts[1].tap_id == later.tap_id and plan.drafts[1].digest == late.digest
    assert answers(plan) == [(0, "charged", 5000, A)]
    assert history == before  # the loaded day is not changed in place
    # Nothing moved the card in all: its balance is the locked one.
    assert posted_balances(plan, cards) == {}
    assert planning.balances_after(cards, {}) == {A: 45_000}


def test_a_correction_already_posted_is_not_posted_again() -> None:
    cards = {A: card(A, 45_000)}
    first = tap(A, at(27, 9, 45), BUS)
    second = tap(A, at(27, 10, 30), OTHER_BUS)
    # The day as the ledger holds it after the late tap: 5000 and 5000 - 5000.
    plan = decide([tap(A, at(27, 15))], cards, history=[first, second],
                  amounts={first.tap_id: TapAmount(5000, "SBY"),
                           second.tap_id: TapAmount(0, "SBY")})
    # 15:00 is beyond the 120-minute window: a new journey at full fare, nothing else.
    assert [d.kind for d in plan.drafts] == ["fare"]
    assert answers(plan)[0][1:3] == ("charged", 5000)


def test_two_new_taps_of_a_card_in_one_batch_make_a_transfer() -> None:
    cards = {A: card(A, 50_000)}
    plan = decide([tap(A, at(27, 8), BUS), tap(A, at(27, 8, 30), OTHER_BUS)], cards)
    assert [d.amount for d in plan.drafts] == [5000, 0]
    assert answers(plan) == [(0, "charged", 5000, A), (1, "charged", 0, A)]
    assert posted_balances(plan, cards) == {A: 45_000}


def test_a_repeat_tap_is_not_charged() -> None:
    cards = {A: card(A, 45_000)}
    entry = tap(A, at(27, 10))
    again = tap(A, at(27, 10, 1))  # the same vehicle 60 s later
    plan = decide([again], cards, history=[entry],
                  amounts={entry.tap_id: TapAmount(5000, "SBY")})
    assert answers(plan) == [(0, "not_charged", 0, None)]
    assert plan.drafts == ()
    assert plan.fares == {again.tap_id: 0} and plan.touched == (A,)


def test_an_exit_on_a_distance_route_sets_its_entrys_fare() -> None:
    cards = {A: card(A, 37_000)}
    entry = tap(A, at(27, 8), KRL_TRAIN, route_id="KRL-BOGOR", lat_e6=START_LAT_E6,
                lon_e6=LON_E6)
    out = tap(A, at(27, 8, 40), KRL_TRAIN, route_id="KRL-BOGOR", kind="exit",
              lat_e6=KM_40, lon_e6=LON_E6)
    # The entry paid the maximum, 13000. 40 km: 3000 + 1000 x ceil((40 - 25) / 10) = 5000.
    plan = decide([out], cards, policy=KRL_POLICY, history=[entry],
                  amounts={entry.tap_id: TapAmount(13_000, "KAI")})
    assert summary(plan.drafts) == [
        (f"corr:{entry.tap_id}:{out.tap_id}", "correction", -8000, "KAI")]
    assert answers(plan) == [(0, "charged", -8000, A)]  # the change the exit made
    assert posted_balances(plan, cards) == {A: 45_000}


def test_balances_after_are_the_ledgers_for_moved_cards_and_the_locked_ones_else() -> None:
    cards = {A: card(A, 50_000), B: card(B, 3000)}
    assert planning.balances_after(cards, {A: 45_000}) == {A: 45_000, B: 3000}


# -- taps that break a rule of contract section 10 ------------------------------------------

BEYOND_9999 = 253_402_300_800_000  # 10000-01-01T00:00Z: no calendar date at all


def test_a_tap_that_breaks_a_rule_is_rejected_and_kept_without_a_date_of_its_own() -> None:
    cards = {A: card(A, 50_000)}
    far = tap(A, BEYOND_9999)
    other_bus = tap(A, at(27, 8), OTHER_BUS)
    good = tap(A, at(27, 9), BUS)
    admission = planning.admit([Arrival(0, far, "ts_out_of_range"),
                                Arrival(1, other_bus, "wrong_vehicle"), Arrival(2, good)],
                               cards, SBY_POLICY, ARRIVED_ON)
    rows = {r.tap.tap_id: r for r in admission.rows}
    # No date is read from a rejected tap's ts: its row goes on the day it arrived.
    assert rows[far.tap_id][1:] == (ARRIVED_ON, "rejected", "ts_out_of_range")
    assert rows[other_bus.tap_id][1:] == (ARRIVED_ON, "rejected", "wrong_vehicle")
    assert rows[good.tap_id][1:] == ("2025-11-27", "charged", None)
    assert admission.to_price(set(rows)) == [rows[good.tap_id]]

    plan = decide([far, other_bus, good], cards,
                  rules={0: "ts_out_of_range", 1: "wrong_vehicle"})
    assert answers(plan) == [(0, "rejected", 0, None), (1, "rejected", 0, None),
                             (2, "charged", 5000, A)]
    assert [d.reason for d in sorted(plan.decisions)] == ["ts_out_of_range",
                                                          "wrong_vehicle", None]
    assert [a.position for a in plan.rejected] == [0, 1]
    # The good tap is priced alone: the 08:00 tap on the other bus is no journey of A's.
    assert summary(plan.drafts) == [(f"tap:{good.tap_id}", "fare", 5000, "SBY")]


def test_a_rejected_tap_sent_again_gets_the_same_answer_even_if_it_would_pass_now() -> None:
    cards = {A: card(A, 50_000)}
    ahead = tap(A, at(27, 8))
    kept = {ahead.tap_id: InboxRow(ahead.digest, 0, A, "rejected", "ts_out_of_range")}
    # The clock has caught up with it: no rule broken this time. Still rejected, and not
    # kept for inspection a second time.
    plan = decide([ahead, ahead], cards, inbox=kept)
    assert answers(plan) == [(0, "rejected", 0, None), (1, "rejected", 0, None)]
    assert {d.reason for d in plan.decisions} == {"ts_out_of_range"}
    assert plan.rejected == () and plan.drafts == () and plan.touched == ()
    # Twice in the batch it first arrives in: both copies rejected, kept once.
    plan = decide([ahead, ahead], cards, rules={0: "ts_out_of_range", 1: "ts_out_of_range"})
    assert answers(plan) == [(0, "rejected", 0, None), (1, "rejected", 0, None)]
    assert [a.position for a in plan.rejected] == [0]
    # Another body under its tap id is a conflict, as for any tap.
    other = tap(A, at(27, 9), seq=ahead.seq)
    plan = decide([other], cards, inbox=kept)
    assert answers(plan) == [(0, "conflict", 0, None)]


def test_a_charged_tap_sent_again_stays_a_duplicate_once_it_is_too_old() -> None:
    cards = {A: card(A, 45_000)}
    t = tap(A, at(27, 8))
    plan = decide([t], cards, inbox={t.tap_id: InboxRow(t.digest, 5000, A, "charged", None)},
                  rules={0: "ts_out_of_range"})
    assert answers(plan) == [(0, "duplicate", 5000, A)]
    assert plan.rejected == ()


def test_a_duplicate_tells_a_balance_only_for_a_tap_that_charged_the_card() -> None:
    cards = {A: card(A, 45_000)}
    denied = tap(A, at(27, 8), accepted=False, reason="denylisted")
    plan = decide([denied], cards,
                  inbox={denied.tap_id: InboxRow(denied.digest, 0, A, "not_charged",
                                                 "denylisted")})
    assert answers(plan) == [(0, "duplicate", 0, None)]
