"""Key lookups stay index lookups when the database has no statistics (autovacuum off, no ANALYZE yet),
and ``analyze`` gives it some: after migrations, and when a bulk load asks for it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, select, text

from levelup.ledger import lots
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import sql
from levelup.storage import tables as t
from levelup.storage.db import MIGRATIONS, Database, analyze
from levelup.storage.sql import fetch_by_keys
from tests.conftest import EXAMPLES

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
ROWS = 20_000  # metric rows of one program: enough for a plan that reads them all to show


@pytest.fixture
def loaded(runtime: Runtime) -> Iterator[Runtime]:
    """acme-sales with ROWS participant metric rows (a metric no board reads), and no statistics."""
    with runtime.db.write() as connection:
        programs.apply(connection, load_document((EXAMPLES / "acme-sales.yaml").read_bytes()), actor="test")
        _fill(connection)
    yield runtime


def _fill(connection: Connection) -> None:
    """ROWS metric rows of the program, on no board."""
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
def test_metric_lookup_reads_a_few_pages_a_key_without_statistics(
    loaded: Runtime, n_keys: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookup a batch (or one event: 6-8 keys) makes: each key an index seek, whatever the planner
    guesses without statistics (it used to read every row of the program for 8 keys or more)."""
    keys = [("calls", f"2026-{1 + n % 12:02d}", n // 12) for n in range(0, ROWS, ROWS // n_keys)][:n_keys]
    sent: list[tuple[str, Any]] = []
    fetch = sql._fetch

    def record(connection: Any, statement: str, parameters: Any) -> Any:  # lookups go to the DB-API cursor
        if "JOIN metric_totals t" in statement or "CROSS JOIN LATERAL" in statement:
            sent.append((statement, parameters))
        return fetch(connection, statement, parameters)

    with loaded.db.read() as connection:
        assert _no_statistics(connection)
        program_id = programs.find(connection, "acme-sales").id
        monkeypatch.setattr(sql, "_fetch", record)
        found = _lookup(connection, program_id, keys)
        monkeypatch.undo()
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


def _analyzed(connection: Connection, table: str) -> bool:
    found = connection.execute(
        text("SELECT count(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = :t"), {"t": table}
    ).scalar_one()
    return bool(found)


def test_analyze_gives_statistics_to_big_postgresql_tables_only(loaded: Runtime) -> None:
    """metric_totals (20,000 rows) gets statistics; a table of a few rows does not: never analyzed, the
    planner assumes 10 pages and keeps index plans, which a prepared statement would otherwise lose."""
    with loaded.db.write() as connection:
        assert _no_statistics(connection)
        analyze(connection)
    with loaded.db.read() as connection:
        assert _no_statistics(connection) is loaded.db.is_sqlite
        if not loaded.db.is_sqlite:
            assert _analyzed(connection, "metric_totals")
            never = "SELECT reltuples FROM pg_class WHERE oid = to_regclass('program_versions')"
            assert connection.execute(text(never)).scalar_one() == -1


def test_migrations_analyze_what_has_rows(empty_db_url: str) -> None:
    """An upgrade of a database with rows runs ANALYZE (on PostgreSQL)."""
    database = Database(empty_db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with database.engine.connect() as connection:
            connection.execution_options(levelup_write=True)
            config.attributes["connection"] = connection
            command.upgrade(config, "0005")
            connection.commit()
        with database.write() as connection:
            programs.apply(connection, load_document((EXAMPLES / "acme-sales.yaml").read_bytes()), actor="test")
            _fill(connection)
            assert _no_statistics(connection)
        database.migrate()
        with database.read() as connection:
            assert _no_statistics(connection) is database.is_sqlite
    finally:
        database.dispose()


def test_a_fresh_database_gets_no_statistics(empty_db_url: str) -> None:
    """Its tables are empty: analyzed, PostgreSQL would plan them as empty and keep such plans."""
    database = Database(empty_db_url)
    try:
        database.migrate()
        with database.read() as connection:
            assert _no_statistics(connection)
            if not database.is_sqlite:
                analyzed = (
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.reltuples >= 0"
                )
                assert connection.execute(text(analyzed)).scalar_one() == 0
    finally:
        database.dispose()


def test_the_maturing_job_reads_pending_lots_only(runtime: Runtime) -> None:
    """``lots.mature`` reads through the partial index of pending lots (migration 0008): a few pages for
    the lots due, not every lot the program ever made (it used to read them all through ix_lots_expiry)."""
    with runtime.db.write() as connection:
        record, _ = programs.apply(
            connection, load_document((EXAMPLES / "brewhouse-rewards.yaml").read_bytes()), actor="test"
        )
        connection.execute(
            t.participants.insert().values(program_id=record.id, external_id="cus-1", attributes={}, created_at=NOW)
        )
        participant = connection.execute(select(t.participants.c.id)).scalar_one()
        connection.execute(
            t.lots.insert(),
            [
                {
                    "program_id": record.id,
                    "participant_id": participant,
                    "currency": "beans",
                    "amount": 10,
                    "remaining": 10,
                    "earned_at": NOW,
                    "available_at": NOW + dt.timedelta(days=n % 30),
                    "matured": n >= 50,  # 50 pending lots among ROWS
                    "source_key": f"lot-{n}",
                }
                for n in range(ROWS)
            ],
        )
    with runtime.db.read() as connection:
        assert _no_statistics(connection)
        statement = lots.pending_due(record.id, NOW + dt.timedelta(days=40))
        assert len(connection.execute(statement).all()) == 50
        compiled = statement.compile(connection)
        if connection.dialect.name == "sqlite":
            parameters = tuple(compiled.params[name] for name in compiled.positiontup or ())
            plan = [r[3] for r in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), parameters)]
            assert any("USING INDEX ix_lots_pending" in step for step in plan), plan
            return
        explained = connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(compiled), compiled.params
        )
        plan = explained.scalar_one()
        (top,) = json.loads(plan) if isinstance(plan, str) else plan
        assert "ix_lots_pending" in json.dumps(top["Plan"]), json.dumps(top["Plan"], indent=1)
        assert top["Plan"]["Shared Hit Blocks"] + top["Plan"]["Shared Read Blocks"] <= 10, top["Plan"]
