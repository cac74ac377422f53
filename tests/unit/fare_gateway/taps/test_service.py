"""The tap service over a hand-written unit of work: batches in, receipts out, and what
it left in the (fake) inbox, ledger and quarantine once committed."""

from __future__ import annotations

import json

import pytest

from fare_gateway.metrics import Metrics
from fare_gateway.taps import Inbound, Outcome, TapService
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
    FakeDevices,
    FakeRoutes,
    FakeStore,
    at,
    card,
    tap,
)
from transit.topics import Topics
from transit.wire import Tap

A = "04A0000000000001"
B = "04B0000000000002"
UNKNOWN = "04DEADBEEF000009"


@pytest.fixture
def store() -> FakeStore:
    s = FakeStore()
    s.state.cards = {A: card(A, 50_000, account_id=1), B: card(B, 20_000, account_id=2)}
    return s


def service(store: FakeStore, policy=SBY_POLICY, revoked=()) -> TapService:  # type: ignore[no-untyped-def]
    return TapService(store.unit, policy, FakeDevices(BUS, OTHER_BUS, KRL_TRAIN,
                                                      revoked=revoked),
                      FakeRoutes({"R1": "SBY", "KRL-BOGOR": "KAI"}), Topics(), Metrics())


def inbound(t: Tap, topic_device: str | None = None) -> Inbound:
    return Inbound(f"transit/v1/dev/{topic_device or t.device_id}/tap", t.encode())


def said(outcomes: list[Outcome]) -> list[tuple[str, int | None, int | None]]:
    return [(o.status, o.receipt.fare if o.receipt else None,
             o.receipt.balance if o.receipt else None) for o in outcomes]


def test_a_new_tap_is_charged_and_receipted_with_the_new_balance(store: FakeStore) -> None:
    t = tap(A, at(27, 8))
    (outcome,) = service(store).handle([inbound(t)])
    assert said([outcome]) == [("charged", 5000, 45_000)]
    assert outcome.receipt is not None and outcome.receipt.verify(BUS[2])
    assert (outcome.receipt.device_id, outcome.receipt.seq) == (t.device_id, t.seq)
    assert [(d.idem_key, d.amount) for d in store.state.entries] == [(f"tap:{t.tap_id}", 5000)]
    assert store.state.cards[A].balance == 45_000
    assert store.state.inbox[t.tap_id].fare == 5000
    assert store.state.denylist == {A: ("regular", "active", 45_000)}
    assert store.commits == 1
    # The statements a batch of new taps makes, in the order PostgreSQL sees them.
    assert store.calls == ["lock_cards", "admit", "charged_taps", "tap_amounts", "post",
                           "refresh_denylist", "set_fares"]


def test_the_same_tap_again_is_a_duplicate_with_the_original_fare(store: FakeStore) -> None:
    svc = service(store)
    t = tap(A, at(27, 8))
    svc.handle([inbound(t)])
    assert said(svc.handle([inbound(t)])) == [("duplicate", 5000, 45_000)]
    assert said(svc.handle([inbound(t), inbound(t)])) == [("duplicate", 5000, 45_000)] * 2
    assert len(store.state.entries) == 1 and store.state.cards[A].balance == 45_000


def test_the_same_tap_id_with_another_body_is_a_conflict(store: FakeStore) -> None:
    svc = service(store)
    t = tap(A, at(27, 8))
    svc.handle([inbound(t)])
    other = tap(A, at(27, 9), seq=t.seq)
    (outcome,) = svc.handle([inbound(other)])
    assert said([outcome]) == [("conflict", 0, 45_000)] and outcome.reason == "conflict"
    assert [(q.reason, q.tap_id) for q in store.state.quarantine] == [("conflict", t.tap_id)]
    assert store.state.quarantine[0].payload == other.encode()
    assert len(store.state.entries) == 1


def test_a_tap_of_an_unknown_card_is_kept_but_not_charged(store: FakeStore) -> None:
    t = tap(UNKNOWN, at(27, 8))
    assert said(service(store).handle([inbound(t)])) == [("unknown_card", 0, 0)]
    assert store.state.inbox[t.tap_id].status == "unknown_card"
    assert store.state.entries == []


def test_a_tap_denied_at_the_reader_is_not_charged(store: FakeStore) -> None:
    t = tap(A, at(27, 8), accepted=False, reason="denylisted")
    assert said(service(store).handle([inbound(t)])) == [("not_charged", 0, 50_000)]
    assert store.state.inbox[t.tap_id].status == "not_charged"
    assert store.state.entries == [] and store.state.cards[A].balance == 50_000


