"""What the command center acts on: `GET /api/v1/exceptions` and `GET /api/v1/ops/alerts`
(contract section 8)."""

from __future__ import annotations

from flask import Blueprint

from fare_gateway.ops import OpsOffice


def ops_blueprint(office: OpsOffice) -> Blueprint:
    """The exceptions and the operators' alerts."""
    return Blueprint("ops", __name__)
