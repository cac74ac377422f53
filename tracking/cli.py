"""Tracking's subcommands of `transit` (`gtfs import`), and the translator of a feed's
refusal into one line."""

from __future__ import annotations

import time

import click

from ledger.adapters.db import session_factory
from ledger.cli import engine
from transit.cli import Group
from transit.context import CommandContext, pass_transit


@click.group(cls=Group)
def gtfs() -> None:
    """GTFS network data: agencies, routes, stops, shapes, trips."""


@gtfs.command("import")
@click.argument("feed", type=click.Path(dir_okay=False))
@pass_transit
def gtfs_import(obj: CommandContext, feed: str) -> None:
    """Load agencies, routes, stops, shapes and trips from FEED.zip (replaces the last)."""
    from tracking.gtfs import import_feed

    sessions = session_factory(engine(obj))
    started = time.perf_counter()
    with sessions.begin() as session:
        report = import_feed(session, feed)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"imported {report} in {time.perf_counter() - started:.1f}s")


def explain(exc: BaseException) -> str | None:
    """One line for a feed that cannot be imported; None for other failures."""
    from tracking.gtfs import GtfsError

    return str(exc) if isinstance(exc, GtfsError) else None
