"""Instants as riders' and disputes' endpoints show and take them: ISO-8601 UTC with `Z`.
The rules themselves live in the kernel (`transit.instants`), shared with tracking."""

from __future__ import annotations

from transit.instants import EARLIEST_MS, LATEST_MS, iso_z, parse_instant

__all__ = ["EARLIEST_MS", "LATEST_MS", "iso_z", "parse_instant"]
