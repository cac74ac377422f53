"""`transit gateway`: the fare gateway in one process."""

from __future__ import annotations

import click

from fare_gateway.cli.core import policy
from ledger.cli import database_url
from transit.context import CommandContext, pass_transit


@click.command()
@pass_transit
def gateway(obj: CommandContext) -> None:
    """Run the fare gateway: tap and position consumers, deny-list publisher, HTTP API, map."""
    from fare_gateway.wiring import run_gateway

    policy(obj)
    database_url(obj)  # no database file: say so, rather than leave an empty one
    run_gateway(obj.settings)
