"""`transit tokens`: API tokens, each naming its holder; creating and revoking one is
recorded in the audit trail, in the same transaction."""

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
@click.option("--name", default="",
              help="The holder's name, shown in the audit trail beside the token's id.")
@click.option("--label", default="", help="What the token is for.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Expire after this many days (default: never).")
@pass_transit
def tokens_create(obj: CommandContext, role: str, name: str, label: str,
                  days: int | None) -> None:
    """Print a new API token (shown once; only its hash is stored)."""
    from fare_gateway.tokens import create_token, token_id_of
    from ledger.audit import Actor, record

    built = core(obj)
    fingerprints = built.ledger.fingerprints
    with built.sessions.begin() as session:
        token = create_token(session, role, label, days, name=name.strip(),
                             fingerprints=fingerprints)
        token_id = token_id_of(token)
        record(session, fingerprints, Actor.command(), "token.created", token_id,
               {"role": role, "name": name.strip(), "token_id": token_id})
    click.echo(token)


@tokens.command("revoke")
@click.argument("token_id")
@pass_transit
def tokens_revoke(obj: CommandContext, token_id: str) -> None:
    """Revoke a token by its id (the hex after `tt_`, as `tokens list` shows it)."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import ApiToken
    from fare_gateway.tokens import revoke_token
    from ledger.audit import Actor, record

    built = core(obj)
    fingerprints = built.ledger.fingerprints
    with built.sessions.begin() as session:
        open_before = session.scalar(select(ApiToken.id).where(
            ApiToken.id == token_id, ApiToken.revoked_ms.is_(None))) is not None
        row = revoke_token(session, token_id, fingerprints=fingerprints)
        if row is None:
            raise TransitError(f"no token {token_id}")
        if open_before:  # revoking it again changes nothing, and records nothing
            record(session, fingerprints, Actor.command(), "token.revoked", token_id,
                   {"role": row.role, "name": row.name, "token_id": token_id})
    click.echo(f"token {token_id} revoked")


def _when(ms: int | None) -> str:
    return "-" if ms is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@tokens.command("list")
@pass_transit
def tokens_list(obj: CommandContext) -> None:
    """List tokens: id, role, holder's name, label, created, expires, revoked (never the
    secret)."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import ApiToken

    with core(obj).sessions() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.created_ms)):
            click.echo(f"{t.id}\t{t.role}\t{t.name or '-'}\t{t.label or '-'}\t"
                       f"created {_when(t.created_ms)}\texpires {_when(t.expires_ms)}\t"
                       f"revoked {_when(t.revoked_ms)}")
