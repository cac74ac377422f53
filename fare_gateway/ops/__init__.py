"""The command center's reads: the exceptions (refused messages, taps of unknown cards)
and the operators' alerts (stale vehicles, silent validators, growing spools, disputes
escalated or overdue)."""

from __future__ import annotations

from dataclasses import dataclass

from fare_gateway.riders.dispute_office import DisputeOffice
from ledger.adapters.db import Sessions
from tracking.store import TrackingStore


@dataclass(frozen=True)
class OpsOffice:
    """What the operations endpoints read."""

    sessions: Sessions
    tracking: TrackingStore | None
    disputes: DisputeOffice
