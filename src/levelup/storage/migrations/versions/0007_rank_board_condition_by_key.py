"""rank triggers: the board condition is a set of (source, key, grain), looked up in a jsonb constant

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00

0006's ``levelup_rank_board`` listed every registered board as an OR of conditions. PostgreSQL inlines
the function into the trigger condition again at every statement (it parses the body each time), so
its cost grew with the boards of the whole schema: at 304 boards an upsert of one row cost ~30–70 ms
of server CPU, against ~0.2 ms at 4. The body is now one constant, a jsonb object whose keys are the
registered ``source:key:grain`` (program left out: the set grows with the distinct board keys, not
with the programs), and the condition looks the row's key up in it (a binary search). That is a
superset of the board rows: a row of a program without that board but with a key another program
ranks still calls the trigger function, which checks the program itself (as 0006 says), so results
do not change. SQLite: nothing to do.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _previous() -> ModuleType:
    """Migration 0006, for its grain expression, the function's signature and (downgrade) its definer."""
    path = Path(__file__).with_name("0006_rank_triggers_on_boards.py")
    spec = importlib.util.spec_from_file_location("levelup_migration_0006", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _define() -> str:
    previous = _previous()
    key = f"$2 || ':' || $3 || ':' || {previous.GRAIN}"
    return (
        "CREATE OR REPLACE FUNCTION levelup_rank_boards_define(target text) RETURNS void LANGUAGE plpgsql AS $body$ "
        "DECLARE keys text; wanted text; BEGIN "
        "EXECUTE format('LOCK TABLE %I.rank_boards IN SHARE UPDATE EXCLUSIVE MODE', target); "
        "EXECUTE format('SELECT jsonb_object_agg(source || '':'' || key || '':'' || grain, true)::text "
        "FROM %I.rank_boards', target) INTO keys; "
        "wanted := CASE WHEN keys IS NULL THEN 'SELECT false' "
        f"ELSE format('SELECT %L::jsonb ? (%s)', keys, $k${key}$k$) END; "
        "IF wanted IS DISTINCT FROM (SELECT prosrc FROM pg_proc "
        "WHERE oid = format('%I.levelup_rank_board(bigint, text, text, text)', target)::regprocedure) THEN "
        f"EXECUTE format('CREATE OR REPLACE FUNCTION %I.{previous.SIGNATURE} RETURNS boolean LANGUAGE sql STABLE "
        "AS %L', target, wanted); END IF; END $body$"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute(_define())
        op.execute("SELECT levelup_rank_boards_define(current_schema())")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute(_previous().DEFINE)
        op.execute("SELECT levelup_rank_boards_define(current_schema())")
