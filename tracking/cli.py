"""Tracking subcommands of `transit`: `gtfs import`."""

from __future__ import annotations

import time

import click


@click.group()
def gtfs() -> None:
    """GTFS network data."""


@gtfs.command("import")
@click.argument("feed", type=click.Path(dir_okay=False))
def gtfs_import(feed: str) -> None:
    """Load agencies, routes, stops, shapes and trips from FEED.zip (replaces the last)."""
    from fare_gateway.cli import _core, _friendly
    from tracking.gtfs import GtfsError, import_feed

    @_friendly
    def run() -> None:
        core = _core()
        started = time.perf_counter()
        try:
            with core.sessions.begin() as session:
                report = import_feed(session, feed)
        except GtfsError as exc:
            raise click.ClickException(str(exc)) from None
        for warning in report.warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"imported {report} in {time.perf_counter() - started:.1f}s")

    run()
