"""Connections, transactions and migrations, for SQLite (embedded default) and PostgreSQL.

Whoever starts the work (an HTTP request, a CLI command, a job) owns the
transaction: services take a connection and never commit. Writes on SQLite take
the write lock up front (``BEGIN IMMEDIATE``) so two writers queue instead of
failing on a lock upgrade; on PostgreSQL they lock the participants they touch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.pool import NullPool

DEFAULT_URL = "sqlite:///levelup.db"
MIGRATIONS = Path(__file__).with_name("migrations")


def database_url() -> str:
    return os.environ.get("LEVELUP_DATABASE_URL") or DEFAULT_URL


def _normalize(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


JSON_OPTIONS: dict[str, Any] = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}


class _FSum:
    """SQLite's ``fsum(x)``: the correctly rounded sum of the non-null values (``math.fsum``), the same in
    any order; NULL when there are none, as SUM gives."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return math.fsum(self.values) if self.values else None


def _sqlite_engine(url: str, **options: Any) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **JSON_OPTIONS, **options)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        dbapi_connection.create_aggregate("fsum", 1, _FSum)  # storage.sql.exact_sum

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("levelup_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def pool_size() -> int:
    """Connections per process (``LEVELUP_DB_POOL``, default 8): a request waits for a free one rather
    than failing, and ``workers × pool`` must stay under PostgreSQL's ``max_connections``."""
    value = os.environ.get("LEVELUP_DB_POOL", "8")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"LEVELUP_DB_POOL must be a positive whole number, not {value!r}")
    return int(value)


AFTER_COMMIT = "levelup.after_commit"


def after_commit(connection: Connection, name: str, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the transaction of ``connection`` (from :meth:`Database.write`) has committed;
    never if it rolls back. One callback per ``name`` a transaction."""
    connection.info.setdefault(AFTER_COMMIT, {})[name] = callback


class Database:
    """One database: its engine, transactions and schema."""

    def __init__(self, url: str | None = None, *, pool: bool = True, keep_copies: bool = True) -> None:
        """``keep_copies``: False for a process that only reads (a simulation worker): no feed, no Redis."""
        self.url = _normalize(url or database_url())
        options: dict[str, Any] = {} if pool else {"poolclass": NullPool}
        if make_url(self.url).get_backend_name() == "sqlite":
            self.engine = _sqlite_engine(self.url, **options)
        else:
            if pool:
                options = {"pool_size": pool_size(), "max_overflow": 0, "pool_timeout": 30, "pool_pre_ping": True}
            self.engine = create_engine(self.url, **JSON_OPTIONS, **options)
        self.dialect = self.engine.dialect.name
        if keep_copies:
            self._keep_copies(os.environ.get("LEVELUP_REDIS_URL") or None)

    def _keep_copies(self, redis_url: str | None) -> None:
        """Wake live-feed streams on commits (across processes through Redis) and, with Redis, keep its
        copy of the leaderboards in step: every process writing to the database must, a CLI's too."""
        from levelup.feed.fanout import FanOut  # they build on this module
        from levelup.leaderboards.redis_board import Boards

        FanOut.attach(self, redis_url)
        if redis_url:
            Boards.connect(redis_url, self)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed when the block ends without an exception; then what was
        registered with :func:`after_commit` runs."""
        with self.engine.connect() as connection:
            connection.execution_options(levelup_write=True)
            try:
                with connection.begin():
                    yield connection
            finally:  # connection.info outlives the checkout: nothing may carry over to the next one
                done: dict[str, Callable[[], None]] = connection.info.pop(AFTER_COMMIT, {})
            for callback in done.values():
                callback()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent snapshot. SQLite's read transaction is one; on PostgreSQL
        it is REPEATABLE READ (READ COMMITTED would give each statement its own: a page that checks which
        rows a board keeps, then reads them, could find them dropped in between; a simulation could count a
        reversal whose deal it kept)."""
        with self.engine.connect() as connection:
            if not self.is_sqlite:
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent), then refresh the planner's statistics
        if a migration ran (:func:`analyze`)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.connect() as connection:
            connection.execution_options(levelup_write=True)
            config.attributes["connection"] = connection
            before = MigrationContext.configure(connection).get_current_heads()
            command.upgrade(config, "head")
            if MigrationContext.configure(connection).get_current_heads() != before:
                analyze(connection)
            connection.commit()

    def dispose(self) -> None:
        self.engine.dispose()


def analyze(connection: Connection) -> None:
    """Refresh the PostgreSQL planner's statistics of the current schema's tables of 10 pages (80 kB) or
    more; call it after a bulk load (an import, the demo). It also runs after migrations. Autovacuum may
    be off, or not have caught up.

    Smaller tables are left alone, on purpose: a table never analyzed is assumed to be at least 10
    pages, which keeps its lookups on indexes; analyzed while tiny, the planner would pick
    sequential scans, and a prepared statement keeps its generic plan as the table grows (only
    ANALYZE or DDL re-plans it, and autovacuum is what would normally run ANALYZE). Levelup's
    hot-path lookups do not need statistics (see :func:`levelup.storage.sql.fetch_by_keys`);
    fresh ones help the rest (reports, ad-hoc SQL). Runs inside the caller's transaction and
    blocks no reader or writer. On SQLite it does nothing: its planner uses the indexes without
    statistics, and ``sqlite_stat1`` is never refreshed by itself, so figures written once would
    mislead it as the tables grow.
    """
    if connection.dialect.name == "sqlite":
        return
    tables = connection.execute(
        text(
            "SELECT quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r' "
            "AND pg_relation_size(c.oid) >= 10 * current_setting('block_size')::bigint ORDER BY 1"
        )
    ).scalars()
    names = ", ".join(tables)
    if names:
        connection.exec_driver_sql(f"ANALYZE {names}")
