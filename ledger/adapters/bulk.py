"""Bulk writes that cost one statement per table and batch, whatever the batch size.

On PostgreSQL rows travel as one array per column through `unnest`, so the statement
text stays the same for every batch (parsed and planned once) and one round trip carries
a whole batch. SQLite, in-process, takes SQLAlchemy's multi-row inserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    LargeBinary,
    Table,
    bindparam,
    insert,
    text,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from ledger.adapters.sql import dialect_of, insert_ignore


def _pg_type(column: Any) -> str:
    kind = column.type
    if isinstance(kind, BigInteger):
        return "bigint"
    if isinstance(kind, Integer):
        return "integer"
    if isinstance(kind, Boolean):
        return "boolean"
    if isinstance(kind, LargeBinary):
        return "bytea"
    return "text"


def bulk_insert(session: Session, table: Table, rows: Sequence[dict[str, Any]], *,
                ignore_conflicts: bool = False,
                returning: Sequence[str] = ()) -> list[Row[Any]]:
    """Insert rows (all with the same keys); optionally skip conflicts and return columns."""
    if not rows:
        return []
    if dialect_of(session) != "postgresql":
        stmt = insert_ignore(session, table) if ignore_conflicts else insert(table)
        if returning:
            stmt = stmt.returning(*(table.c[c] for c in returning))
            return list(session.execute(stmt, list(rows)).all())
        session.execute(stmt, list(rows))
        return []
    columns = list(rows[0].keys())
    arrays = ", ".join(f"CAST(:{c} AS {_pg_type(table.c[c])}[])" for c in columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += " RETURNING " + ", ".join(returning)
    params = {c: [r[c] for r in rows] for c in columns}
    result = session.execute(text(sql), params)
    return list(result.all()) if returning else []


def bulk_update(session: Session, table: Table, key: str, column: str,
                values: dict[str, int], *, add: bool = False) -> None:
    """For each key, set the integer `column` to its value (or add it, with add=True).

    Rows are updated in key order: the order in which callers lock them.
    """
    items = sorted((k, v) for k, v in values.items() if v or not add)
    if not items:
        return
    if dialect_of(session) == "postgresql":
        new = f"t.{column} + d.v" if add else "d.v"
        session.execute(text(
            f"UPDATE {table.name} AS t SET {column} = {new} "
            f"FROM unnest(CAST(:keys AS text[]), CAST(:vals AS bigint[])) AS d(k, v) "
            f"WHERE t.{key} = d.k"),
            {"keys": [k for k, _ in items], "vals": [v for _, v in items]})
        return
    value = table.c[column] + bindparam("v") if add else bindparam("v")
    session.connection().execute(
        table.update().where(table.c[key] == bindparam("k")).values({column: value}),
        [{"k": k, "v": v} for k, v in items])
