"""`transit tokens`: API tokens."""

from __future__ import annotations

import time

import click

from fare_gateway.cli.core import core
from transit.cli import Group
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError


@click.group(cls=Group)
def tokens() -> None:
    """API tokens (roles admin, ops, finance)."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "ops", "finance"]))
@click.option("--label", default="", help="Who or what the token is for.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Expire after this many days (default: never).")
@pass_transit
def tokens_create(obj: CommandContext, role: str, label: str, days: int | None) -> None:
    """Print a new API token (shown once; only its hash is stored)."""
    from fare_gateway.tokens import create_token

    with core(obj).sessions.begin() as session:
        token = create_token(session, role, label, days)
    click.echo(token)


@tokens.command("revoke")
@click.argument("token_id")
@pass_transit
def tokens_revoke(obj: CommandContext, token_id: str) -> None:
    """Revoke a token by its id (the hex after `tt_`, as `tokens list` shows it)."""
    from fare_gateway.tokens import revoke_token

    with core(obj).sessions.begin() as session:
        if not revoke_token(session, token_id):
            raise TransitError(f"no token {token_id}")
    click.echo(f"token {token_id} revoked")


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@tokens.command("list")
@pass_transit
def tokens_list(obj: CommandContext) -> None:
    """List tokens: id, role, label, created, expires, revoked (never the secret)."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import ApiToken

    with core(obj).sessions() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.created_ms)):
            click.echo(f"{t.id}\t{t.role}\t{t.label or '-'}\tcreated {_when(t.created_ms)}\t"
                       f"expires {_when(t.expires_ms)}\trevoked {_when(t.revoked_ms)}")
