"""The tap path: a pure planning step (`planning`) and the transaction around it
(`service`), through a unit of work (`ports`, on SQLAlchemy in `sql`)."""

from __future__ import annotations

from fare_gateway.taps.service import QUARANTINED, Inbound, Outcome, TapService

__all__ = ["QUARANTINED", "Inbound", "Outcome", "TapService"]
