"""`transit reconcile`'s check of the cards' week and month totals against the ledger,
and `transit fares rebuild-totals`, which sets them right again.

`fare_periods` decides money (a new tap's weekly and monthly caps count from it), so a
total edited behind the application's back, or left behind by a write that bypassed the
tap path, must be named. Each total must equal the net of the entries that name a tap
of that card in that week or month. Both sides are read as streams in card order and
compared one card at a time: memory stays bounded by one card's periods.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from itertools import groupby
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import FarePeriod
from fare_gateway.fares.policy import month_of, week_of
from ledger import audit
from ledger.adapters.bulk import bulk_upsert
from ledger.adapters.models import Entry
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints
from ledger.reconcile import CheckResult, Findings
from ledger.services import Ledger

STREAM = 2000


def _ledger_periods(session: Session, card: str | None = None
                    ) -> Iterator[tuple[str, dict[tuple[str, str], int]]]:
    e = Entry.__table__.c
    only = [e.card == card] if card is not None else []
    rows = session.execute(
        select(e.card, e.service_date, func.sum(e.amount))
        .where(e.tap_id.is_not(None), e.card.is_not(None), e.service_date.is_not(None),
               *only)
        .group_by(e.card, e.service_date).order_by(e.card)
        .execution_options(yield_per=STREAM))
    for card, days in groupby(rows, key=lambda r: r[0]):
        totals: dict[tuple[str, str], int] = {}
        for _, service_date, amount in days:
            day = date.fromisoformat(service_date)
            for key in (("week", week_of(day).isoformat()),
                        ("month", month_of(day).isoformat())):
                totals[key] = totals.get(key, 0) + int(amount)
        yield card, totals


def _kept_periods(session: Session, card: str | None = None
                  ) -> Iterator[tuple[str, dict[tuple[str, str], int]]]:
    p = FarePeriod.__table__.c
    only = [p.card == card] if card is not None else []
    rows = session.execute(select(p.card, p.kind, p.start, p.total).where(*only)
                           .order_by(p.card).execution_options(yield_per=STREAM))
    for card, periods in groupby(rows, key=lambda r: r[0]):
        yield card, {(kind, start): int(total) for _, kind, start, total in periods}


def check_fare_periods(session: Session, fingerprints: Fingerprints) -> CheckResult:
    """Every card's kept week and month totals equal what its entries add up to."""
    found = Findings()
    kept = _kept_periods(session)
    ledger = _ledger_periods(session)
    mine = next(kept, None)
    theirs = next(ledger, None)
    count = 0
    while mine is not None or theirs is not None:
        if theirs is None or (mine is not None and mine[0] < theirs[0]):
            assert mine is not None
            card, held, owed = mine[0], mine[1], {}
            mine = next(kept, None)
        elif mine is None or theirs[0] < mine[0]:
            card, held, owed = theirs[0], {}, theirs[1]
            theirs = next(ledger, None)
        else:
            card, held, owed = mine[0], mine[1], theirs[1]
            mine, theirs = next(kept, None), next(ledger, None)
        for kind, start in sorted(set(held) | set(owed)):
            count += 1
            a, b = held.get((kind, start)), owed.get((kind, start), 0)
            if a != b and not (a is None and b == 0):
                found.add("fare period", f"card {card}'s {kind} from {start} is kept as "
                          f"{'missing' if a is None else a} but its entries add up to {b}: "
                          "a new tap's weekly and monthly caps would count from the wrong "
                          "total")
    problems = found.problems()
    return CheckResult([] if problems else
                       [f"{count} week and month total(s) agree with the ledger"], problems)


class Mended(NamedTuple):
    """A kept total that `rebuild_fare_periods` set to what the ledger says."""

    card: str
    kind: str
    start: str
    was: int | None
    now: int


def rebuild_fare_periods(sessions: sessionmaker[Session], ledger: Ledger, actor: Actor
                         ) -> list[Mended]:
    """Set every card's kept week and month totals to what its entries add up to.

    One card at a time, each in a transaction of its own under the card's lock (the lock
    the tap path takes), so that gateways may run meanwhile; a card whose totals agree
    is left alone. Idempotent: a second run changes nothing. Each card mended is
    recorded in the audit trail.
    """
    with sessions() as session:
        cards = sorted({c for c, _ in _kept_periods(session)}
                       | {c for c, _ in _ledger_periods(session)})
    mended: list[Mended] = []
    for card in cards:
        with sessions.begin() as session:
            ledger.lock_cards(session, [card])
            held = next((t for _, t in _kept_periods(session, card)), {})
            owed = next((t for _, t in _ledger_periods(session, card)), {})
            changes = [Mended(card, kind, start, held.get((kind, start)),
                              owed.get((kind, start), 0))
                       for kind, start in sorted(set(held) | set(owed))
                       if held.get((kind, start)) != owed.get((kind, start), 0)]
            if not changes:
                continue
            bulk_upsert(session, FarePeriod.__table__, [
                {"card": card, "kind": m.kind, "start": m.start, "total": m.now}
                for m in changes], replace=("total",))
            audit.record(session, ledger.fingerprints, actor, "fare_periods.rebuilt", card,
                         {"periods": [f"{m.kind} {m.start}: {m.was} -> {m.now}"
                                      for m in changes]})
            mended += changes
    return mended
