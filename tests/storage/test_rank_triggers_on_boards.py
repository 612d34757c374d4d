"""Migration 0006: the rank triggers run for rows of a board only, and the rank tables still hold exactly
the board rows, counted (whatever writes them: ingestion, upserts in bulk or one by one, balances,
a board added by a new version, replay's rebuild)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text

from levelup.events.ingest import ingest
from levelup.leaderboards import ranks
from levelup.metrics.periods import grain_of
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.db import Database
from levelup.storage.sql import SET_UPDATE_ROWS, add_checked, upsert_add
from tests.conftest import EXAMPLES
from tests.storage.migrating import migrate_to
from tests.storage.test_leaderboard_scale import assert_in_step, board_rows_expected

ACME = (EXAMPLES / "acme-sales.yaml").read_text()
# A version with one board more: deals won by participant and week.
MORE_BOARDS = ACME.replace(
    "leaderboards:\n", "leaderboards:\n  - {key: deals-week, metric: deals_won, window: week}\n", 1
)
METRIC_KEY = ["program_id", "metric", "period", "subject_kind", "subject_id"]


def deals(prefix: str, n: int, participants: int = 20) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{prefix}{i}",
            "type": "deal.won" if i % 3 else "activity.logged",
            "participant": f"rep-{i % participants}",
            "occurred_at": f"2026-11-{1 + i % 27:02d}T15:00:00Z",
            "data": {"amount": 500 + 37 * i} if i % 3 else {"kind": "call", "duration_s": 90},
        }
        for i in range(n)
    ]


def apply(runtime: Runtime, document: str) -> programs.ProgramRecord:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(document), actor="test")
    return record


def metric_rows(program_id: int, metric: str, subjects: range, delta: float) -> list[dict[str, Any]]:
    periods = ("2026-11", "2026-11-05", "2026-W45", "2026-Q4", "2026", "all")
    return [
        {"program_id": program_id, "metric": metric, "period": p, "subject_kind": "p", "subject_id": s, "value": delta}
        for s in subjects
        for p in periods
    ]


def test_rank_tables_hold_the_board_rows_whatever_writes_them(runtime: Runtime) -> None:
    record = apply(runtime, ACME)
    ingest(runtime, "acme-sales", deals("big-", 60))  # one batch: statements of many rows
    assert SET_UPDATE_ROWS <= 20  # so balances below are also updated in one statement
    for i in range(3):  # single events: statements of a few rows
        ingest(runtime, "acme-sales", deals(f"one-{i}-", 1))
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
        ids = [
            r.id
            for r in connection.execute(select(t.participants.c.id).where(t.participants.c.program_id == record.id))
        ]
    with runtime.db.write() as connection:
        for metric in ("revenue", "calls"):  # on boards (month, quarter for teams), and on none
            upsert_add(
                connection,
                t.metric_totals,
                metric_rows(record.id, metric, range(1, 40), 2.5),
                keys=METRIC_KEY,
                add=["value"],
            )
            upsert_add(
                connection,
                t.metric_totals,
                metric_rows(record.id, metric, range(1, 3), -1.0),
                keys=METRIC_KEY,
                add=["value"],
            )
        for currency, many in (("xp", True), ("coins", True), ("xp", False), ("coins", False)):
            chosen = ids if many else ids[:2]
            add_checked(
                connection,
                t.positions,
                [
                    {
                        "participant_id": p,
                        "currency": currency,
                        "program_id": record.id,
                        "available": 3,
                        "arrears": 0,
                        "earned": 3,
                    }
                    for p in chosen
                ],
                keys=["participant_id", "currency"],
                add=["available", "arrears", "earned"],
            )
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)
    # a new version with one more board: its rows already stored are copied, new writes follow
    record = apply(runtime, MORE_BOARDS)
    ingest(runtime, "acme-sales", deals("after-", 40))
    ingest(runtime, "acme-sales", deals("after-one-", 1))
    with runtime.db.read() as connection:
        assert ranks.registered(connection, record.id, "p", "deals_won", "week")
        assert_in_step(connection, record.id)
        week = [r for r in board_rows_expected(connection, record.id) if r[1] == "deals_won"]
        assert week, "the new board has rows"
    with runtime.db.write() as connection:
        ranks.rebuild(connection, record.id)
    with runtime.db.read() as connection:
        assert_in_step(connection, record.id)


def test_postgresql_rows_of_no_board_call_no_trigger_function(runtime: Runtime) -> None:
    """The condition filters before the call: per transaction, PostgreSQL counts calls of the trigger
    function (PL/pgSQL, with ``track_functions``)."""
    if runtime.db.is_sqlite:
        pytest.skip("SQLite runs a trigger's WHEN inside the trigger (0006 narrows its update triggers by column)")
    record = apply(runtime, ACME)
    with runtime.db.write() as connection:
        if not connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one():
            pytest.skip("track_functions can only be set by a superuser")
        connection.exec_driver_sql("SET LOCAL track_functions = 'pl'")
        calls = text(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
            "WHERE schemaname = current_schema() AND funcname = 'metric_totals_rank'"
        )
        for rows in (
            metric_rows(record.id, "calls", range(1, 30), 1.0),
            metric_rows(record.id, "calls", range(1, 3), 1.0),
        ):
            upsert_add(connection, t.metric_totals, rows, keys=METRIC_KEY, add=["value"])
        assert connection.execute(calls).scalar_one() == 0
        upsert_add(
            connection,
            t.metric_totals,
            metric_rows(record.id, "revenue", range(1, 30), 1.0),
            keys=METRIC_KEY,
            add=["value"],
        )
        assert connection.execute(calls).scalar_one() == 29  # one board row a subject: the month
        assert_in_step(connection, record.id)


def test_postgresql_board_condition_follows_the_registered_boards(runtime: Runtime) -> None:
    """levelup_rank_board is true for the (source, key, calendar grain) of every registered board, of any
    program in the schema (migration 0007: a superset the trigger functions narrow), false otherwise."""
    if runtime.db.is_sqlite:
        pytest.skip("PostgreSQL only")
    candidates = [
        (source, key, period)
        for source in ("p", "t", "e")
        for key in ("revenue", "deals_won", "calls", "xp", "coins")
        for period in ("2026-11-05", "2026-W45", "2026-11", "2026-Q4", "2026", "all", "2026-10-01..2026-10-31")
    ]
    check = text("SELECT levelup_rank_board(:p, :s, :k, :per)")
    for document in (ACME, MORE_BOARDS):
        record = apply(runtime, document)
        with runtime.db.read() as connection:
            for source, key, period in candidates:
                try:
                    grain = grain_of(period)
                except ValueError:
                    grain = None
                expected = grain is not None and ranks.registered(connection, record.id, source, key, grain)
                for program_id in (record.id, record.id + 1):  # another program: the same answer
                    found = connection.execute(check, {"p": program_id, "s": source, "k": key, "per": period})
                    assert found.scalar_one() is expected, (source, key, period)


def test_postgresql_rows_of_another_program_keep_their_own_boards(runtime: Runtime) -> None:
    """Two programs, one with the weekly deals board: the other's weekly deals rows pass the condition
    (same key) and the trigger function leaves them out; both programs' rank tables stay exact."""
    ranked = apply(runtime, MORE_BOARDS)
    other = apply(runtime, ACME.replace("program: acme-sales", "program: acme-other", 1))
    ingest(runtime, "acme-sales", deals("r-", 30))
    ingest(runtime, "acme-other", deals("o-", 30))
    with runtime.db.read() as connection:
        for record in (ranked, other):
            assert_in_step(connection, record.id)
        assert not ranks.registered(connection, other.id, "p", "deals_won", "week")
        assert [r for r in board_rows_expected(connection, ranked.id) if r[1] == "deals_won"]


