"""`transit fares`: fare policy files."""

from __future__ import annotations

import click

from transit.cli import Group
from transit.errors import TransitError


@click.group(cls=Group)
def fares() -> None:
    """Fare policy files."""


@fares.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def fares_check(file: str) -> None:
    """Validate a fare policy file: every rule, and every minute of every route priced."""
    from fare_gateway.fares.policy import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        raise TransitError(str(exc)) from None
    click.echo(f"{file}: ok ({len(policy.rules)} rules, categories "
               f"{', '.join(policy.categories)}, currency {policy.currency})")
