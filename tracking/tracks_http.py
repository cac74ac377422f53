"""`GET /api/v1/vehicles/{vehicle_id}/track`: a vehicle's positions as kept on disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint

from ledger.adapters.db import Sessions


@dataclass(frozen=True)
class TracksDeps:
    """What the track endpoint needs, handed in by the wiring."""

    sessions: Sessions
    require: Callable[..., Any]  # the gateway's token check, `require(*roles)`
    operation: Callable[..., Any]  # declares a view in the OpenAPI description


def tracks_blueprint(deps: TracksDeps) -> Blueprint:
    """The track endpoint."""
    return Blueprint("tracks", __name__)
