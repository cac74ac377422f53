"""Bulk writes that cost one statement per table and batch, whatever the batch size.

On PostgreSQL rows travel as one array per column through `unnest`, so the statement
text stays the same for every batch (parsed and planned once) and one round trip carries
a whole batch. Each array is sent as one string in PostgreSQL's array syntax
(`pg_array`) and cast on the server: psycopg's own adaptation of a Python list costs
about 25 microseconds per parameter plus 0.3 per element, the most expensive part of a
small batch. SQLite, in-process, takes SQLAlchemy's multi-row inserts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

from ledger.adapters.sql import dialect_of, insert_ignore, pg_array


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
    params = {c: pg_array([r[c] for r in rows]) for c in columns}
    result = session.execute(text(sql), params)
    return list(result.all()) if returning else []


def bulk_upsert(session: Session, table: Table, rows: Sequence[dict[str, Any]],
                replace: Sequence[str]) -> None:
    """Insert rows, or where the primary key is taken set the `replace` columns."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    if dialect_of(session) != "postgresql":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
        session.execute(stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in replace}), list(rows))
        return
    columns = list(rows[0].keys())
    arrays = ", ".join(f"CAST(:{c} AS {_pg_type(table.c[c])}[])" for c in columns)
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in replace)
    session.execute(text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"),
        {c: pg_array([r[c] for r in rows]) for c in columns})


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
            {"keys": pg_array([k for k, _ in items]), "vals": pg_array([v for _, v in items])})
        return
    value = table.c[column] + bindparam("v") if add else bindparam("v")
    session.connection().execute(
        table.update().where(table.c[key] == bindparam("k")).values({column: value}),
        [{"k": k, "v": v} for k, v in items])


def bulk_set(session: Session, table: Table, key: str, columns: Sequence[str],
             rows: Sequence[Sequence[Any]]) -> None:
    """Set `columns` of the row whose `key` is each row's first value to its other values,
    in one statement (PostgreSQL) or one executemany (SQLite)."""
    if not rows:
        return
    if dialect_of(session) == "postgresql":
        names = [key, *columns]
        arrays = ", ".join(f"CAST(:a{i} AS {_pg_type(table.c[n])}[])"
                           for i, n in enumerate(names))
        sets = ", ".join(f"{c} = d.{c}" for c in columns)
        session.execute(text(
            f"UPDATE {table.name} AS t SET {sets} FROM unnest({arrays}) "
            f"AS d({', '.join(names)}) WHERE t.{key} = d.{key}"),
            {f"a{i}": pg_array([r[i] for r in rows]) for i in range(len(names))})
        return
    session.connection().execute(
        table.update().where(table.c[key] == bindparam("_key"))
        .values({c: bindparam(f"_{c}") for c in columns}),
        [{"_key": r[0], **{f"_{c}": v for c, v in zip(columns, r[1:], strict=True)}}
         for r in rows])


def insert_entries_pg(session: Session, entries: Table, postings: Table, cards: Table,
                      entry_rows: Sequence[dict[str, Any]],
                      posting_rows: Sequence[tuple[str, int, int]],
                      balance_deltas: dict[str, int],
                      card_heads: Mapping[str, tuple[str, str | None]] | None = None
                      ) -> tuple[dict[str, int], dict[str, int]]:
    """PostgreSQL: entries, their postings and the cards in one statement.

    `posting_rows` are (entry idem_key, account id, amount), inserted in the order given;
    `balance_deltas` is added to each card's balance, and `card_heads` gives a card the
    (head, mac) of its chain after these entries, its balance moved or not (a mac of
    None keeps the card's own: `ledger.services` keeps a failing one unsigned).
    Data-modifying CTEs run as one statement: one round trip instead of three, all or
    nothing like the transaction around it. Returns each new entry's id by idem_key, and
    the new balance of each card whose balance moved (the same round trip: no read of
    the cards afterwards).
    """
    columns = list(entry_rows[0].keys())
    arrays = ", ".join(f"CAST(:e_{c} AS {_pg_type(entries.c[c])}[])" for c in columns)
    heads = card_heads or {}
    cards_moved = sorted({k for k, v in balance_deltas.items() if v} | heads.keys())
    # A card's head and fingerprint travel beside its balance: NULL keeps what it has.
    sql = (
        f"WITH e AS (INSERT INTO {entries.name} ({', '.join(columns)}) "
        f"SELECT * FROM unnest({arrays}) RETURNING id, idem_key), "
        f"p AS (INSERT INTO {postings.name} (entry_id, account_id, amount) "
        f"SELECT e.id, d.account_id, d.amount FROM unnest(CAST(:p_key AS text[]), "
        f"CAST(:p_account AS bigint[]), CAST(:p_amount AS bigint[])) "
        f"WITH ORDINALITY AS d(idem_key, account_id, amount, n) "
        f"JOIN e ON e.idem_key = d.idem_key ORDER BY d.n), "
        f"c AS (UPDATE {cards.name} AS t SET balance = t.balance + d.v, "
        f"head = COALESCE(d.h, t.head), mac = COALESCE(d.m, t.mac) "
        f"FROM unnest(CAST(:c_keys AS text[]), CAST(:c_vals AS bigint[]), "
        f"CAST(:c_heads AS text[]), CAST(:c_macs AS text[])) AS d(k, v, h, m) "
        f"WHERE t.card = d.k RETURNING t.card, t.balance, d.v) "
        f"SELECT 'e', id, idem_key FROM e "
        f"UNION ALL SELECT 'c', balance, card FROM c WHERE v <> 0")
    params: dict[str, Any] = {f"e_{c}": pg_array([r[c] for r in entry_rows])
                              for c in columns}
    params.update(p_key=pg_array([p[0] for p in posting_rows]),
                  p_account=pg_array([p[1] for p in posting_rows]),
                  p_amount=pg_array([p[2] for p in posting_rows]),
                  c_keys=pg_array(cards_moved),
                  c_vals=pg_array([balance_deltas.get(k, 0) for k in cards_moved]),
                  c_heads=pg_array([heads[k][0] if k in heads else None
                                    for k in cards_moved]),
                  c_macs=pg_array([heads[k][1] if k in heads else None
                                   for k in cards_moved]))
    ids: dict[str, int] = {}
    balances: dict[str, int] = {}
    for source, number, key in session.execute(text(sql), params).all():
        if source == "e":
            ids[key] = number
        else:
            balances[key] = number
    return ids, balances
