"""The migration history builds exactly the tables the models declare, on SQLite and on
PostgreSQL: a model changed without its migration (or the reverse) fails here, not in a
city's upgrade."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from fare_gateway.schema import load_all_models, upgrade
from ledger.adapters.db import Base


def differences(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        upgrade(engine)
        load_all_models()
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection),
                                         Base.metadata))
    finally:
        engine.dispose()


def test_sqlite_schema_is_the_models(tmp_path: Path) -> None:
    assert differences(f"sqlite:///{tmp_path / 'schema.db'}") == []


def test_postgresql_schema_is_the_models(pg_url: str) -> None:
    assert differences(pg_url) == []
