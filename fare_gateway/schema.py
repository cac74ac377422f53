"""Schema management: every table's module, and `upgrade()` behind `transit db upgrade`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


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


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot run on the database's schema, or None when it is current."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    head = script_directory().get_current_head()
    if current == head:
        return None
    url = engine.url.render_as_string(hide_password=True)
    if current is None:
        return f"the database {url} has no schema: run transit db upgrade"
    if current not in revisions():
        return (f"the database {url} is at revision {current}, newer than this version "
                f"knows (its newest is {head}): run the matching version of transit")
    return (f"the database {url} is at revision {current}, this version needs {head}: "
            "run transit db upgrade")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to `revision` (idempotent)."""
    from alembic import command

    cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
