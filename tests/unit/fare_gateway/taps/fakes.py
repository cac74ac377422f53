"""Hand-written stand-ins for what the tap path talks to: a unit of work over plain
dictionaries (kept only on commit, like a transaction), a device directory and a route
table. Amounts and balances are worked out here from the entries posted, the way the
ledger does it, so a test sees what the service really posted."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from fare_gateway.devices import KnownDevice, Refusal, SignedMessage, verify_signed
from fare_gateway.fares.engine import PricedTap
from fare_gateway.fares.policy import builtin_policy
from fare_gateway.taps.periods import PeriodKey
from fare_gateway.taps.planning import Admitted, CardDay, InboxRow, priced_tap
from fare_gateway.taps.ports import Quarantined
from ledger.domain import CARD, CardState, EntryDraft, Posted, TapAmount, card_deltas
from transit.wire import Tap

WIB = timezone(timedelta(hours=7))
BUS = ("SBY-0042-A", "SBY-0042", bytes(range(32)))
OTHER_BUS = ("SBY-0077-B", "SBY-0077", bytes(range(32, 64)))
KRL_TRAIN = ("KRL-1001-A", "KRL-1001", bytes(range(64, 96)))
SBY_POLICY = builtin_policy()  # contract section 5

_seqs = itertools.count(1)


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> int:
    """Epoch ms of a Jakarta wall-clock time in November 2025."""
    return int(datetime(2025, 11, day, hh, mm, ss, tzinfo=WIB).timestamp() * 1000)


def tap(card: str, ts: int, bus: tuple[str, str, bytes] = BUS, *, seq: int | None = None,
        route_id: str = "R1", kind: str = "entry", accepted: bool = True,
        lat_e6: int = -7_257_500, lon_e6: int = 112_752_100, **extra: Any) -> Tap:
    """A tap signed with its bus's key (a fresh seq unless one is given)."""
    device_id, vehicle_id, secret = bus
    return Tap(device_id=device_id, seq=next(_seqs) if seq is None else seq,
               vehicle_id=vehicle_id, route_id=route_id, card=card, kind=kind,
               accepted=accepted, ts=ts, lat_e6=lat_e6, lon_e6=lon_e6,
               **extra).signed(secret)


def card(token: str, balance: int, category: str = "regular", status: str = "active",
         account_id: int = 1) -> CardState:
    return CardState(token, category, status, balance, account_id)


@dataclass
class _InboxEntry:
    tap: Tap
    service_date: str
    status: str
    reason: str | None
    fare: int


@dataclass
class StoreState:
    """What the fake database holds."""

    cards: dict[str, CardState] = field(default_factory=dict)
    inbox: dict[str, _InboxEntry] = field(default_factory=dict)
    entries: list[EntryDraft] = field(default_factory=list)
    denylist: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    quarantine: list[Quarantined] = field(default_factory=list)
    periods: dict[PeriodKey, int] = field(default_factory=dict)


