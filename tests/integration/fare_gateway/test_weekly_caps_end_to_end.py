"""A week of taps, end to end: signed taps published as validators publish them, on the
private Mosquitto, to `transit gateway` on PostgreSQL, in a shuffled order, some twice,
with the gateway killed (kill -9) and started again in the middle, and the second bus's
Monday taps last of all, as from a validator that was offline all week. Whatever arrived
when, each card's ledger must hold exactly what contract section 5's pure function
(`price_card`) says of its taps, weekly caps included, and `transit reconcile` must pass.
The first rider's Monday 10:30 tap, coming last, moves the week's 50,000 cap back onto
Saturday, whose 08:00 tap must then cost nothing.

The week of Monday 17 November 2025, built-in policy (5,000 a journey, 2,000 from 05:00
to 07:00, transfers within 120 minutes, caps of 10,000 a day and 50,000 a week for
regular cards, 5,000 a day for students).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from fare_gateway.adapters.models import TapRecord
from fare_gateway.fares.engine import price_card
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.taps.planning import priced_tap
from ledger.adapters.db import session_factory
from ledger.adapters.models import Card, Entry, Posting
from ledger.services import check_invariants
from tests.conftest import System
from tests.support.clients import MqttPeer, make_tap
from tests.support.faults import wait_until
from transit.wire import Receipt, Tap

WIB = timezone(timedelta(hours=7))
FUNDS = 200_000
WEEK = range(17, 24)  # Monday 17 to Sunday 23 November 2025
# card -> (category, the local (hour, minute) of each day's taps: alternately on each bus)
RIDERS = {
    "04E1000000000001": ("regular", {d: [(8, 0), (10, 30)] for d in WEEK}),
    "04E1000000000002": ("regular", {17: [(6, 30), (10, 0)], 19: [(8, 0), (10, 30)],
                                     21: [(8, 0)], 22: [(9, 0), (9, 40)]}),
    "04E1000000000003": ("student", {d: [(7, 30), (12, 0), (16, 0)] for d in WEEK}),
    # Two journeys of a transfer each, every day but Sunday: the week is spent on Friday.
    "04E1000000000004": ("regular", {d: [(8, 0), (8, 40), (17, 0), (18, 0)]
                                     for d in range(17, 23)}),
}


def at(day: int, hh: int, mm: int) -> int:
    return int(datetime(2025, 11, day, hh, mm, tzinfo=WIB).timestamp() * 1000)


def week_of_taps(buses: list[tuple[str, str, bytes]]) -> list[Tap]:
    """Every rider's taps, signed by the validator of the bus they boarded."""
    seqs = {device: 0 for device, _, _ in buses}
    made = sorted((at(day, hh, mm), i % 2, token)
                  for token, (_, days) in RIDERS.items()
                  for day, times in days.items() for i, (hh, mm) in enumerate(times))
    taps = []
    for ts, bus, token in made:
        device, vehicle, secret = buses[bus]
        seqs[device] += 1
        taps.append(make_tap(secret, device, seqs[device], token, ts=ts, vehicle_id=vehicle))
    return taps


def test_a_shuffled_week_across_a_gateway_restart_charges_section_5(system: System) -> None:
    buses = [(system.device_id, "SBY-0042", system.secret)]
    buses.append(("SBY-0077-B", "SBY-0077", system.add_device("SBY-0077-B", "SBY-0077")))
    for token, (category, _) in RIDERS.items():
        system.issue(token, FUNDS, category)
    taps = week_of_taps(buses)
    # The second bus's Monday (service day: until Tuesday 03:00), sent when it is back.
    offline = [t for t in taps if t.device_id == buses[1][0] and t.ts < at(18, 3, 0)]
    rng = random.Random(20251117)
    sends = [t for t in taps if t not in offline]
    sends += rng.sample(sends, 12)  # twelve sent again, as after a lost receipt
    rng.shuffle(sends)
    first, second, third = sends[:30], sends[30:50], sends[50:]

    peer = MqttPeer(system.broker.url)
    for device, _, _ in buses:
        peer.subscribe(system.receipt_topic(device))

    def publish(batch: list[Tap]) -> None:
        peer.publish_many([(system.tap_topic(t.device_id), t.encode()) for t in batch])

    publish(first)
    peer.wait_for(lambda m: len(m) >= 1, timeout=30)  # under way
    system.gateway.stop(kill=True)  # kill -9, whatever it had in hand
    publish(second)  # queued at the broker for the gateway's session
    system.gateway.start()
    publish(third)
    publish([*offline, offline[0]])  # its first tap twice

    engine = system.engine()
    sessions = session_factory(engine)
    wanted = {t.tap_id for t in taps}

    def settled() -> bool:
        receipted = {f"{r.device_id}:{r.seq}" for r in map(Receipt.parse,
                                                           (p for _, p in list(peer.messages)))}
        with sessions() as s:
            kept = set(s.scalars(select(TapRecord.tap_id)))
        return wanted <= receipted | kept

    wait_until(settled, 30, "every tap receipted or in the inbox")
    receipts = [Receipt.parse(p) for _, p in peer.messages]
    secrets = {device: secret for device, _, secret in buses}
    assert all(r.verify(secrets[r.device_id]) for r in receipts)
    assert {r.status for r in receipts} <= {"charged", "duplicate"}

    policy = builtin_policy()
    with sessions() as s:
        fares = {str(t): int(n) for t, n in s.execute(
            select(Entry.tap_id, func.sum(Entry.amount)).where(Entry.tap_id.is_not(None))
            .group_by(Entry.tap_id))}
        held = {card: (int(balance), int(posted)) for card, balance, posted in s.execute(
            select(Card.card, Card.balance, func.sum(Posting.amount))
            .join(Posting, Posting.account_id == Card.account_id)
            .group_by(Card.card, Card.balance))}
        assert check_invariants(s) == []
    engine.dispose()
    weekly_capped = 0
    for token, (category, _) in RIDERS.items():
        mine = [t for t in taps if t.card == token]
        expected = price_card(policy, category, [priced_tap(t) for t in mine])
        assert {t.tap_id: fares.get(t.tap_id, 0) for t in mine} == {
            t.tap_id: expected.amount(t.tap_id) for t in mine}, token
        assert held[token] == (FUNDS - expected.total, FUNDS - expected.total), token
        weekly_capped += any(c.cap == "weekly" for c in expected.charges.values())
    assert weekly_capped == 2  # the first and the fourth rider spend the week's 50,000

    done = system.transit("reconcile", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    peer.close()
