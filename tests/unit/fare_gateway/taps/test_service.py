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
from transit.window import EventWindow
from transit.wire import Tap

A = "04A0000000000001"
B = "04B0000000000002"
UNKNOWN = "04DEADBEEF000009"


@pytest.fixture
def store() -> FakeStore:
    s = FakeStore()
    s.state.cards = {A: card(A, 50_000, account_id=1), B: card(B, 20_000, account_id=2)}
    return s


NOW = at(28, 12)  # the gateway's clock: the day after the taps below


def service(store: FakeStore, policy=SBY_POLICY, revoked=(), now=NOW,  # type: ignore[no-untyped-def]
            metrics=None) -> TapService:
    return TapService(store.unit, policy, FakeDevices(BUS, OTHER_BUS, KRL_TRAIN,
                                                      revoked=revoked),
                      FakeRoutes({"R1": "SBY", "KRL-BOGOR": "KAI"}), Topics(),
                      metrics or Metrics(), clock=lambda: now)


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
    assert store.calls == ["lock_cards", "admit", "charged_taps", "tap_amounts",
                           "period_totals", "post", "refresh_denylist", "set_fares",
                           "save_periods"]


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
    assert said([outcome]) == [("conflict", 0, None)] and outcome.reason == "conflict"
    assert [(q.reason, q.tap_id) for q in store.state.quarantine] == [("conflict", t.tap_id)]
    assert store.state.quarantine[0].payload == other.encode()
    assert len(store.state.entries) == 1


def test_a_tap_of_an_unknown_card_is_kept_but_not_charged(store: FakeStore) -> None:
    t = tap(UNKNOWN, at(27, 8))
    assert said(service(store).handle([inbound(t)])) == [("unknown_card", 0, None)]
    assert store.state.inbox[t.tap_id].status == "unknown_card"
    assert store.state.entries == []


def test_a_tap_denied_at_the_reader_is_not_charged(store: FakeStore) -> None:
    t = tap(A, at(27, 8), accepted=False, reason="denylisted")
    assert said(service(store).handle([inbound(t)])) == [("not_charged", 0, None)]
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
    assert said(svc.handle([inbound(again)])) == [("not_charged", 0, None)]
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
    metrics = Metrics()
    outcomes = service(store, revoked={OTHER_BUS[0]}, metrics=metrics).handle(batch)
    assert [(o.status, o.reason) for o in outcomes] == [
        ("quarantined", "bad_signature"), ("quarantined", "unknown_device"),
        ("quarantined", "inactive_device"), ("quarantined", "topic_mismatch"),
        ("quarantined", "malformed"), ("charged", None)]
    assert all(o.receipt is None for o in outcomes[:5])
    # Counted apart from the taps answered `rejected`, which got a receipt.
    taps = {status: metrics.registry.get_sample_value("transit_taps_total",
                                                      {"status": status})
            for status in ("quarantined", "rejected", "charged")}
    assert taps == {"quarantined": 5, "rejected": None, "charged": 1}
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


# -- contract section 10: another vehicle, another time -------------------------------------

MINUTE = 60_000
DAY = 86_400_000


def test_a_tap_naming_another_vehicle_is_rejected_with_a_signed_receipt(
        store: FakeStore) -> None:
    metrics = Metrics()
    svc = service(store, metrics=metrics)
    # Bus A's validator names bus B, 60 s before B's own tap of the same card: taken as
    # it came, it would make B's tap a repeat and A's route the one paid.
    real = tap(A, at(27, 10, 1), OTHER_BUS)
    forged = tap(A, at(27, 10), (BUS[0], OTHER_BUS[1], BUS[2]))
    assert said(svc.handle([inbound(real)])) == [("charged", 5000, 45_000)]
    (outcome,) = svc.handle([inbound(forged)])
    assert (outcome.status, outcome.reason) == ("rejected", "wrong_vehicle")
    receipt = outcome.receipt
    assert receipt is not None and receipt.verify(BUS[2])  # the signer's own key
    assert (receipt.status, receipt.reason, receipt.fare, receipt.balance) == (
        "rejected", "wrong_vehicle", 0, None)
    # Nothing moved: B's tap keeps its fare, no correction.
    assert [(d.tap_id, d.amount) for d in store.state.entries] == [(real.tap_id, 5000)]
    assert store.state.inbox[forged.tap_id].status == "rejected"
    assert [(q.reason, q.device_id, q.tap_id, q.payload) for q in store.state.quarantine] == [
        ("wrong_vehicle", BUS[0], forged.tap_id, forged.encode())]
    assert "SBY-0042" in store.state.quarantine[0].detail
    assert metrics.registry.get_sample_value("transit_quarantined_total",
                                             {"reason": "wrong_vehicle"}) == 1
    assert metrics.registry.get_sample_value("transit_taps_total",
                                             {"status": "rejected"}) == 1


@pytest.mark.parametrize("ts", [0, at(1, 0) - 365 * DAY, 32_503_680_000_000,  # 1970, 2024, 3000
                                253_402_300_800_000, 2**63 - 1])              # beyond 9999
def test_a_tap_dated_outside_the_window_is_rejected_beside_good_ones(
        store: FakeStore, ts: int) -> None:
    good = [tap(A, at(27, 8)), tap(B, at(27, 9))]
    bad = tap(A, ts)
    outcomes = service(store).handle([inbound(good[0]), inbound(bad), inbound(good[1])])
    assert [(o.status, o.reason) for o in outcomes] == [
        ("charged", None), ("rejected", "ts_out_of_range"), ("charged", None)]
    assert outcomes[1].receipt is not None and outcomes[1].receipt.verify(BUS[2])
    assert (outcomes[1].receipt.reason, outcomes[1].receipt.fare) == ("ts_out_of_range", 0)
    assert [(q.reason, q.tap_id) for q in store.state.quarantine] == [
        ("ts_out_of_range", bad.tap_id)]
    assert store.state.inbox[bad.tap_id].service_date == "2025-11-28"  # the day it came
    assert store.commits == 1 and len(store.state.entries) == 2


def test_the_window_runs_from_max_age_days_back_to_five_minutes_ahead(
        store: FakeStore) -> None:
    edges = {NOW + 5 * MINUTE: "charged", NOW + 5 * MINUTE + 1: "rejected",
             NOW - 2 * DAY: "charged", NOW - 2 * DAY - 1: "rejected"}
    taps = {ts: tap(A, ts, kind="exit") for ts in edges}  # exits: nothing to price
    svc = TapService(store.unit, SBY_POLICY, FakeDevices(BUS), FakeRoutes({}), Topics(),
                     window=EventWindow(max_age_days=2), clock=lambda: NOW)
    outcomes = svc.handle([inbound(t) for t in taps.values()])
    assert [o.status for o in outcomes] == list(edges.values())


def test_the_answer_to_a_rejected_tap_does_not_change_when_it_is_sent_again(
        store: FakeStore) -> None:
    ahead = tap(A, NOW + 6 * MINUTE)
    first = service(store, now=NOW).handle([inbound(ahead)])
    # Its receipt was lost; two minutes later the tap is within the window. The answer
    # stands: a tap is never charged after it was rejected.
    again = service(store, now=NOW + 2 * MINUTE).handle([inbound(ahead)])
    for (outcome,) in (first, again):
        assert outcome.receipt is not None
        assert (outcome.receipt.status, outcome.receipt.reason) == ("rejected",
                                                                    "ts_out_of_range")
    assert store.state.entries == [] and store.state.cards[A].balance == 50_000
    assert len(store.state.quarantine) == 1  # kept once
