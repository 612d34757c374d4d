"""The studio's lists and the liability are read by index (migration 0018): the event explorer's page, newest
first and of a type, without sorting the program's log; the liability's sums from a covering index and its
months from a partial index of the few entries that leave the books. What bench/web.py measured at 100,000
participants (120 ms and 530 ms before) rests on these plans, so they are checked where SQLite can say."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, inspect

from levelup import listing
from levelup.events.ingest import ingest
from levelup.ledger.liability import liability
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage.db import Database
from tests.conftest import EXAMPLES
from tests.conftest import event as an_event
from tests.storage.migrating import migrate_to

NEW = {"events": {"ix_events_program", "ix_events_type"}, "ledger_entries": {"ix_ledger_monthly"}}


def _indexes(database: Database) -> dict[str, dict[str, list[str]]]:
    with database.engine.connect() as connection:
        found = inspect(connection)
        return {
            table: {i["name"]: [str(c) for c in i["column_names"]] for i in found.get_indexes(table) if i["name"]}
            for table in ("events", "ledger_entries", "positions")
        }


def test_migration_0018_adds_the_indexes_and_takes_them_back(empty_db_url: str) -> None:
    database = Database(empty_db_url)
    try:
        migrate_to(database, "head")
        at_head = _indexes(database)
        for table, names in NEW.items():
            assert names <= set(at_head[table])
        board = ["program_id", "currency", "available", "pending", "arrears"]
        assert at_head["positions"]["ix_positions_board"] == board
        migrate_to(database, "0017", down=True)
        before = _indexes(database)
        for table, names in NEW.items():
            assert not names & set(before[table])
        assert before["positions"]["ix_positions_board"] == board[:3]
        migrate_to(database, "head")
        assert _indexes(database) == at_head
    finally:
        database.dispose()


@contextmanager
def _statements(runtime: Runtime) -> Iterator[list[tuple[str, Any]]]:
    """The statements sent to the database inside the block, with their parameters."""
    sent: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(runtime.db.engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", seen)


def _plans(runtime: Runtime, read: Callable[[Any], object]) -> list[str]:
    """SQLite's plan of every statement ``read`` sends, one line per step."""
    with _statements(runtime) as sent, runtime.db.read() as connection:
        read(connection)
    with runtime.db.read() as connection:
        return [
            " / ".join(str(step[-1]) for step in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in sent
            if sql.lstrip().upper().startswith("SELECT")
        ]


def test_the_explorer_and_the_liability_are_read_by_index(runtime: Runtime) -> None:
    if not runtime.db.is_sqlite:
        pytest.skip("the plans are SQLite's; PostgreSQL's depend on its statistics")
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document((EXAMPLES / "acme-sales.yaml").read_text()), actor="t")
        compiled = runtime.programs.compiled(connection, record)
    deals = [an_event(f"d{i}", participant=f"rep-{i % 7}", data={"amount": 900}) for i in range(30)]
    ingest(runtime, "acme-sales", deals)

    def explorer(connection: Any) -> None:
        listing.events(connection, record.id, participant=None, kind=None, before=None, limit=5)
        listing.events(connection, record.id, participant=None, kind="deal.won", before=None, limit=5)
        listing.events(connection, record.id, participant="rep-3", kind=None, before=None, limit=5)

    for plan in _plans(runtime, explorer):
        assert "TEMP B-TREE" not in plan, plan  # never the whole log sorted for a page
    assert any("ix_events_program" in p for p in _plans(runtime, explorer))
    assert any("ix_events_type" in p for p in _plans(runtime, explorer))
    assert any("ix_events_participant" in p for p in _plans(runtime, explorer))
    plans = _plans(runtime, lambda connection: liability(connection, record, compiled))
    assert any("COVERING INDEX ix_positions_board" in p for p in plans), plans
    assert any("ix_ledger_monthly" in p for p in plans), plans


def test_the_explorer_of_an_unknown_participant_is_empty(runtime: Runtime) -> None:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document((EXAMPLES / "acme-sales.yaml").read_text()), actor="t")
    ingest(runtime, "acme-sales", [an_event("d1", data={"amount": 900})])
    with runtime.db.read() as connection:
        found = listing.events(connection, record.id, participant="rep-17", kind=None, before=None, limit=5)
        assert [e["id"] for e in found[0]] == ["d1"]
        nobody = listing.events(connection, record.id, participant="nobody", kind=None, before=None, limit=5)
        assert nobody == ([], None)
