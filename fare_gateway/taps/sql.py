"""The tap path's unit of work on SQLAlchemy: one session, one transaction per batch.

Reads are Core statements, not ORM ones: these rows are only read, and the ORM's row
handling cost more than the queries. On PostgreSQL a batch of new taps makes twelve round
trips (the pool's connection check, begin, lock the cards, insert the inbox rows, read
the card-days' taps, read their ledger amounts, read the cards' week and month totals,
post the entries with the new balances, read the deny list, set the receipts' fares,
keep the new week and month totals, commit), whatever its size, when its taps are of
their cards' latest days (a late tap adds a read of taps and one of amounts per group of
cards with the same days);
tests/integration/fare_gateway/test_tap_round_trips.py holds the count.

Each inbox row carries its keyed fingerprint (`taps.mac`, `ledger.fingerprint`), made
in the same insert: a tap edited behind the application's back (its service date, its
route, its card) no longer matches it, and `transit reconcile` names it. Quarantine
records are chained (`ledger.chain`), so that one deleted is noticed too.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType

from sqlalchemy import literal, select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import FarePeriod, QuarantineRecord, TapRecord
from fare_gateway.denylist import refresh_denylist
from fare_gateway.fares.engine import PricedTap
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.taps.periods import PeriodKey
from fare_gateway.taps.planning import Admitted, CardDay, InboxRow
from fare_gateway.taps.ports import Quarantined, TapUnitOfWork
from ledger import chain
from ledger.adapters.bulk import bulk_insert, bulk_update, bulk_upsert
from ledger.adapters.sql import one_of, parts
from ledger.domain import CardState, EntryDraft, Posted, TapAmount
from ledger.fingerprint import Fingerprints
from ledger.services import Ledger

QUARANTINE_KEEP_BYTES = 4096
QUARANTINE_CHAIN = "quarantine"
# A quarantine record's columns but its id and its link, in `quarantine_payload`'s order.
QUARANTINE_COLUMNS = ("received_ms", "topic", "reason", "detail", "device_id", "tap_id",
                      "size", "payload")
# What a tap's fingerprint covers, in order: every column as admitted but `fare`, the
# receipt's figure, set later in the batch (`set_fares`); it decides no money, the
# ledger's entries do.
TAP_FIELDS = ("tap_id", "device_id", "seq", "digest", "card", "kind", "accepted", "reason",
              "ts", "vehicle_id", "route_id", "trip_id", "lat_e6", "lon_e6", "service_date",
              "status", "received_ms", "sig", "extra")


def tap_mac(fingerprints: Fingerprints, row: Mapping[str, object]) -> str:
    """The fingerprint of an inbox row (a mapping holding at least `TAP_FIELDS`)."""
    return fingerprints.of("taps", *(row[name] for name in TAP_FIELDS))


def quarantine_payload(received_ms: int, topic: str, reason: str, detail: str,
                       device_id: str | None, tap_id: str | None, size: int,
                       payload: bytes) -> list[object]:
    """What a quarantine record's link in its chain covers: every column (the stored
    bytes by their SHA-256) but its own id and link."""
    return [received_ms, topic, reason, detail, device_id, tap_id, size,
            hashlib.sha256(payload).hexdigest()]


class SqlTapUnitOfWork:
    """A batch's transaction on the gateway's database."""

    def __init__(self, sessions: sessionmaker[Session], ledger: Ledger,
                 policy: FarePolicy) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy

    def __enter__(self) -> SqlTapUnitOfWork:
        self.session = self.sessions()
        self.session.begin()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.session.rollback()  # nothing left to undo after a commit
        self.session.close()

    def commit(self) -> None:
        """Commit the batch's transaction."""
        self.session.commit()

    def lock_cards(self, cards: Collection[str]) -> dict[str, CardState]:
        """The batch's cards, locked through the ledger."""
        return self.ledger.lock_cards(self.session, cards)

    def admit(self, rows: Sequence[Admitted]) -> set[str]:
        """Insert the inbox rows in tap_id order; returns the tap ids inserted.

        A tap_id already in the inbox is skipped by the insert itself (no look-up first:
        repeats are rare), and one that another gateway is inserting at this moment makes
        us wait for its commit and then skip it here.
        """
        now = int(time.time() * 1000)
        fingerprints = self.ledger.fingerprints
        records = [{
            "tap_id": tap.tap_id, "device_id": tap.device_id, "seq": tap.seq,
            "digest": tap.digest, "card": tap.card, "kind": tap.kind,
            "accepted": tap.accepted, "reason": reason, "ts": tap.ts,
            "vehicle_id": tap.vehicle_id, "route_id": tap.route_id, "trip_id": tap.trip_id,
            "lat_e6": tap.lat_e6, "lon_e6": tap.lon_e6, "service_date": service_date,
            "status": status, "fare": 0, "received_ms": now, "sig": tap.sig,
            "extra": json.dumps(dict(tap.extra), sort_keys=True) if tap.extra else None}
            for tap, service_date, status, reason in rows]
        for record in records:  # in the same insert: no round trip of its own
            record["mac"] = tap_mac(fingerprints, record)
        return {row[0] for row in bulk_insert(self.session, TapRecord.__table__, records,
                                               ignore_conflicts=True, returning=("tap_id",))}

    def inbox(self, tap_ids: Sequence[str]) -> dict[str, InboxRow]:
        """Inbox rows already holding these tap ids."""
        t = TapRecord.__table__.c
        conn = self.session.connection()
        found: dict[str, InboxRow] = {}
        for part in parts(conn, list(tap_ids)):
            for tap_id, *row in conn.execute(
                    select(t.tap_id, t.digest, t.fare, t.card, t.status, t.reason)
                    .where(one_of(conn, t.tap_id, part))):
                found[tap_id] = InboxRow(*row)
        return found

    def charged_taps(self, first: Mapping[str, str], exclude: Collection[str]
                     ) -> dict[CardDay, dict[str, PricedTap]]:
        """Accepted taps already charged in each card's days from `first[card]` on."""
        known: dict[CardDay, dict[str, PricedTap]] = {}
        by_start: dict[str, list[str]] = {}
        for card, day in first.items():
            by_start.setdefault(day, []).append(card)
        t = TapRecord.__table__.c
        # (One statement joining this read with the ledger's was tried: PostgreSQL
        # planned it badly for large batches, 300 ms for 500 cards.) Cards are grouped by
        # their first day, so that one late tap does not make the whole batch read a
        # week: a batch of taps made today is one statement, as before.
        conn = self.session.connection()
        for start, cards in sorted(by_start.items()):
            for part in parts(conn, sorted(cards)):
                rows = conn.execute(select(
                    t.tap_id, t.device_id, t.seq, t.ts, t.vehicle_id, t.route_id, t.kind,
                    t.lat_e6, t.lon_e6, t.card, t.service_date).where(
                    one_of(conn, t.card, part), t.service_date >= start,
                    # Written into the statement, not bound: PostgreSQL's generic plan for
                    # a bound status scanned the whole table (1 ms instead of 0.1 for 13
                    # cards).
                    t.status == literal("charged", literal_execute=True))).all()
                for row in rows:
                    if row[0] not in exclude:
                        known.setdefault((row[9], row[10]), {})[row[0]] = PricedTap._make(row[:9])
        return known

    def tap_amounts(self, days: Collection[CardDay]) -> dict[str, TapAmount]:
        """The ledger's amounts for the taps of these card-days.

        The ledger reads every date asked for of every card asked for: cards are grouped
        by their dates, so that one late tap does not make the whole batch read a week
        of entries (16 ms instead of 3 for 500 cards, one of them 8 days late).
        """
        by_dates: dict[frozenset[str], list[CardDay]] = {}
        dates: dict[str, set[str]] = {}
        for card, day in days:
            dates.setdefault(card, set()).add(day)
        for card, held in dates.items():
            by_dates.setdefault(frozenset(held), []).extend((card, d) for d in held)
        found: dict[str, TapAmount] = {}
        for group in by_dates.values():
            found.update(self.ledger.tap_amounts(self.session, group))
        return found

    def period_totals(self, keys: Collection[PeriodKey]) -> dict[PeriodKey, int]:
        """The kept week and month totals of these periods."""
        wanted = set(keys)
        cards = sorted({c for c, _, _ in wanted})
        starts = sorted({s for _, _, s in wanted})
        p = FarePeriod.__table__.c
        conn = self.session.connection()
        found: dict[PeriodKey, int] = {}
        for part in parts(conn, cards):
            for card, kind, start, total in conn.execute(
                    select(p.card, p.kind, p.start, p.total)
                    .where(one_of(conn, p.card, part), one_of(conn, p.start, starts))):
                if (card, kind, start) in wanted:
                    found[(card, kind, start)] = int(total)
        return found

    def save_periods(self, totals: Mapping[PeriodKey, int]) -> None:
        """The batch's new week and month totals, in one statement, in key order."""
        bulk_upsert(self.session, FarePeriod.__table__, [
            {"card": card, "kind": kind, "start": start, "total": total}
            for (card, kind, start), total in sorted(totals.items())], replace=("total",))

    def post(self, drafts: Sequence[EntryDraft], accounts: Mapping[str, int]) -> Posted:
        """Post through the ledger."""
        return self.ledger.post(self.session, drafts, dict(accounts))

    def refresh_denylist(self, cards: Mapping[str, tuple[str, str, int]]) -> None:
        """The deny list, in the same transaction as the balances it follows."""
        # The cards are locked and their balances are known here: no need to read them.
        refresh_denylist(self.session, self.policy, cards, cards,
                         fingerprints=self.ledger.fingerprints)

    def set_fares(self, fares: Mapping[str, int]) -> None:
        """The receipts' fares on the inbox rows, in one statement."""
        bulk_update(self.session, TapRecord.__table__, "tap_id", "fare", dict(fares))

    def quarantine(self, records: Sequence[Quarantined]) -> None:
        """Quarantine rows, chained, in one statement; a payload is kept up to 4 KiB.

        The service calls it last in the batch: the chain's head stays locked from here
        to the commit, so that gateways take turns only for that moment.
        """
        kept = [(r.received_ms, r.topic[:300], r.reason, r.detail[:2000], r.device_id,
                 r.tap_id, len(r.payload), r.payload[:QUARANTINE_KEEP_BYTES])
                for r in records]
        links = chain.append(self.session, self.ledger.fingerprints, QUARANTINE_CHAIN,
                             [quarantine_payload(*row) for row in kept])
        bulk_insert(self.session, QuarantineRecord.__table__, [{
            **dict(zip(QUARANTINE_COLUMNS, row, strict=True)),
            "chain_seq": link.seq, "prev_mac": link.prev_mac, "mac": link.mac}
            for row, link in zip(kept, links, strict=True)])


def sql_units(sessions: sessionmaker[Session], ledger: Ledger, policy: FarePolicy
              ) -> Callable[[], TapUnitOfWork]:
    """A factory of units of work on this database, one per batch."""
    return lambda: SqlTapUnitOfWork(sessions, ledger, policy)
