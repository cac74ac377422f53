"""The ledger's posting rules, with no database: balanced drafts, whole-number amounts,
and the entries for fares, corrections, top-ups, refunds and balance transfers."""

from __future__ import annotations

import pytest

from ledger.domain import (
    CARD,
    CLEARING,
    REVENUE,
    TOPUP_CLEARING,
    UNASSIGNED_OPERATOR,
    AccountKey,
    EntryDraft,
    LedgerError,
    PostingDraft,
    card_account,
    card_deltas,
    digest_of,
    fare_entry,
    refund_entry,
    revenue_account,
    topup_digest,
    topup_entry,
    transfer_entry,
)

CARD_A = "04A0000000000001"
CARD_B = "04B0000000000002"


def postings(draft: EntryDraft) -> set[tuple[str, str, int]]:
    return {(p.account.kind, p.account.ref, p.amount) for p in draft.postings}


def fare(tap_id: str = "SBY-0042-A:1", card: str = CARD_A, amount: int = 5000,
         **extra: str) -> EntryDraft:
    args = dict(tap_id=tap_id, card=card, fare=amount, digest="d" * 64, currency="IDR",
                operator_id="SBY", route_id="R1", category="regular",
                service_date="2025-11-27")
    args.update(extra)
    return fare_entry(**args)  # type: ignore[arg-type]


def test_a_draft_whose_postings_do_not_sum_to_zero_is_refused() -> None:
    with pytest.raises(LedgerError, match="sum to 100, not 0"):
        EntryDraft("k", "fare", "d", 100, (PostingDraft(card_account(CARD_A), 100),), "IDR")
    with pytest.raises(LedgerError, match="needs postings"):
        EntryDraft("k", "fare", "d", 0, (), "IDR")
    balanced = EntryDraft("k", "fare", "d", 100, (
        PostingDraft(card_account(CARD_A), -100), PostingDraft(revenue_account("SBY"), 100)),
        "IDR")
    assert sum(p.amount for p in balanced.postings) == 0


@pytest.mark.parametrize("amount", [0.5, True, 5000.0])
def test_amounts_are_whole_numbers(amount: float) -> None:
    # Balanced, but not in whole rupiah: refused all the same.
    with pytest.raises(LedgerError, match="whole numbers"):
        EntryDraft("k", "fare", "d", 0, (
            PostingDraft(card_account(CARD_A), amount),  # type: ignore[arg-type]
            PostingDraft(revenue_account("SBY"), -amount)), "IDR")  # type: ignore[arg-type]


def test_a_fare_moves_money_from_the_card_to_the_operator() -> None:
    draft = fare()
    assert (draft.idem_key, draft.kind, draft.amount) == ("tap:SBY-0042-A:1", "fare", 5000)
    assert postings(draft) == {(CARD, CARD_A, -5000), (REVENUE, "SBY", 5000)}
    assert (draft.card, draft.tap_id, draft.operator_id, draft.route_id, draft.category,
            draft.service_date) == (CARD_A, "SBY-0042-A:1", "SBY", "R1", "regular",
                                    "2025-11-27")


def test_a_free_ride_is_still_an_entry_with_two_postings_of_zero() -> None:
    draft = fare(amount=0)
    assert postings(draft) == {(CARD, CARD_A, 0), (REVENUE, "SBY", 0)}


def test_a_correction_has_its_own_key_and_may_give_money_back() -> None:
    draft = fare(amount=-5000, kind="correction", idem_key="corr:SBY-0042-A:1:SBY-0077-B:3")
    assert (draft.idem_key, draft.kind, draft.amount) == (
        "corr:SBY-0042-A:1:SBY-0077-B:3", "correction", -5000)
    assert postings(draft) == {(CARD, CARD_A, 5000), (REVENUE, "SBY", -5000)}


