"""A stored instant compares as that instant whichever path wrote it: a ledger entry posted in bulk at a
period's first instant is in that period, not the one before (SQLite keeps datetimes as text; the bulk
path once wrote a whole second without its ``.000000``), and migration 0017 rewrites the short forms an
older version stored, putting the ledger's guard back as it was."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DatabaseError

from levelup.events.ingest import ingest
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import Database
from tests.conftest import EXAMPLES, event
from tests.storage.migrating import migrate_to

MONDAY = dt.datetime(2026, 11, 30, 5, tzinfo=dt.UTC)  # Monday 00:00 in New York: a week's first instant


def won_at_the_start(runtime: Runtime) -> int:
    """acme-sales with one deal won at :data:`MONDAY`; the program's id."""
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document((EXAMPLES / "acme-sales.yaml").read_text()), actor="t")
    outcome = ingest(runtime, "acme-sales", [event("d1", data={"amount": 5000}, occurred_at=MONDAY.isoformat())])
    assert outcome[0].status == "accepted"
    return record.id


def earned(connection: Connection, program_id: int, starts: dt.datetime, ends: dt.datetime) -> int:
    c = t.ledger_entries.c
    query = select(func.count()).where(c.program_id == program_id, c.at >= starts, c.at < ends)
    return int(connection.execute(query).scalar_one())


def stored_texts(connection: Connection) -> set[str]:
    return {str(v) for (v,) in connection.exec_driver_sql("SELECT at FROM ledger_entries")}


def test_an_entry_at_a_periods_first_instant_is_in_that_period(runtime: Runtime) -> None:
    program_id = won_at_the_start(runtime)
    week = dt.timedelta(days=7)
    with runtime.db.read() as connection:
        assert earned(connection, program_id, MONDAY, MONDAY + week) > 0
        assert earned(connection, program_id, MONDAY - week, MONDAY) == 0
        if runtime.db.is_sqlite:  # the text a compiled statement binds for that instant
            assert stored_texts(connection) == {"2026-11-30 05:00:00.000000"}


def test_migration_0017_rewrites_the_short_forms_and_keeps_the_guard(empty_db_url: str) -> None:
    database = Database(empty_db_url)

    try:
        triggers = migrate_to(database, "head")
        runtime = Runtime(database)
        program_id = won_at_the_start(runtime)
        migrate_to(database, "0016", down=True)
        if database.is_sqlite:  # what the bulk path of an older version stored
            with database.engine.begin() as connection:
                row = connection.exec_driver_sql("SELECT * FROM ledger_entries ORDER BY id LIMIT 1").mappings().one()
                short = {**row, "id": row["id"] + 1000, "idempotency_key": "old", "at": "2026-11-30 05:00:00"}
                insert = f"INSERT INTO ledger_entries ({', '.join(short)}) VALUES ({', '.join('?' * len(short))})"
                connection.exec_driver_sql(insert, tuple(short.values()))
        assert (
            migrate_to(database, "head") == triggers
        )  # the guards and counters set aside for the rewrite are back, unchanged
        with database.engine.connect() as connection:
            week = dt.timedelta(days=7)
            found = earned(connection, program_id, MONDAY, MONDAY + week)
            assert earned(connection, program_id, MONDAY - week, MONDAY) == 0
            if database.is_sqlite:
                assert stored_texts(connection) == {"2026-11-30 05:00:00.000000"}
                assert found >= 2
        with pytest.raises(DatabaseError), database.engine.begin() as connection:  # still append-only
            connection.exec_driver_sql("UPDATE ledger_entries SET amount = amount + 1")
    finally:
        database.dispose()
