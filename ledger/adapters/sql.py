"""Small SQL helpers that differ between PostgreSQL and SQLite."""

from __future__ import annotations

import typing
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType


def dialect_of(bind: Session | Connection) -> str:
    return bind.get_bind().dialect.name if isinstance(bind, Session) else bind.dialect.name


def insert_ignore(bind: Session | Connection, table: Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` in the bind's dialect."""
    module = postgresql if dialect_of(bind) == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing()


def chunks(items: list[Any], size: int = 900) -> list[list[Any]]:
    """Split long IN lists (SQLite allows at most 32,766 parameters per statement)."""
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return '"\\\\x' + bytes(value).hex() + '"'  # bytea hex input, its backslash escaped
    text_value = str(value)
    if "\\" in text_value or '"' in text_value:
        text_value = text_value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text_value + '"'


_INT = {int}
_STR = {str}


def pg_array(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal (`{"a","b",NULL}`) for strings, integers, booleans,
    bytes and None; cast it on the server, e.g. `CAST(:p AS text[])`.

    Every string is double-quoted with `\\` and `"` escaped, so any text (quotes, commas,
    braces, the word NULL) arrives unchanged.
    """
    if not values:
        return "{}"
    # Checked and joined in C: a batch's insert makes ~20 arrays of 500 values, and a
    # check in Python per value cost ~6 us a tap.
    kinds = set(map(type, values))
    if kinds == _INT:
        return "{" + ",".join(map(str, values)) + "}"
    if kinds == _STR:
        together = "".join(values)
        if '"' not in together and "\\" not in together:
            return '{"' + '","'.join(values) + '"}'
    return "{" + ",".join([_element(v) for v in values]) + "}"


def _unbounded(type_: Any) -> Any:
    """The column's type without its length: a cast to `varchar(n)[]` would cut longer
    values short and let them match a row they only begin like."""
    if getattr(type_, "length", None) is None:
        return type_
    unbounded = type_.copy()
    unbounded.length = None
    return unbounded


def one_of(bind: Session | Connection, column: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values`.

    On PostgreSQL the values travel as one array (`column = ANY(:array)`), so the
    statement's text is the same whatever their number: it is compiled once by
    SQLAlchemy and prepared once by the server. SQLite gets an expanding IN; callers
    split long lists with `parts`.
    """
    if dialect_of(bind) == "postgresql":
        # An untyped parameter, so that PostgreSQL reads it as the array type itself:
        # a constant in the plan (a text parameter cast to an array is re-parsed for
        # every row a sequential scan meets).
        array = bindparam(None, pg_array(list(values)), type_=NullType())
        return typing.cast(ColumnElement[bool], column == any_(
            cast(array, postgresql.ARRAY(_unbounded(column.type)))))
    return typing.cast(ColumnElement[bool], column.in_(list(values)))


def parts(bind: Session | Connection, items: list[Any]) -> list[list[Any]]:
    """`items` split for `one_of`: one part on PostgreSQL (an array has no parameter
    limit), `chunks` on SQLite."""
    return [items] if dialect_of(bind) == "postgresql" else chunks(items)