def test_the_migration_goes_down_and_up(empty_db_url: str) -> None:
    database = Database(empty_db_url)

    try:
        before = migrate_to(database, "0005")
        after = migrate_to(database, "head")
        assert after != before
        narrowed = [d for d in after if "levelup_rank_board(" in d or "AFTER UPDATE OF" in d]
        assert len(narrowed) == 4  # update and re-key (SQLite), insert and update (PostgreSQL), of 2 tables
        assert migrate_to(database, "0005", down=True) == before
        assert migrate_to(database, "head") == after
    finally:
        database.dispose()


def test_many_position_updates_in_one_statement_still_refuse_a_negative_balance(runtime: Runtime) -> None:
    """add_checked's one-statement UPDATE (PostgreSQL, many rows) is judged by the same CHECKs."""
    record = apply(runtime, ACME)
    ingest(runtime, "acme-sales", deals("fund-", 60))
    with runtime.db.read() as connection:
        ids = [
            r.id
            for r in connection.execute(select(t.participants.c.id).where(t.participants.c.program_id == record.id))
        ]
    assert len(ids) >= SET_UPDATE_ROWS
    rows = [
        {"participant_id": p, "currency": "coins", "program_id": record.id, "available": -1, "arrears": 0, "earned": 0}
        for p in ids
    ]
    rows[-1]["available"] = -(10**9)  # one row goes negative: the statement, and the transaction, fail
    with pytest.raises(Exception, match=r"(?i)check|constraint"), runtime.db.write() as connection:
        add_checked(
            connection,
            t.positions,
            rows,
            keys=["participant_id", "currency"],
            add=["available", "arrears", "earned"],
        )
