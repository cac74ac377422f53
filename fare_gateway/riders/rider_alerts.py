"""The service alerts a rider sees: those active now on the routes the account's cards
rode in the last 30 days (or at a stop those routes serve), and those about the whole
network, each in the rider's language."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from fare_gateway.adapters.models import RiderCard, TapRecord
from fare_gateway.fares.policy import FarePolicy
from ledger.adapters.db import READS_ONLY, Sessions
from tracking.adapters.models import Stop
from tracking.alerts import Alert, AlertOffice

RIDDEN_DAYS = 30


@dataclass(frozen=True)
class RiderAlerts:
    """What one account is told: the alerts and the routes they were chosen by."""

    alerts: list[Alert]
    routes: list[str]  # the routes the account's cards rode, in id order
    stop_names: dict[str, str]  # stop id -> name, for the stops the alerts name


@dataclass(frozen=True)
class RiderAlertDesk:
    """The alerts for riders, over the taps of their linked cards."""

    sessions: Sessions
    policy: FarePolicy  # whose service days the 30 days count
    clock: Callable[[], int] = lambda: int(time.time() * 1000)

    def for_account(self, account_id: int) -> RiderAlerts:
        """The alerts an account's rider sees now."""
        now = self.clock()
        since = (self.policy.service_date(now) - timedelta(days=RIDDEN_DAYS - 1)).isoformat()
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)  # SQLite: no write lock
            # Accepted taps only: a tap refused at the reader is no ride on the route.
            routes = sorted(session.scalars(
                select(TapRecord.route_id).distinct()
                .join(RiderCard, RiderCard.card == TapRecord.card)
                .where(RiderCard.account_id == account_id, TapRecord.accepted.is_(True),
                       TapRecord.service_date >= since)))
        alerts = AlertOffice(self.sessions, clock=lambda: now).on_routes(routes)
        named = {s for a in alerts for s in a.stop_ids}
        names: dict[str, str] = {}
        if named:
            with self.sessions() as session:
                session.connection(execution_options=READS_ONLY)
                names = dict(session.execute(select(Stop.stop_id, Stop.name)
                                             .where(Stop.stop_id.in_(named))).all())
        return RiderAlerts(alerts, routes, names)
