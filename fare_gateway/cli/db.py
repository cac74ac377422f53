"""`transit db`: the database schema, and the fingerprints of rows written before it
had them."""

from __future__ import annotations

import click

from ledger.cli import engine, fingerprints
from transit.cli import Group
from transit.context import CommandContext, pass_transit

FINGERPRINTS = "0011"  # the revision that gave the rows that decide money fingerprints


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


def _fingerprinted(revision: str | None) -> bool:
    """Whether the schema at `revision` has the fingerprint columns."""
    from fare_gateway.schema import revisions

    order = revisions()  # newest first
    return (revision is not None and revision in order
            and order.index(revision) <= order.index(FINGERPRINTS))


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True,
              help="Migrate to this revision of the migration history.")
@click.option("--seal-legacy", is_flag=True,
              help="Fingerprint rows that have none though the schema already has "
                   "fingerprints (after an upgrade whose sealing failed); only once "
                   "`transit reconcile` has shown them to be rows written before.")
@pass_transit
def db_upgrade(obj: CommandContext, revision: str, seal_legacy: bool) -> None:
    """Create or migrate the database schema (the SQLite file too, if there is none).

    The run that brings the schema its fingerprints seals the rows written before with
    the run's key (TRANSIT_SECRET_KEY), and says how many. Later runs seal nothing
    unless asked (--seal-legacy): a row without a fingerprint is then one written
    behind the application's back, which `transit reconcile` names.
    """
    from fare_gateway.schema import current_revision, upgrade

    _check_revision(revision)
    schema = engine(obj, create=True)
    before = current_revision(schema)
    reached = upgrade(schema, revision)
    click.echo(f"database at {reached or 'base (no schema)'}: "
               f"{schema.url.render_as_string(hide_password=True)}")
    if _fingerprinted(reached) and (seal_legacy or not _fingerprinted(before)):
        counts = _seal(obj)
        if counts:
            click.echo(f"fingerprinted the rows written before fingerprints: {counts}")


def _seal(obj: CommandContext) -> str:
    """Seal every table's legacy rows in one transaction; what was sealed, as a phrase."""
    from fare_gateway import integrity
    from ledger import audit
    from ledger.adapters.db import session_factory
    from ledger.integrity import seal_legacy, sealed_counts

    keyed = fingerprints(obj)
    with session_factory(engine(obj)).begin() as session:
        counts = seal_legacy(session, keyed)
        counts.update(integrity.seal_legacy(session, keyed))
        if any(counts.values()):
            audit.record(session, keyed, audit.Actor.command(), "fingerprints.sealed",
                         "", {k: v for k, v in counts.items() if v})
    return sealed_counts(counts) if any(counts.values()) else ""
