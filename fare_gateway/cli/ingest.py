"""`transit ingest`: position ingest alone, for more hosts (`fare_gateway.ingest_workers`)."""

from __future__ import annotations

import click

from ledger.cli import database_url
from transit.context import CommandContext, pass_transit


@click.command()
@click.option("--child", is_flag=True, hidden=True,
              help="Run as a child of `transit gateway`: stop at the end of standard input.")
@pass_transit
def ingest(obj: CommandContext, child: bool) -> None:
    """Ingest positions alone: verify, judge, match and store every device's positions
    from the broker's shared subscription, beside any number of gateways."""
    from fare_gateway.ingest_workers import run_ingest

    database_url(obj)  # no database file: say so, rather than leave an empty one
    run_ingest(obj.settings, child=child)
