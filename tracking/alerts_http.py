"""Service alerts: `POST/GET /api/v1/alerts`, `DELETE /api/v1/alerts/{id}` and the
GTFS-Realtime Alerts feed at `/gtfs-rt/alerts`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint

from ledger.adapters.db import Sessions
from ledger.audit import Actor
from ledger.fingerprint import Fingerprints


@dataclass(frozen=True)
class AlertsDeps:
    """What the alerts' endpoints need, handed in by the wiring."""

    sessions: Sessions
    fingerprints: Fingerprints  # the audit trail's key
    actor: Callable[[], Actor]  # who is asking (the token's holder), for the audit trail
    require: Callable[..., Any]  # the gateway's token check, `require(*roles)`
    operation: Callable[..., Any]  # declares a view in the OpenAPI description


def alerts_blueprint(deps: AlertsDeps) -> Blueprint:
    """The alerts' endpoints."""
    return Blueprint("alerts", __name__)
