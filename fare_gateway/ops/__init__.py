"""The command center's reads: the exceptions (refused messages, taps of unknown cards)
and the operators' alerts (stale vehicles, silent validators, growing spools, disputes
escalated or overdue)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fare_gateway.fleet import FleetRecords
from fare_gateway.ops.alerts import OpsAlert, Thresholds, decide_alerts
from fare_gateway.ops.exception_log import ExceptionsPage, read_exceptions
from fare_gateway.ops.exceptions import Cursor
from fare_gateway.riders.dispute_office import DisputeOffice
from ledger.adapters.db import Sessions
from ledger.services import now_ms
from tracking.domain import SILENT_AFTER_S
from tracking.services import validators_heard
from tracking.store import TrackingStore, VehicleRecord


@dataclass(frozen=True)
class OpsOffice:
    """What the operations endpoints read.

    Without `tracking` (no Redis) only the disputes' alerts can be told.
    `silent_after_s` is TRANSIT_VALIDATOR_SILENT_S. `bunching` tells the bunched pairs
    (tracking's headways) from the vehicles this office has just read.
    """

    sessions: Sessions
    tracking: TrackingStore | None
    disputes: DisputeOffice
    silent_after_s: float = SILENT_AFTER_S
    bunching: Callable[[int, Sequence[VehicleRecord]], Sequence[OpsAlert]] | None = None
    clock: Callable[[], int] = now_ms

    def exceptions(self, since: int, reason: str | None, before: Cursor | None,
                   limit: int) -> ExceptionsPage:
        """A page of the exceptions received from `since` on, newest first."""
        return read_exceptions(self.sessions, since, reason, before, limit)

    def alerts(self) -> list[OpsAlert]:
        """Everything that needs an operator now, newest first."""
        now = self.clock()
        thresholds = Thresholds(silent_after_s=self.silent_after_s)
        pending = [*self.disputes.in_state("overdue", now),
                   *self.disputes.in_state("escalated", now)]
        if self.tracking is None:
            return decide_alerts(now, (), (), pending, thresholds, ())
        store = self.tracking
        # Read once: the stale vehicles and the bunched pairs are told from the same
        # reading (at 4,300 buses a reading costs 0.3-0.5 s).
        vehicles = store.vehicles()
        others = self.bunching(now, vehicles) if self.bunching is not None else ()
        validators = validators_heard(FleetRecords(self.sessions).registered(), store, now,
                                      thresholds.silent_after_s, thresholds.offline_after_s)
        return decide_alerts(now, vehicles, validators, pending, thresholds, others)
