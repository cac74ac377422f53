"""Schema management: every table's module, and `upgrade()` behind `transit db upgrade`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from transit.errors import TransitError

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(TransitError):
    """The schema cannot be brought where it was asked to go."""


def load_all_models() -> None:
    """Import every module that declares tables, so the metadata is complete."""
    import fare_gateway.adapters.models  # noqa: F401
    import ledger.adapters.models  # noqa: F401
    import tracking.adapters.models  # noqa: F401


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def script_directory():  # type: ignore[no-untyped-def]
    """The migration history (Alembic's script directory)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(""))


def revisions() -> list[str]:
    """Every revision of the migration history, newest first."""
    return [script.revision for script in script_directory().walk_revisions()]


def current_revision(engine: Engine) -> str | None:
    """The revision the database's schema is at; None when it has none."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _newer(url: str, current: str, head: str) -> str:
    return (f"the database {url} is at revision {current}, newer than this version "
            f"knows (its newest is {head}): run the matching version of transit")


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot run on the database's schema, or None when it is current."""
    current = current_revision(engine)
    head = script_directory().get_current_head()
    if current == head:
        return None
    url = engine.url.render_as_string(hide_password=True)
    if current is None:
        return f"the database {url} has no schema: run transit db upgrade"
    if current not in revisions():
        return _newer(url, current, head)
    return (f"the database {url} is at revision {current}, this version needs {head}: "
            "run transit db upgrade")


def _refuse_backwards(url: str, current: str | None, revision: str) -> None:
    """Refuse a database newer than this code, and a target behind the database."""
    if current is None:
        return
    history = script_directory()
    order = revisions()  # newest first
    if current not in order:
        raise SchemaError(_newer(url, current, history.get_current_head()))
    targets = history.get_revisions(revision)
    target = targets[0].revision if targets else None  # none: "base", before the first
    if target is None or order.index(target) > order.index(current):
        # Downgrades are not offered: they would drop what later revisions hold.
        raise SchemaError(f"the database {url} is at revision {current}, past "
                          f"{target or 'base'}: transit db upgrade only migrates forward "
                          "(downgrades are not offered)")


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Create or migrate the schema to `revision` (idempotent); the revision it is at then.

    A database newer than this code, or a `revision` behind the database's, is refused
    with a `SchemaError`: the history only runs forward here.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.begin() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        _refuse_backwards(engine.url.render_as_string(hide_password=True), current, revision)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        return MigrationContext.configure(connection).get_current_revision()
