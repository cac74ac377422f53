"""The PostgreSQL adapter on a real server: array parameters (`ledger.adapters.sql`) and
the engine's connection settings.

Every batch of taps passes its values to PostgreSQL as array literals built by
`pg_array`; whatever a value holds must arrive unchanged, and `one_of` must match
exactly the rows whose value is among those given.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.engine import Connection

from ledger.adapters.db import make_engine
from ledger.adapters.sql import one_of, pg_array

AWKWARD = ['"', "\\", '\\"', "{", "}", "{a,b}", ",", "NULL", "null", "", " lead", "trail ",
           "tab\there", "new\nline", "cr\r", "'", "$$", "ünï©ødé", "🚌", "x" * 100_000]


@pytest.fixture
def conn(pg_url: str) -> Iterator[Connection]:
    engine = make_engine(pg_url)
    with engine.connect() as c:
        yield c
    engine.dispose()


def roundtrip(conn: Connection, values: list[object], pg_type: str) -> list[object]:
    return list(conn.execute(text(f"SELECT CAST(:a AS {pg_type}[])"),
                             {"a": pg_array(values)}).scalar_one())


def test_awkward_text_and_other_kinds_arrive_unchanged(conn: Connection) -> None:
    assert roundtrip(conn, AWKWARD, "text") == AWKWARD
    assert roundtrip(conn, [None, "a", None], "text") == [None, "a", None]
    assert roundtrip(conn, [-(2**63), 0, 2**63 - 1], "bigint") == [-(2**63), 0, 2**63 - 1]
    assert roundtrip(conn, [True, None, False], "boolean") == [True, None, False]
    blobs = [b"", b"\x00\xff", bytes(range(256))]
    assert [bytes(b) for b in roundtrip(conn, blobs, "bytea")] == blobs  # type: ignore[arg-type]
    assert roundtrip(conn, [], "text") == []


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                               blacklist_characters="\x00")), max_size=20))
def test_any_text_arrives_unchanged(conn: Connection, values: list[str]) -> None:
    assert roundtrip(conn, values, "text") == values


def test_one_of_matches_exactly(conn: Connection) -> None:
    table = Table("probe", MetaData(), Column("id", Integer, primary_key=True),
                  Column("name", String(8)))
    table.create(conn)
    conn.execute(insert(table), [{"id": i, "name": n} for i, n in
                                 enumerate(["abc", "abcdefgh", '"q"', "a,b", "NULL"])])

    def ids(values: list[str]) -> list[int]:
        return sorted(conn.scalars(select(table.c.id).where(one_of(conn, table.c.name,
                                                                   values))))

    assert ids(["abc", '"q"', "a,b"]) == [0, 2, 3]
    assert ids(["NULL"]) == [4]
    # Longer than the column: no row begins-alike matches (a varchar(8)[] cast would cut
    # "abcdefgh-and-more" to "abcdefgh").
    assert ids(["abcdefgh-and-more"]) == []
    assert ids([]) == []


def test_the_engine_plans_with_values_and_keeps_the_operators_options(pg_url: str) -> None:
    engine = make_engine(pg_url + "?options=-c%20statement_timeout%3D1234")
    try:
        with engine.connect() as c:
            assert c.execute(text("SHOW plan_cache_mode")).scalar_one() == "force_custom_plan"
            assert c.execute(text("SHOW statement_timeout")).scalar_one() == "1234ms"
    finally:
        engine.dispose()