def test_a_late_tap_posts_corrections_under_their_keys(store: FakeStore) -> None:
    svc = service(store)
    later = tap(A, at(27, 10, 30), OTHER_BUS)
    late = tap(A, at(27, 9, 45), BUS)
    assert said(svc.handle([inbound(later)])) == [("charged", 5000, 45_000)]
    # 09:45 pays 5000 and makes 10:30 a transfer (0): 5000 back to the card.
    assert said(svc.handle([inbound(late)])) == [("charged", 5000, 45_000)]
    assert [(d.idem_key, d.kind, d.amount) for d in store.state.entries] == [
        (f"tap:{later.tap_id}", "fare", 5000),
        (f"tap:{late.tap_id}", "fare", 5000),
        (f"corr:{later.tap_id}:{late.tap_id}", "correction", -5000)]
    assert (store.fare_of(later.tap_id), store.fare_of(late.tap_id)) == (0, 5000)
    # Delivered again, the late tap changes nothing more.
    assert said(svc.handle([inbound(late)])) == [("duplicate", 5000, 45_000)]
    assert len(store.state.entries) == 3


def test_a_repeat_tap_is_not_charged(store: FakeStore) -> None:
    svc = service(store)
    svc.handle([inbound(tap(A, at(27, 10)))])
    again = tap(A, at(27, 10, 2))
    assert said(svc.handle([inbound(again)])) == [("not_charged", 0, 45_000)]
    # Kept as charged in the inbox: a late tap may yet make it a paying entry.
    assert store.state.inbox[again.tap_id].status == "charged"
    assert len(store.state.entries) == 1


def test_an_exit_on_a_distance_route_refunds_part_of_its_entry(store: FakeStore) -> None:
    svc = service(store, KRL_POLICY)
    entry = tap(A, at(27, 8), KRL_TRAIN, route_id="KRL-BOGOR", lat_e6=START_LAT_E6,
                lon_e6=LON_E6)
    out = tap(A, at(27, 8, 40), KRL_TRAIN, route_id="KRL-BOGOR", kind="exit",
              lat_e6=KM_40, lon_e6=LON_E6)
    assert said(svc.handle([inbound(entry)])) == [("charged", 13_000, 37_000)]
    # 40 km: 3000 + 1000 x ceil(15 / 10) = 5000, so 8000 of the maximum comes back.
    assert said(svc.handle([inbound(out)])) == [("charged", -8000, 45_000)]
    assert store.fare_of(entry.tap_id) == 5000
    assert [d.operator_id for d in store.state.entries] == ["KAI", "KAI"]


def test_balances_on_the_receipts_follow_the_whole_batch(store: FakeStore) -> None:
    taps = [tap(A, at(27, 8), BUS), tap(B, at(27, 8), BUS), tap(A, at(27, 18), OTHER_BUS)]
    outcomes = service(store).handle([inbound(t) for t in taps])
    # Each receipt shows the card's balance after the batch, not after its own tap.
    assert said(outcomes) == [("charged", 5000, 40_000), ("charged", 5000, 15_000),
                              ("charged", 5000, 40_000)]
    assert {c: s.balance for c, s in store.state.cards.items()} == {A: 40_000, B: 15_000}


def test_untrustworthy_messages_are_quarantined_with_their_reasons(store: FakeStore) -> None:
    good = tap(A, at(27, 8))
    forged = json.loads(good.encode())
    forged["sig"] = "0" * 64
    stranger = tap(A, at(27, 8), ("SBY-9999-X", "SBY-9999", b"k" * 32))
    revoked = tap(A, at(27, 8), OTHER_BUS)
    batch = [Inbound(f"transit/v1/dev/{BUS[0]}/tap", json.dumps(forged).encode()),
             inbound(stranger), inbound(revoked), inbound(good, OTHER_BUS[0]),
             Inbound(f"transit/v1/dev/{BUS[0]}/tap", b'{"v": 1,'), inbound(good)]
    outcomes = service(store, revoked={OTHER_BUS[0]}).handle(batch)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("rejected", "bad_signature"), ("rejected", "unknown_device"),
        ("rejected", "inactive_device"), ("rejected", "topic_mismatch"),
        ("rejected", "malformed"), ("charged", None)]
    assert all(o.receipt is None for o in outcomes[:5])
    assert [(q.reason, q.device_id) for q in store.state.quarantine] == [
        ("bad_signature", BUS[0]), ("unknown_device", "SBY-9999-X"),
        ("inactive_device", OTHER_BUS[0]), ("topic_mismatch", OTHER_BUS[0]),
        ("malformed", BUS[0])]
    assert len(store.state.entries) == 1


def test_a_batch_that_fails_commits_nothing(store: FakeStore) -> None:
    store.fail_on_post = True
    with pytest.raises(ConnectionError):
        service(store).handle([inbound(tap(A, at(27, 8)))])
    assert store.commits == 0
    assert store.state.inbox == {} and store.state.entries == []
    assert store.state.cards[A].balance == 50_000


def test_a_message_that_cannot_be_processed_is_quarantined_on_its_own(
        store: FakeStore) -> None:
    msg = inbound(tap(A, at(27, 8)))
    service(store).quarantine_failure(msg, "internal_error")
    assert [(q.reason, q.device_id, q.payload) for q in store.state.quarantine] == [
        ("internal_error", BUS[0], msg.payload)]
    assert store.commits == 1
