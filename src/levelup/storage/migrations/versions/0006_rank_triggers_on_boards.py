"""rank triggers: only rows of a board call the trigger function

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 11:00:00

Migration 0004 keeps ``rank_rows``/``rank_buckets`` with row triggers on ``metric_totals`` and
``positions`` that fire for every row: a metric is kept for six periods, for participants and
teams, and a board reads one of them (``acme-sales``: about 360 of 4,300 metric rows a batch). A row
of no board paid a trigger call that found nothing to do: on PostgreSQL the PL/pgSQL call and a
seek, ~20 µs of server CPU a row, as much as the upsert itself.

PostgreSQL: the triggers get a ``WHEN`` condition, ``levelup_rank_board(program, source, key,
period)``, a SQL function whose body lists the registered boards as constants. The planner inlines
it into the condition, so a row of no board costs a few comparisons and no call. The body is
rewritten whenever ``rank_boards`` changes (a statement trigger, in the same transaction as the
registration), so it always names every registered board; the trigger functions still check for
themselves, so the condition only has to let through at least the board rows. Results do not
change.

SQLite runs the ``WHEN`` of a trigger inside the trigger's program, so a condition saves nothing
there; what it can skip is whole triggers by column: the update triggers now fire only when the
statement sets the column they copy (``UPDATE OF value``/``earned``), the re-key triggers only when
it sets a key column, so an upsert of a value runs one trigger, not two.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The calendar grain of a period key (0004's grain_sql, frozen, over parameter $4; '' for none, not NULL).
GRAIN = (
    "(CASE WHEN $4 = 'all' THEN 'all' WHEN length($4) = 4 THEN 'year' WHEN length($4) = 10 THEN 'day' "
    "WHEN substr($4, 6, 1) = 'W' THEN 'week' WHEN substr($4, 6, 1) = 'Q' THEN 'quarter' "
    "WHEN length($4) = 7 THEN 'month' ELSE '' END)"
)
SIGNATURE = "levelup_rank_board(program_id bigint, source text, key text, period text)"

# table: (source, key, period) of a row as rank_rows sees it (NEW/OLD.{...}), the copied column, the key columns
SOURCES = {
    "metric_totals": (("{r}.subject_kind", "{r}.metric", "{r}.period"), "value", ("subject_kind", "metric", "period")),
    "positions": (("'e'", "{r}.currency", "'all'"), "earned", ("currency", "participant_id")),
}
METRIC_KEYS = ("program_id", "subject_kind", "metric", "period", "subject_id")


# Writes levelup_rank_board's body from rank_boards (0007 replaces it; its downgrade restores this one).
DEFINE = (
    "CREATE OR REPLACE FUNCTION levelup_rank_boards_define(target text) RETURNS void LANGUAGE plpgsql AS $body$ "
    f"DECLARE wanted text := ''; grain text := $g${GRAIN}$g$; r record; BEGIN "
    "EXECUTE format('LOCK TABLE %I.rank_boards IN SHARE UPDATE EXCLUSIVE MODE', target); "
    "FOR r IN EXECUTE format('SELECT program_id, source, key, string_agg(quote_literal(grain), %L ORDER BY grain) "
    "AS grains FROM %I.rank_boards GROUP BY 1, 2, 3 ORDER BY 1, 2, 3', ', ', target) LOOP "
    "wanted := wanted || CASE WHEN wanted = '' THEN '' ELSE ' OR ' END "
    "|| format('($1 = %s AND $2 = %L AND $3 = %L AND %s IN (%s))', "
    "r.program_id, r.source, r.key, grain, r.grains); "
    "END LOOP; "
    "wanted := 'SELECT ' || CASE WHEN wanted = '' THEN 'false' ELSE wanted END; "
    "IF wanted IS DISTINCT FROM (SELECT prosrc FROM pg_proc "
    "WHERE oid = format('%I.levelup_rank_board(bigint, text, text, text)', target)::regprocedure) THEN "
    f"EXECUTE format('CREATE OR REPLACE FUNCTION %I.{SIGNATURE} RETURNS boolean LANGUAGE sql STABLE AS %L', "
    "target, wanted); END IF; END $body$"
)


def _on_board(table: str, r: str) -> str:
    source, key, period = (e.format(r=r) for e in SOURCES[table][0])
    return f"levelup_rank_board({r}.program_id, {source}, {key}, {period})"


def _rekeyed(table: str) -> str:
    keys = ("program_id", *SOURCES[table][2]) if table == "positions" else METRIC_KEYS
    return "(" + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in keys) + ")"


def _postgres_triggers(table: str, restricted: bool) -> None:
    column = SOURCES[table][1]
    changed = f"OLD.{column} IS DISTINCT FROM NEW.{column}"
    if restricted:
        insert_when = f" WHEN ({_on_board(table, 'NEW')})"
        update_when = (
            f"({changed} AND {_on_board(table, 'NEW')}) "
            f"OR ({_rekeyed(table)} AND ({_on_board(table, 'OLD')} OR {_on_board(table, 'NEW')}))"
        )
    else:  # as 0004 made them
        insert_when, update_when = "", f"{changed} OR {_rekeyed(table)}"
    op.execute(f"DROP TRIGGER {table}_rank_insert ON {table}")
    op.execute(f"DROP TRIGGER {table}_rank_update ON {table}")
    op.execute(
        f"CREATE TRIGGER {table}_rank_insert AFTER INSERT ON {table} FOR EACH ROW{insert_when} "
        f"EXECUTE FUNCTION {table}_rank()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_rank_update AFTER UPDATE ON {table} FOR EACH ROW WHEN ({update_when}) "
        f"EXECUTE FUNCTION {table}_rank()"
    )


def _postgres_upgrade() -> None:
    op.execute(f"CREATE FUNCTION {SIGNATURE} RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT false $$")
    # One condition per (program, source, key): its grains in a list. Registrations are serialized by the
    # lock (self-conflicting, and not with writers' row locks); taking it also brings this session's
    # catalog cache up to date, so the function is replaced from its newest version.
    op.execute(DEFINE)
    op.execute(
        "CREATE FUNCTION levelup_rank_boards_changed() RETURNS trigger LANGUAGE plpgsql AS $body$ BEGIN "
        "PERFORM levelup_rank_boards_define(TG_TABLE_SCHEMA); RETURN NULL; END $body$"
    )
    op.execute(
        "CREATE TRIGGER rank_boards_changed AFTER INSERT OR DELETE OR UPDATE OF program_id, source, key, grain "
        "ON rank_boards "
        "FOR EACH STATEMENT EXECUTE FUNCTION levelup_rank_boards_changed()"
    )
    op.execute("SELECT levelup_rank_boards_define(current_schema())")
    for table in SOURCES:
        _postgres_triggers(table, restricted=True)


def _postgres_downgrade() -> None:
    for table in SOURCES:
        _postgres_triggers(table, restricted=False)
    op.execute("DROP TRIGGER rank_boards_changed ON rank_boards")
    op.execute("DROP FUNCTION levelup_rank_boards_changed()")
    op.execute("DROP FUNCTION levelup_rank_boards_define(text)")
    op.execute("DROP FUNCTION levelup_rank_board(bigint, text, text, text)")


def _sqlite_headers(restricted: bool) -> None:
    """Swap ``AFTER UPDATE ON t`` for ``AFTER UPDATE OF <columns> ON t`` (or back) in the update and
    re-key triggers, keeping their bodies as 0004 made them."""
    bind = op.get_bind()
    for table, (_, column, keys) in SOURCES.items():
        key_columns = ", ".join(("program_id", *keys) if table == "positions" else METRIC_KEYS)
        for name, columns in ((f"{table}_rank_update", column), (f"{table}_rank_rekey", key_columns)):
            (sql,) = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).one()
            plain, narrowed = f"AFTER UPDATE ON {table} ", f"AFTER UPDATE OF {columns} ON {table} "
            old, new = (plain, narrowed) if restricted else (narrowed, plain)
            assert old in sql, (name, sql)
            op.execute(f"DROP TRIGGER {name}")
            op.execute(sql.replace(old, new, 1))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_headers(restricted=True)
    else:
        _postgres_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_headers(restricted=False)
    else:
        _postgres_downgrade()
