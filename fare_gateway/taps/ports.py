"""The tap path's unit of work: the handful of reads and writes one batch makes.

One unit is one transaction. Nothing is kept unless `commit` is called; leaving the
`with` block without it rolls everything back. The inbox (the `taps` table) and the
quarantine are the gateway's; card locks, amounts and postings go through the ledger.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from fare_gateway.fares.engine import PricedTap
from fare_gateway.taps.periods import PeriodKey
from fare_gateway.taps.planning import Admitted, CardDay, InboxRow
from ledger.domain import CardState, EntryDraft, Posted, TapAmount


@dataclass(frozen=True)
class Quarantined:
    """A message kept for inspection instead of being charged."""

    received_ms: int
    topic: str
    reason: str
    detail: str
    device_id: str | None
    tap_id: str | None
    payload: bytes


class TapUnitOfWork(Protocol):
    """One batch's transaction, in the order the service calls it."""

    def __enter__(self) -> TapUnitOfWork: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None: ...

    def commit(self) -> None:
        """Make everything this unit wrote durable."""

    def lock_cards(self, cards: Collection[str]) -> dict[str, CardState]:
        """Lock the cards in sorted order; tokens that are no card are left out."""

    def admit(self, rows: Sequence[Admitted]) -> set[str]:
        """Insert the inbox rows, skipping tap ids already there; returns those taken."""

    def inbox(self, tap_ids: Sequence[str]) -> dict[str, InboxRow]:
        """What the inbox holds for these tap ids."""

    def charged_taps(self, first: Mapping[str, str], exclude: Collection[str]
                     ) -> dict[CardDay, dict[str, PricedTap]]:
        """The accepted taps charged in each card's days from `first[card]` (a service
        date) on, but for those in `exclude`; only days that hold some."""

    def tap_amounts(self, days: Collection[CardDay]) -> dict[str, TapAmount]:
        """What the ledger holds now for each tap of these card-days."""

    def period_totals(self, keys: Collection[PeriodKey]) -> dict[PeriodKey, int]:
        """The kept week and month totals of these cards' periods (absent: none yet)."""

    def save_periods(self, totals: Mapping[PeriodKey, int]) -> None:
        """Keep these week and month totals."""

    def post(self, drafts: Sequence[EntryDraft], accounts: Mapping[str, int]) -> Posted:
        """Post the entries (`accounts`: the locked cards' account ids)."""

    def refresh_denylist(self, cards: Mapping[str, tuple[str, str, int]]) -> None:
        """Bring the deny list in line with these cards' (category, status, balance)."""

    def set_fares(self, fares: Mapping[str, int]) -> None:
        """Keep each new tap's receipt fare on its inbox row."""

    def quarantine(self, records: Sequence[Quarantined]) -> None:
        """Keep messages for inspection."""
