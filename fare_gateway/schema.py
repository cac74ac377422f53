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


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to `revision` (idempotent)."""
    from alembic import command

    cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
