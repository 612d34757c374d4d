"""The tables the code declares (``levelup.storage.tables``) are the tables the migrations build.

``db_url`` is a copy of the session's template, which the real Alembic migrations built
(``tests/conftest.py``); Alembic's autogenerate compares it with the metadata, on SQLite
and on PostgreSQL. Autogenerate sees tables, columns (type, nullability, server default),
indexes, unique constraints and foreign keys; it does not see CHECK constraints, triggers,
functions, or SQLite's WITHOUT ROWID, which the storage tests exercise instead.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, String, Table

from levelup.storage.db import Database
from levelup.storage.tables import metadata

UNWIDENED_ON_SQLITE = {("metric_totals", "period"), ("rule_counters", "period")}
# indexes a migration makes only where the database allows it, so the tables cannot declare them:
# migration 0019's trigram index of the participant search (PostgreSQL with pg_trgm)
WHERE_ALLOWED = {"ix_participants_search"}


def compared(name: str | None, kind: str, _parent: object) -> bool:
    """Autogenerate's filter: everything but the indexes in ``WHERE_ALLOWED``."""
    return not (kind == "index" and name in WHERE_ALLOWED)


def only_a_sqlite_string_length(dialect: str, diff: Any) -> bool:
    """On SQLite, the declared length of one of the two ``period`` columns below, and nothing else.

    SQLite does not enforce a VARCHAR's length (any text fits any column), so migration 0002
    widens ``metric_totals.period`` and ``rule_counters.period`` from 16 to 32 on other engines
    only (``_widen_periods``: "SQLite does not enforce lengths"); the SQLite file still says
    VARCHAR(16) where the tables say String(32). The same difference on PostgreSQL is a drift.
    """
    if dialect != "sqlite" or not isinstance(diff, list) or len(diff) != 1:
        return False
    (change,) = diff
    if change[0] != "modify_type" or (change[2], change[3]) not in UNWIDENED_ON_SQLITE:
        return False
    before, after = change[5], change[6]
    return isinstance(before, String) and isinstance(after, String) and before.length != after.length


def compare(db_url: str, declared: MetaData) -> tuple[str, list[Any]]:
    """The dialect, and what autogenerate would change to make the database match ``declared``."""
    database = Database(db_url)
    try:
        with database.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True, "include_name": compared}
            )
            return database.dialect, compare_metadata(context, declared)
    finally:
        database.dispose()


def test_the_migrations_build_what_the_tables_declare(db_url: str) -> None:
    dialect, differences = compare(db_url, metadata)
    drift = [d for d in differences if not only_a_sqlite_string_length(dialect, d)]
    assert drift == [], "levelup.storage.tables and the migrations disagree:\n" + "\n".join(map(repr, drift))


def test_the_drift_check_sees_a_drift(db_url: str) -> None:
    """The comparison is not vacuous: a column the migrations never made is reported."""
    changed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.tables.values():
        table.to_metadata(changed)
    Table("events", changed, Column("not_migrated", Integer), extend_existing=True)
    _, differences = compare(db_url, changed)
    assert [d[:3] for d in differences if isinstance(d, tuple)] == [("add_column", None, "events")]
