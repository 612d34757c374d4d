"""Key lookups stay index lookups when the database has no statistics (autovacuum off, no ANALYZE yet),
and ``analyze`` gives it some: after migrations, and when a bulk load asks for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import Database, analyze
from levelup.storage.sql import fetch_by_keys
from tests.conftest import EXAMPLES

ROWS = 20_000  # metric rows of one program: enough for a plan that reads them all to show


@pytest.fixture
def loaded(runtime: Runtime) -> Iterator[Runtime]:
    """acme-sales with ROWS participant metric rows (a metric no board reads), and no statistics."""
    with runtime.db.write() as connection:
        programs.apply(connection, load_document((EXAMPLES / "acme-sales.yaml").read_bytes()), actor="test")
        connection.execute(
            text(
                "INSERT INTO metric_totals (program_id, metric, period, subject_kind, subject_id, value) "
                "SELECT p.id, 'calls', '2026-' || CASE WHEN n % 12 < 9 THEN '0' ELSE '' END "
                "|| CAST(1 + n % 12 AS TEXT), 'p', n / 12, 1.0 "
                "FROM programs p, (WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < :last) "
                "SELECT n FROM s) AS g"
            ),
            {"last": ROWS - 1},
        )
    yield runtime


def _no_statistics(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        return not connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first()
    found = connection.execute(
        text("SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'metric_totals'")
    ).scalar_one()
    return found == 0


def _lookup(connection: Connection, program_id: int, keys: list[tuple[str, str, int]]) -> list[tuple[Any, ...]]:
    return fetch_by_keys(
        connection,
        t.metric_totals,
        fixed={"program_id": program_id, "subject_kind": "p"},
        keys=["metric", "period", "subject_id"],
        values=keys,
        columns=["subject_id", "metric", "period", "value"],
    )


@pytest.mark.parametrize("n_keys", [1, 8, 40])
def test_metric_lookup_reads_a_few_pages_a_key_without_statistics(loaded: Runtime, n_keys: int) -> None:
    """The lookup a batch (or one event: 6-8 keys) makes: each key an index seek, whatever the planner
    guesses without statistics (it used to read every row of the program for 8 keys or more)."""
    keys = [("calls", f"2026-{1 + n % 12:02d}", n // 12) for n in range(0, ROWS, ROWS // n_keys)][:n_keys]
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.startswith("WITH w"):
            sent.append((statement, parameters))

    with loaded.db.read() as connection:
        assert _no_statistics(connection)
        program_id = programs.find(connection, "acme-sales").id
        event.listen(loaded.db.engine, "before_cursor_execute", record)
        try:
            found = _lookup(connection, program_id, keys)
        finally:
            event.remove(loaded.db.engine, "before_cursor_execute", record)
        assert sorted((m, p, s) for s, m, p, _ in found) == sorted(keys)
        (statement, parameters), *_ = sent
        if connection.dialect.name == "sqlite":
            plan = [r[3] for r in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            assert any(step.startswith("SEARCH t USING PRIMARY KEY") for step in plan), plan
            assert not any(step.startswith("SCAN t") for step in plan), plan
            return
        explained = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
        plan = explained.scalar_one()
        (top,) = json.loads(plan) if isinstance(plan, str) else plan
        pages = top["Plan"]["Shared Hit Blocks"] + top["Plan"]["Shared Read Blocks"]
        assert pages <= 6 * n_keys, json.dumps(top["Plan"], indent=1)


def test_analyze_gives_postgresql_statistics_and_leaves_sqlite_alone(loaded: Runtime) -> None:
    with loaded.db.write() as connection:
        assert _no_statistics(connection)
        analyze(connection)
    with loaded.db.read() as connection:
        assert _no_statistics(connection) is loaded.db.is_sqlite


def test_migrating_analyzes_postgresql(empty_db_url: str) -> None:
    database = Database(empty_db_url)
    try:
        database.migrate()
        with database.read() as connection:
            if database.is_sqlite:
                assert _no_statistics(connection)  # sqlite_stat1 would go stale: none is written
            else:
                analyzed = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                        "AND last_analyze IS NOT NULL AND relname IN ('events', 'metric_totals', 'positions')"
                    )
                ).scalar_one()
                assert analyzed == 3
        database.migrate()  # nothing to do: no second ANALYZE needed, and none fails
    finally:
        database.dispose()
