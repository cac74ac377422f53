"""A revocation and a move take effect at once on every running gateway (issue 14, points
1-2; contract section 10: within one second of `transit devices revoke` returning).

The attack measured before: a tap sent 2 s after the revoke returned was charged (each
gateway cached devices for 5 s). Here two gateways share one PostgreSQL database (each
on a topic prefix of its own, so each tap is known to reach the one it was sent to), and
one gateway runs on SQLite. A stream of signed taps runs at every gateway from before
the command until 1.5 s after it returned; each tap's fate says when the change took
effect there, and is printed. A position sent half a second after the return is dropped
too. A move is judged by each tap's own time: the taps made before the command are the
old vehicle's however late they are processed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from fare_gateway.adapters.models import QuarantineRecord, TapRecord
from ledger.adapters.models import Entry
from ledger.services import check_invariants
from testbed.broker import Broker
from tests.support.clients import MqttPeer, make_tap
from tests.support.fleet import DEVICE, VEHICLE, Fleet, positions_total, running_fleet
from transit.wire import Position, Receipt

# Gateways on SQLite learn of device changes by polling, not by LISTEN/NOTIFY: both
# paths are held to the same promise.
pytestmark = pytest.mark.sqlite_too

AT_REST_KEY = "5e" * 32
NEW_VEHICLE = "SBY-0099"
CARD = "04A1B2C3D4E5F6"
FUNDS = 1_000_000
LIMIT_MS = 1_000  # contract section 10
PROBE_EVERY_S = 0.02
PROBE_AFTER_S = 1.5  # how long the taps go on after the command returned
SENT_WITHIN_MS = 500  # "sent right after": well within the contract's second


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(params=["postgresql", "sqlite"])
def fleet(request: pytest.FixtureRequest, broker: Broker, tmp_path: Path) -> Iterator[Fleet]:
    """Two gateways on PostgreSQL, or one on SQLite (one host: the demo's case)."""
    with running_fleet(request.param, broker, tmp_path, AT_REST_KEY) as made:
        made.transit("cards", "issue", CARD)
        made.transit("cards", "topup", CARD, str(FUNDS), "--reference", "fund")
        yield made


@dataclass
class Probe:
    """Signed taps sent round the gateways every 20 ms, each noted with its `ts`: when it
    was made, just before it left."""

    fleet: Fleet
    vehicle: str
    sent: dict[str, tuple[str, int]] = field(default_factory=dict)  # tap_id -> (prefix, ts)
    _seq: int = 0

    def run(self, stop: threading.Event, start_seq: int) -> None:
        peer = MqttPeer(self.fleet.broker.url)
        self._seq = start_seq
        try:
            while not stop.is_set():
                for prefix in self.fleet.gateways:
                    self._seq += 1
                    tap = make_tap(self.fleet.secret, DEVICE, self._seq, CARD, ts=now_ms(),
                                   vehicle_id=self.vehicle)
                    self.sent[tap.tap_id] = (prefix, tap.ts)
                    peer.publish(f"{prefix}/dev/{DEVICE}/tap", tap.encode())
                stop.wait(PROBE_EVERY_S)
        finally:
            peer.close()


@dataclass(frozen=True)
class Fate:
    """What became of one probe tap at its gateway."""

    prefix: str
    sent_ms: int
    received_ms: int
    refused: str | None  # the quarantine reason, or None: it was taken (charged)


def fates(fleet: Fleet, sent: dict[str, tuple[str, int]]) -> dict[str, Fate]:
    """Every probe tap's fate, once each has been processed (inbox or quarantine)."""
    sessions = fleet.sessions()
    deadline = time.monotonic() + 60
    while True:
        with sessions() as s:
            taken = {t: (r, status) for t, r, status in s.execute(
                select(TapRecord.tap_id, TapRecord.received_ms, TapRecord.status)
                .where(TapRecord.device_id == DEVICE))}
            refused = {t: (r, reason) for t, r, reason in s.execute(
                select(QuarantineRecord.tap_id, QuarantineRecord.received_ms,
                       QuarantineRecord.reason).where(QuarantineRecord.device_id == DEVICE))}
        if set(sent) <= set(taken) | set(refused):
            break
        assert time.monotonic() < deadline, f"{len(set(sent) - set(taken) - set(refused))} " \
                                            "probe taps never processed"
        time.sleep(0.2)
    out = {}
    for tap_id, (prefix, sent_ms) in sent.items():
        if tap_id in refused:
            out[tap_id] = Fate(prefix, sent_ms, refused[tap_id][0], refused[tap_id][1])
        else:
            out[tap_id] = Fate(prefix, sent_ms, taken[tap_id][0], None)
    return out


def send_position(fleet: Fleet, prefix: str, vehicle: str) -> None:
    peer = MqttPeer(fleet.broker.url)
    peer.publish(f"{prefix}/dev/{DEVICE}/pos", Position(
        device_id=DEVICE, vehicle_id=vehicle, route_id="R1", ts=now_ms(),
        lat_e6=-7_257_500, lon_e6=112_752_100).signed(fleet.secret).encode())
    peer.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def change_under_fire(fleet: Fleet, command: list[str], probe_vehicle: str,
                      refusal: str, position_outcome: str, *, by_ts: bool = False) -> None:
    """Run `command` while probe taps stream at every gateway; check and print when
    the change took effect at each. `by_ts`: the change holds from the command's time on
    (a move), so a tap made before the command is taken whenever it is processed."""
    # Each gateway has the device cached (and its position counted) before the change.
    before = {}
    for prefix, gw in fleet.gateways.items():
        send_position(fleet, prefix, VEHICLE)
        wait_for(lambda gw=gw: positions_total(gw).get("accepted", 0) >= 1,
                 "no position accepted before the change")
        before[prefix] = positions_total(gw)
    probe = Probe(fleet, probe_vehicle)
    stop = threading.Event()
    sender = threading.Thread(target=probe.run, args=(stop, 0), daemon=True)
    sender.start()
    wait_for(lambda: len(probe.sent) >= 10 * len(fleet.gateways), "probe not started")
    started = now_ms()
    fleet.transit(*command)
    returned = now_ms()
    # The spans of time below are the rule under test, not waits for the system.
    time.sleep(SENT_WITHIN_MS / 1000)
    for prefix in fleet.gateways:  # well within the second: a position from the old vehicle
        send_position(fleet, prefix, VEHICLE)
    time.sleep(PROBE_AFTER_S - SENT_WITHIN_MS / 1000)
    stop.set()
    sender.join(10)
    got = fates(fleet, dict(probe.sent))

    for prefix, gw in fleet.gateways.items():
        mine = sorted((f for f in got.values() if f.prefix == prefix),
                      key=lambda f: f.sent_ms)
        # Every tap sent from half a second after the return on is refused; and none is
        # taken later than the contract's second after it.
        sent_later = [f for f in mine if f.sent_ms >= returned + SENT_WITHIN_MS]
        assert sent_later, "no probe tap sent after the command returned"
        assert [f.refused for f in sent_later] == [refusal] * len(sent_later), \
            [(f.sent_ms - returned, f.refused) for f in sent_later]
        taken_late = [f.received_ms - returned for f in mine if f.refused is None
                      and f.received_ms > returned and not (by_ts and f.sent_ms < returned)]
        if by_ts:
            made_before = [f for f in mine if f.sent_ms < started]
            assert made_before and all(f.refused is None for f in made_before), \
                [(f.sent_ms - started, f.received_ms - returned, f.refused)
                 for f in made_before if f.refused]
        first_refused = min(f.received_ms for f in mine if f.refused) - returned
        after = [f for f in mine if f.sent_ms >= returned]
        print(f"{gw.base_url} ({fleet.db_url.split(':')[0]}): first refusal processed "
              f"{first_refused:+d} ms from the return; of {len(after)} taps sent after it, "
              f"{sum(f.refused == refusal for f in after)} refused ({refusal}); taken after "
              f"the return, processed at (ms): {taken_late}")
        assert all(late < LIMIT_MS for late in taken_late)
        wait_for(lambda gw=gw, prefix=prefix: positions_total(gw).get(position_outcome, 0)
                 >= before[prefix].get(position_outcome, 0) + 1,
                 f"position after the change not counted {position_outcome}: "
                 f"{before[prefix]} before, {positions_total(gw)} now")
        assert positions_total(gw).get("accepted", 0) == before[prefix]["accepted"]

    # Nothing refused was charged: no ledger entry names a refused tap, and the money
    # adds up.
    refused = {tap_id for tap_id, f in got.items() if f.refused}
    with fleet.sessions()() as s:
        posted = set(s.scalars(select(Entry.tap_id).where(Entry.tap_id.is_not(None))))
        assert check_invariants(s) == []
    assert posted and not posted & refused


def test_a_revocation_holds_on_every_gateway_within_a_second(fleet: Fleet) -> None:
    change_under_fire(fleet, ["devices", "revoke", DEVICE], VEHICLE, "inactive_device",
                      "unknown_device")  # a revoked device's positions count as a stranger's


def test_a_move_holds_on_every_gateway_within_a_second(fleet: Fleet) -> None:
    change_under_fire(fleet, ["devices", "move", DEVICE, "--vehicle", NEW_VEHICLE], VEHICLE,
                      "wrong_vehicle", "wrong_vehicle", by_ts=True)
    # On the new vehicle the validator is heard again, on every gateway.
    def answers(messages: list[tuple[str, bytes]]) -> list[Receipt]:
        return [r for r in (Receipt.parse(p) for _t, p in messages) if r.seq >= 10_000]

    peer = MqttPeer(fleet.broker.url)
    messages: list[tuple[str, bytes]] = []
    for n, (prefix, gw) in enumerate(fleet.gateways.items()):
        peer.subscribe(f"{prefix}/dev/{DEVICE}/receipt")
        tap = make_tap(fleet.secret, DEVICE, 10_000 + n, CARD, ts=now_ms(),
                       vehicle_id=NEW_VEHICLE)
        peer.publish(f"{prefix}/dev/{DEVICE}/tap", tap.encode())
        # Its receipt before the next gateway's tap: that one is a repeat of this one
        # only if this one was priced first.
        messages = peer.wait_for(lambda m, seq=tap.seq: any(r.seq == seq for r in answers(m)),
                                 timeout=60)
        accepted = positions_total(gw).get("accepted", 0)
        send_position(fleet, prefix, NEW_VEHICLE)
        wait_for(lambda gw=gw, accepted=accepted: positions_total(gw).get("accepted", 0)
                 > accepted, "a position from the new vehicle was not accepted")
    got = sorted(answers(messages), key=lambda r: r.seq)
    peer.close()
    # Charged, and on the second gateway a repeat of it (same card, same vehicle).
    assert [r.status for r in got] == ["charged", "not_charged"][:len(fleet.gateways)]
