"""Database engine and the one declarative base shared by every table."""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import BigInteger, Integer, MetaData, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table in the system (one schema, one migration history)."""

    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the HTTP API) run beside the consumer's writes; busy_timeout
    # makes concurrent writers wait instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


# Execution options of a connection that only reads (`connect().execution_options(
# **READS_ONLY)`): on SQLite it begins with a plain, deferred BEGIN, taking no write lock,
# so that a frequent read (a poll) never waits for a writer nor makes one wait.
READS_ONLY: dict[str, Any] = {"reads_only": True}

# A PostgreSQL transaction that sees one ledger from its first statement to its last,
# waits for no writer and holds no lock a writer waits for (`snapshot`).
PG_SNAPSHOT: dict[str, Any] = {"isolation_level": "REPEATABLE READ",
                               "postgresql_readonly": True}


def snapshot(session: Session) -> Connection:
    """The session's connection, begun as one read-only snapshot: call it before the
    session's first statement.

    A read that adds many rows up or checks them against each other (reconcile, the
    float) must see one ledger: in READ COMMITTED each statement could see another, with
    taps committing in between, and the figures would not tie out. On PostgreSQL the
    transaction is REPEATABLE READ and READ ONLY; SQLite in WAL mode gives a deferred
    read transaction one snapshot already, from its first read, and takes no write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.connection(execution_options=PG_SNAPSHOT)
    return session.connection(execution_options=READS_ONLY)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `TRANSIT_DATABASE_URL`; `postgresql://` URLs use psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take the write lock up front
        # so that read-then-write transactions never fail with "database is locked".
        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            reads_only = conn.get_execution_options().get("reads_only")
            conn.exec_driver_sql("BEGIN" if reads_only else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _autocommit_off(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    # psycopg prepares a statement on the server after a few runs, and PostgreSQL may
    # then keep one generic plan for it. A generic plan made while a table was small
    # (a new database, before autovacuum's first ANALYZE) goes on scanning the whole
    # table until the next ANALYZE: 1.3 ms instead of 0.1 for a 13-card look-up in a
    # 3,000-tap table. Planning with the values each time costs tens of microseconds.
    # Set on each new connection rather than as a startup option, so that options the
    # operator gives (in the URL or PGOPTIONS) are kept.
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _custom_plans(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_conn.commit()

    return engine


# What services open their transactions with; the HTTP views and the commands hand it on
# without touching SQLAlchemy themselves.
Sessions: TypeAlias = sessionmaker[Session]


def session_factory(engine: Engine) -> Sessions:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