def test_a_route_nobody_runs_credits_the_unassigned_operator() -> None:
    draft = fare(operator_id="")
    assert draft.operator_id == UNASSIGNED_OPERATOR
    assert (REVENUE, UNASSIGNED_OPERATOR, 5000) in postings(draft)
    assert revenue_account("") == AccountKey(REVENUE, UNASSIGNED_OPERATOR)


def test_a_topup_credits_the_card_from_the_topup_clearing_account() -> None:
    draft = topup_entry(card=CARD_A, amount=20_000, reference="bank-1", currency="IDR")
    assert (draft.idem_key, draft.kind, draft.amount, draft.reference) == (
        "topup:bank-1", "topup", 20_000, "bank-1")
    assert postings(draft) == {(CLEARING, TOPUP_CLEARING, -20_000), (CARD, CARD_A, 20_000)}
    # The digest stands for what the reference was used for: card and amount.
    assert draft.digest == topup_digest(CARD_A, 20_000) != topup_digest(CARD_A, 20_001)
    assert topup_digest(CARD_A, 1) != topup_digest(CARD_B, 1)


@pytest.mark.parametrize("amount", [0, -1])
def test_a_topup_must_be_positive(amount: int) -> None:
    with pytest.raises(LedgerError, match="positive"):
        topup_entry(card=CARD_A, amount=amount, reference="r", currency="IDR")


def test_card_deltas_sum_what_each_card_pays_and_receives() -> None:
    drafts = [fare(card=CARD_A, amount=5000), fare("SBY-0042-A:2", CARD_B, 2500),
              fare("SBY-0042-A:1", CARD_A, -5000, kind="correction", idem_key="corr:x"),
              topup_entry(card=CARD_B, amount=10_000, reference="r", currency="IDR")]
    assert card_deltas(drafts) == {CARD_A: 0, CARD_B: 7500}
    assert card_deltas([]) == {}


def test_digests_are_stable_and_tell_parts_apart() -> None:
    assert digest_of("a", 1) == digest_of("a", 1)
    assert digest_of("a", 1) != digest_of("a", 2)
    assert len(digest_of("x")) == 64


def test_a_refund_gives_the_operator_s_revenue_back_to_the_card() -> None:
    draft = refund_entry(dispute_id=7, card=CARD_A, amount=2500, currency="IDR",
                         operator_id="SBY", route_id="R1", category="regular",
                         service_date="2025-11-28")
    assert draft.idem_key == "refund:7" and draft.kind == "refund"
    assert draft.amount == -2500  # revenue given back, as the settlement line shows it
    assert card_deltas([draft]) == {CARD_A: 2500}
    assert {p.account: p.amount for p in draft.postings} == {
        AccountKey(REVENUE, "SBY"): -2500, AccountKey(CARD, CARD_A): 2500}
    # No tap id: a tap's cost is its fare and corrections, which re-pricing compares.
    assert draft.tap_id is None and draft.reference == "dispute:7"


@pytest.mark.parametrize("amount", [0, -1])
def test_a_refund_must_be_positive(amount: int) -> None:
    with pytest.raises(LedgerError):
        refund_entry(dispute_id=1, card=CARD_A, amount=amount, currency="IDR",
                     operator_id="SBY", route_id=None, category=None, service_date=None)


def test_a_transfer_moves_a_balance_between_two_cards_once() -> None:
    draft = transfer_entry(old_card=CARD_A, new_card=CARD_B, amount=12000, currency="IDR")
    assert draft.idem_key == f"transfer:{CARD_A}" and draft.kind == "transfer"
    assert card_deltas([draft]) == {CARD_A: -12000, CARD_B: 12000}
    assert all(p.account.kind == CARD for p in draft.postings)
    again = transfer_entry(old_card=CARD_A, new_card="04C0000000000003", amount=12000,
                           currency="IDR")
    # The key is the lost card's: a second replacement of it collides, whatever its target.
    assert again.idem_key == draft.idem_key and again.digest != draft.digest
    with pytest.raises(LedgerError):
        transfer_entry(old_card=CARD_A, new_card=CARD_B, amount=0, currency="IDR")