@dataclass
class FakeStore:
    """A database for the tap path: each unit of work sees it as it was at the unit's
    start and replaces it only on commit."""

    state: StoreState = field(default_factory=StoreState)
    commits: int = 0
    fail_on_post: bool = False
    calls: list[str] = field(default_factory=list)

    def unit(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def fare_of(self, tap_id: str) -> int:
        """What a tap costs now: the net of its entries."""
        return sum(d.amount for d in self.state.entries if d.tap_id == tap_id)


class FakeUnitOfWork:
    """One transaction on a `FakeStore`."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def __enter__(self) -> FakeUnitOfWork:
        self.work = copy.deepcopy(self.store.state)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        del self.work  # whatever was not committed is gone

    def commit(self) -> None:
        self.store.state = self.work
        self.store.commits += 1

    def lock_cards(self, cards: Collection[str]) -> dict[str, CardState]:
        self.store.calls.append("lock_cards")
        return {c: self.work.cards[c] for c in sorted(cards) if c in self.work.cards}

    def admit(self, rows: Sequence[Admitted]) -> set[str]:
        self.store.calls.append("admit")
        taken = set()
        for tap_, service_date, status, reason in rows:
            if tap_.tap_id not in self.work.inbox:
                self.work.inbox[tap_.tap_id] = _InboxEntry(tap_, service_date, status, reason,
                                                           0)
                taken.add(tap_.tap_id)
        return taken

    def inbox(self, tap_ids: Sequence[str]) -> dict[str, InboxRow]:
        self.store.calls.append("inbox")
        return {t: InboxRow(e.tap.digest, e.fare, e.tap.card, e.status, e.reason)
                for t, e in self.work.inbox.items() if t in tap_ids}

    def charged_taps(self, first: Mapping[str, str], exclude: Collection[str]
                     ) -> dict[CardDay, dict[str, PricedTap]]:
        self.store.calls.append("charged_taps")
        out: dict[CardDay, dict[str, PricedTap]] = {}
        for tap_id, e in self.work.inbox.items():
            card, day = e.tap.card, e.service_date
            if (card in first and day >= first[card] and e.status == "charged"
                    and tap_id not in exclude):
                out.setdefault((card, day), {})[tap_id] = priced_tap(e.tap)
        return out

    def period_totals(self, keys: Collection[PeriodKey]) -> dict[PeriodKey, int]:
        self.store.calls.append("period_totals")
        return {k: self.work.periods[k] for k in keys if k in self.work.periods}

    def save_periods(self, totals: Mapping[PeriodKey, int]) -> None:
        self.store.calls.append("save_periods")
        self.work.periods.update(totals)

    def tap_amounts(self, days: Collection[CardDay]) -> dict[str, TapAmount]:
        self.store.calls.append("tap_amounts")
        net: dict[str, int] = {}
        operator: dict[str, str | None] = {}
        for d in self.work.entries:
            if d.tap_id is None or (d.card, d.service_date) not in days:
                continue
            net[d.tap_id] = net.get(d.tap_id, 0) + d.amount
            if d.kind == "fare":
                operator[d.tap_id] = d.operator_id
            else:
                operator.setdefault(d.tap_id, None)
        return {t: TapAmount(n, operator[t]) for t, n in net.items()}

    def post(self, drafts: Sequence[EntryDraft], accounts: Mapping[str, int]) -> Posted:
        self.store.calls.append("post")
        if self.store.fail_on_post:
            raise ConnectionError("the database went away")
        keys = {d.idem_key for d in self.work.entries}
        for d in drafts:
            if d.idem_key in keys:  # the unique constraint on idem_key
                raise ValueError(f"idempotency key used twice: {d.idem_key}")
            keys.add(d.idem_key)
            for p in d.postings:
                if p.account.kind == CARD:
                    assert p.account.ref in accounts, "a card posted without its account"
        self.work.entries.extend(drafts)
        balances = {}
        for c, delta in card_deltas(drafts).items():
            if delta:
                s = self.work.cards[c]
                self.work.cards[c] = CardState(s.card, s.category, s.status,
                                               s.balance + delta, s.account_id)
                balances[c] = s.balance + delta
        return Posted(tuple(range(len(self.work.entries) - len(drafts) + 1,
                                  len(self.work.entries) + 1)), balances)

    def refresh_denylist(self, cards: Mapping[str, tuple[str, str, int]]) -> None:
        self.store.calls.append("refresh_denylist")
        self.work.denylist.update(cards)

    def set_fares(self, fares: Mapping[str, int]) -> None:
        self.store.calls.append("set_fares")
        for tap_id, fare in fares.items():
            self.work.inbox[tap_id].fare = fare

    def quarantine(self, records: Sequence[Quarantined]) -> None:
        self.store.calls.append("quarantine")
        self.work.quarantine.extend(records)


class FakeDevices:
    """Registered validators, checked by the gateway's own signature rule."""

    def __init__(self, *buses: tuple[str, str, bytes], revoked: Collection[str] = ()) -> None:
        self.known = {d: KnownDevice(d, v, s, d not in revoked) for d, v, s in buses}

    def verify(self, message: SignedMessage, topic_device: str | None
               ) -> KnownDevice | Refusal:
        return verify_signed(message, topic_device, self.known.get)


class FakeRoutes:
    """The GTFS routes' operators; a route not listed is nobody's."""

    def __init__(self, operators: Mapping[str, str]) -> None:
        self.operators = dict(operators)
        self.refreshes = 0

    def refresh_if_stale(self) -> None:
        self.refreshes += 1

    def operator(self, route_id: str, refresh: bool = True) -> str:
        return self.operators.get(route_id, "unassigned")
