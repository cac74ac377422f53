"""Small SQL helpers that differ between PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def dialect_of(bind: Session | Connection) -> str:
    return bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name


def insert_ignore(bind: Session | Connection, table: Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` in the bind's dialect."""
    module = postgresql if dialect_of(bind) == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


def chunks(items: list[Any], size: int = 900) -> list[list[Any]]:
    """Split long IN lists (SQLite allows at most 32,766 parameters per statement)."""
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]
