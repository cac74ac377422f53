"""`transit denylist`: the deny list validators enforce."""

from __future__ import annotations

import click

from fare_gateway.cli.core import core
from transit.cli import Group
from transit.context import CommandContext, pass_transit


@click.group(cls=Group)
def denylist() -> None:
    """The deny list validators enforce, and the key they verify it with."""


@denylist.command("key")
@pass_transit
def denylist_key(obj: CommandContext) -> None:
    """Print the network's public key (hex) that validators verify the deny list with."""
    from fare_gateway.denylist import network_key

    click.echo(network_key(core(obj).sessions)[1].hex())


@denylist.command("show")
@pass_transit
def denylist_show(obj: CommandContext) -> None:
    """List the cards on the deny list, with why."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import DenyEntry

    with core(obj).sessions() as session:
        for card, reason, version in session.execute(
                select(DenyEntry.card, DenyEntry.reason, DenyEntry.version)
                .order_by(DenyEntry.card)).all():
            click.echo(f"{card}\t{reason}\t{version}")
