"""`transit db`: the database schema."""

from __future__ import annotations

import click

from ledger.cli import engine
from transit.cli import Group
from transit.context import CommandContext, pass_transit


@click.group(cls=Group)
def db() -> None:
    """The database schema."""


def _check_revision(revision: str) -> None:
    """Refuse a revision the migration history does not have, naming the ones it has."""
    from alembic.util import CommandError

    from fare_gateway.schema import revisions, script_directory

    try:
        script_directory().get_revisions(revision)
    except CommandError as exc:
        raise click.BadParameter(f"{exc}; the migration history has head, "
                                 f"{', '.join(revisions())}", param_hint="'--revision'") from None


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True,
              help="Migrate to this revision of the migration history.")
@pass_transit
def db_upgrade(obj: CommandContext, revision: str) -> None:
    """Create or migrate the database schema (the SQLite file too, if there is none)."""
    from fare_gateway.schema import upgrade

    _check_revision(revision)
    schema = engine(obj, create=True)
    reached = upgrade(schema, revision)
    click.echo(f"database at {reached or 'base (no schema)'}: "
               f"{schema.url.render_as_string(hide_password=True)}")
