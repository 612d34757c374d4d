"""The studio's participant search on PostgreSQL reads migration 0019's trigram index where the database has
``pg_trgm``: what took ~140 ms at 100,000 participants (a scan) takes ~5 (bench/README). The index only helps
while the search's expression is the index's (``lower(column) LIKE``), so the plan is checked; and a database
that refuses the extension still migrates, searching by a scan."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import event, inspect, text

from levelup import listing
from levelup.storage.db import MIGRATIONS, Database
from tests.conftest import fresh_database
from tests.storage.migrating import migrate_to

INDEX = "ix_participants_search"


def _migration() -> ModuleType:
    path = MIGRATIONS / "versions" / "0019_participant_search.py"
    spec = importlib.util.spec_from_file_location("migration_0019", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Database]:
    """A PostgreSQL database of its own, empty (skips, saying why, without PostgreSQL)."""
    for url in fresh_database("postgres", tmp_path, migrated=False):
        database = Database(url)
        try:
            with database.engine.connect() as connection:
                if not connection.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first():
                    pytest.skip("this PostgreSQL server does not ship pg_trgm")
            yield database
        finally:
            database.dispose()


def _has_index(database: Database) -> bool:
    with database.engine.connect() as connection:
        return INDEX in {i["name"] for i in inspect(connection).get_indexes("participants")}


def test_0019_makes_the_index_and_takes_it_back(postgres: Database) -> None:
    migrate_to(postgres, "0018")
    assert not _has_index(postgres)
    migrate_to(postgres, "head")
    assert _has_index(postgres)
    migrate_to(postgres, "0018", down=True)
    assert not _has_index(postgres)
    migrate_to(postgres, "head")
    assert _has_index(postgres)


def _seed(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.execute(text("INSERT INTO programs (key, version, created_at) VALUES ('p', 1, now())"))
        connection.execute(
            text(
                "INSERT INTO participants (program_id, external_id, name, attributes, created_at) "
                "SELECT 1, 'rep-' || lpad(g::text, 4, '0'), 'Name ' || g, '{}', now() FROM generate_series(1, 300) g"
            )
        )
        connection.execute(text("ANALYZE participants"))


def _search(database: Database, query: str, *, scan: bool) -> tuple[list[str], list[str]]:
    """The ids the studio's search finds, and PostgreSQL's plan of its statement; with ``scan`` false, plans
    that read the table (or walk another index) barred: the table is small, which the planner would scan."""
    sent: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    with database.engine.begin() as connection:
        for setting in ("enable_seqscan", "enable_indexscan"):
            connection.execute(text(f"SET LOCAL {setting} = {'on' if scan else 'off'}"))
        event.listen(connection, "before_cursor_execute", seen)
        try:
            page, _ = listing.participants(connection, 1, search=query, after=None, limit=50)
        finally:
            event.remove(connection, "before_cursor_execute", seen)
        ((statement, parameters),) = sent
        plan = [row[0] for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)]
    return [p["id"] for p in page], plan


def test_the_search_reads_the_index_and_finds_what_the_scan_finds(postgres: Database) -> None:
    migrate_to(postgres, "head")
    _seed(postgres)
    for query in ("REP-012", "name 29", "e 1", "nobody", "_", "%"):
        found, plan = _search(postgres, query, scan=False)
        scanned, _ = _search(postgres, query, scan=True)
        assert found == scanned, query
        assert any(INDEX in line for line in plan), plan
    assert _search(postgres, "rep-012", scan=False)[0] == [f"rep-012{i}" for i in range(10)]
    assert _search(postgres, "%", scan=False)[0] == []  # a wildcard is taken literally


def test_a_refused_extension_leaves_the_migration_going(postgres: Database) -> None:
    create_extension = _migration().create_extension
    with postgres.engine.begin() as connection:
        assert create_extension(connection, "no_such_extension") is False
        connection.execute(text("SET LOCAL ROLE pg_read_all_data"))  # a role that may not create in the database
        assert create_extension(connection, "pg_trgm") is False
        assert connection.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")).scalar() == 0


def test_without_the_extension_the_database_migrates_and_searches(postgres: Database) -> None:
    """The whole chain of migrations as a role that may create tables but not extensions (a managed database's
    lot): no index, no error, and the search answers by a scan."""
    role = f"levelup_plain_{uuid.uuid4().hex[:8]}"
    with postgres.engine.begin() as connection:
        connection.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        connection.execute(text(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"'))
    plain = Database(postgres.engine.url.update_query_dict({"options": f"-c role={role}"}).render_as_string(False))
    try:
        with plain.engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == role
        migrate_to(plain, "head")
        assert not _has_index(plain)
        _seed(plain)
        assert _search(plain, "rep-012", scan=True)[0] == [f"rep-012{i}" for i in range(10)]
    finally:
        plain.dispose()
        with postgres.engine.begin() as connection:
            connection.execute(text(f'DROP OWNED BY "{role}"'))
            connection.execute(text(f'DROP ROLE "{role}"'))
