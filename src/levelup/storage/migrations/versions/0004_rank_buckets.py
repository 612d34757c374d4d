"""rank buckets: leaderboard ranks at 1,000,000 participants without walking an index

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:00:00

Counting the rows above a value over a B-tree walks the index up to the rank (~40-65 ms at
rank 999,000 of 1,000,000). Three tables, all projections kept by triggers:

- ``rank_boards``: the plain boards of every program version (a calendar window and no
  normalization; or a participants' currency board over all time), registered when the
  version is stored, and filled from the rows already there;
- ``rank_rows``: the rows of those boards only (a copy of ``metric_totals.value`` or of
  ``positions.earned``), indexed in board order: value descending, then internal id;
- ``rank_buckets``: per board and logarithmic value bucket, how many rows fall in it. A
  rank is the sum of the higher buckets plus a short index range inside one bucket.

Only board rows pay for the ordered index and the counts (a metric is kept for six periods,
for participants and for teams; a board reads one of those); other rows pay one trigger call
that finds nothing to do. Every write path (ingestion, replay's delete and re-insert,
closing, adjustments, raw SQL on the source tables) is covered without application code.
On PostgreSQL the count rows are shared by concurrent writers: see ``_postgres`` for the
advisory lock that keeps them (and team rows) from deadlocking.

The bucket function is frozen here (a migration is history); ``levelup.leaderboards.ranks``
holds the same definition, and a test compares the counts kept here with its recount.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# 256 buckets per factor e of value: a bucket is 0.39% wide and every integer below 256 has its own.
# Positive values map to 1,000,000 + floor(256 ln v) (about 904,700 to 1,090,900 over all doubles),
# zero to 0, negative values to the mirror image below zero: buckets are in the order of values.
# 256 is a power of two, so the product is exact and floor() sees ln() as it is.
PER_E = 256
OFFSET = 1_000_000


def lock_sql(program_id: str) -> str:
    """PostgreSQL's transaction lock on a program's rank counts. Advisory locks are per database, so
    the key names the schema too: programs of the same id in other schemas (tests) do not meet."""
    return (
        f"pg_advisory_xact_lock(hashtext('levelup.rank:' || current_schema()), (({program_id}) % 2147483648)::integer)"
    )


GRAINS = ("day", "week", "month", "quarter", "year", "all")
RANK_KEY = ("program_id", "source", "key", "period", "subject_id")


def bucket_sql(v: str) -> str:
    """The bucket of value expression ``v``, in SQL both dialects run alike."""
    return (
        f"(CASE WHEN {v} > 0 THEN {OFFSET} + CAST(floor(ln({v}) * {PER_E}) AS INTEGER) "
        f"WHEN {v} < 0 THEN -{OFFSET} - CAST(floor(ln(-({v})) * {PER_E}) AS INTEGER) ELSE 0 END)"
    )


def grain_sql(p: str) -> str:
    """The calendar grain of period key ``p`` (``2026-11-20``, ``2026-W47``, ``2026-11``, ``2026-Q4``,
    ``2026``, ``all``); NULL for anything else (a competition's date range)."""
    return (
        f"(CASE WHEN {p} = 'all' THEN 'all' WHEN length({p}) = 4 THEN 'year' WHEN length({p}) = 10 THEN 'day' "
        f"WHEN substr({p}, 6, 1) = 'W' THEN 'week' WHEN substr({p}, 6, 1) = 'Q' THEN 'quarter' "
        f"WHEN length({p}) = 7 THEN 'month' END)"
    )


# A source row as a board row: expressions over its alias {r} for the rank_rows columns after program_id
# (source, key, period, subject_id, value), and the source's own key columns after program_id.
SOURCES = {
    "metric_totals": (
        ("{r}.subject_kind", "{r}.metric", "{r}.period", "{r}.subject_id", "{r}.value"),
        ("subject_kind", "metric", "period", "subject_id"),
    ),
    "positions": (("'e'", "{r}.currency", "'all'", "{r}.participant_id", "{r}.earned"), ("currency", "participant_id")),
}


def _as_rank(table: str, r: str) -> list[str]:
    """The rank_rows columns of a ``table`` row named ``r`` (NEW, OLD or an alias)."""
    return [f"{r}.program_id", *(e.format(r=r) for e in SOURCES[table][0])]


def _registered(table: str, r: str) -> str:
    """True when the ``table`` row ``r`` belongs to a registered board."""
    _, source, key, period, _, _ = _as_rank(table, r)
    return (
        f"EXISTS (SELECT 1 FROM rank_boards b WHERE b.program_id = {r}.program_id AND b.source = {source} "
        f"AND b.key = {key} AND b.grain = {grain_sql(period)})"
    )


def _keys_differ(columns: tuple[str, ...], distinct: str) -> str:
    return "(" + " OR ".join(f"OLD.{c} {distinct} NEW.{c}" for c in ("program_id", *columns)) + ")"


def _rank_row_of(table: str, r: str) -> str:
    """WHERE condition picking the rank_rows row of the ``table`` row ``r``."""
    return " AND ".join(f"rank_rows.{c} = {v}" for c, v in zip(RANK_KEY, _as_rank(table, r)[:5], strict=True))


def _insert_rank_row(table: str, r: str) -> str:
    return f"INSERT INTO rank_rows ({', '.join(RANK_KEY)}, value) VALUES ({', '.join(_as_rank(table, r))})"


def _count(rows: list[tuple[str, int]]) -> str:
    """Add ``n`` to the bucket of each rank_rows row ``r`` (NEW/OLD), in one statement."""
    values = ", ".join(
        f"({r}.program_id, {r}.source, {r}.key, {r}.period, {bucket_sql(f'{r}.value')}, {n})" for r, n in rows
    )
    return (
        f"INSERT INTO rank_buckets (program_id, source, key, period, bucket, n) VALUES {values} "
        "ON CONFLICT (program_id, source, key, period, bucket) DO UPDATE SET n = rank_buckets.n + excluded.n"
    )


def _count_source(table: str, rows: list[tuple[str, int]]) -> str:
    """Add ``n`` to the bucket of each ``table`` row ``r`` (NEW/OLD), in one statement."""
    values = []
    for r, n in rows:
        program_id, source, key, period, _, value = _as_rank(table, r)
        values.append(f"({program_id}, {source}, {key}, {period}, {bucket_sql(value)}, {n})")
    return (
        f"INSERT INTO rank_buckets (program_id, source, key, period, bucket, n) VALUES {', '.join(values)} "
        "ON CONFLICT (program_id, source, key, period, bucket) DO UPDATE SET n = rank_buckets.n + excluded.n"
    )


def boards_sql(elements: str, field: str, where: str = "true") -> str:
    """SELECT (source, key, grain) of the plain boards among ``elements`` (a FROM list yielding a
    document's leaderboards as ``e``); ``field`` reads member ``{k}`` of ``e`` as text."""
    metric, currency = field.format(k="metric"), field.format(k="currency")
    window = f"coalesce({field.format(k='window')}, 'all')"
    by = f"coalesce({field.format(k='by')}, 'participant')"
    grains = ", ".join(f"'{g}'" for g in GRAINS)
    return (
        f"SELECT DISTINCT CASE WHEN {metric} IS NULL THEN 'e' WHEN {by} = 'team' THEN 't' ELSE 'p' END AS source, "
        f"coalesce({metric}, {currency}) AS key, {window} AS grain FROM {elements} "
        f"WHERE {where} AND {field.format(k='normalize')} IS NULL AND {window} IN ({grains}) "
        f"AND ({metric} IS NOT NULL OR ({currency} IS NOT NULL AND {window} = 'all' AND {by} = 'participant'))"
    )


def _register(program: str, elements: str, field: str, where: str = "true") -> str:
    return (
        "INSERT INTO rank_boards (program_id, source, key, grain, filled) "
        f"SELECT {program}, x.source, x.key, x.grain, 0 FROM ({boards_sql(elements, field, where)}) AS x "
        "WHERE true ON CONFLICT (program_id, source, key, grain) DO NOTHING"
    )


def fill_sql(program: str) -> list[str]:
    """Copy the rows of the program's boards registered but not filled yet into rank_rows (their
    triggers count them), then mark those boards filled."""
    statements = []
    for table in SOURCES:
        columns = _as_rank(table, "s")
        _, source, key, period, _, _ = columns
        statements.append(
            f"INSERT INTO rank_rows ({', '.join(RANK_KEY)}, value) SELECT {', '.join(columns)} FROM {table} s "
            f"JOIN rank_boards b ON b.program_id = s.program_id AND b.source = {source} AND b.key = {key} "
            f"AND b.grain = {grain_sql(period)} WHERE b.program_id = {program} AND b.filled = 0"
        )
    statements.append(f"UPDATE rank_boards SET filled = 1 WHERE program_id = {program} AND filled = 0")
    return statements


SQLITE_JSON = ("json_each({d}, '$.leaderboards') AS e", "json_extract(e.value, '$.{k}')")
POSTGRES_JSON = ("json_array_elements(({d})::json -> 'leaderboards') AS e", "(e ->> '{k}')")


def upgrade() -> None:
    op.create_table(
        "rank_boards",
        sa.Column("program_id", Id, nullable=False),
        sa.Column("source", sa.String(length=1), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("grain", sa.String(length=8), nullable=False),
        sa.Column("filled", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_rank_boards_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "source", "key", "grain", name=op.f("pk_rank_boards")),
    )
    op.create_table(
        "rank_rows",
        sa.Column("program_id", Id, nullable=False),
        sa.Column("source", sa.String(length=1), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("subject_id", Id, nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(*RANK_KEY, name=op.f("pk_rank_rows")),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_rank_rows_order",
        "rank_rows",
        ["program_id", "source", "key", "period", sa.text("value DESC"), "subject_id"],
    )
    op.create_table(
        "rank_buckets",
        sa.Column("program_id", Id, nullable=False),
        sa.Column("source", sa.String(length=1), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "source", "key", "period", "bucket", name=op.f("pk_rank_buckets")),
        sqlite_with_rowid=False,
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite()
    else:
        op.execute("ALTER TABLE rank_buckets SET (fillfactor = 50)")  # counts change in place: room for HOT updates
        _postgres()
    # programs stored before this migration: register the boards of all their versions, and fill them
    elements, field = SQLITE_JSON if sqlite else POSTGRES_JSON
    for (program_id,) in op.get_bind().exec_driver_sql("SELECT id FROM programs").all():
        versions = f"program_versions v, {elements.format(d='v.document')}"
        op.execute(_register(str(program_id), versions, field, where=f"v.program_id = {program_id}"))
        for statement in fill_sql(str(program_id)):
            op.execute(statement)


def _sqlite() -> None:
    """One writer at a time (BEGIN IMMEDIATE): plain row triggers, no locking."""
    for table, ((*_, value), keys) in SOURCES.items():
        value = value.format(r="NEW")
        column = value.removeprefix("NEW.")
        op.execute(
            f"CREATE TRIGGER {table}_rank_insert AFTER INSERT ON {table} WHEN {_registered(table, 'NEW')} "
            f"BEGIN {_insert_rank_row(table, 'NEW')}; END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_rank_update AFTER UPDATE ON {table} "
            f"WHEN OLD.{column} IS NOT NEW.{column} AND NOT {_keys_differ(keys, 'IS NOT')} "
            f"BEGIN UPDATE rank_rows SET value = {value} WHERE {_rank_row_of(table, 'NEW')}; END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_rank_rekey AFTER UPDATE ON {table} WHEN {_keys_differ(keys, 'IS NOT')} "
            f"BEGIN DELETE FROM rank_rows WHERE {_rank_row_of(table, 'OLD')}; "
            f"{_insert_rank_row(table, 'NEW').replace(' VALUES (', ' SELECT ', 1)[:-1]} "
            f"WHERE {_registered(table, 'NEW')}; END"
        )
        op.execute(
            f"CREATE TRIGGER {table}_rank_delete AFTER DELETE ON {table} "
            f"BEGIN DELETE FROM rank_rows WHERE {_rank_row_of(table, 'OLD')}; END"
        )
    moved = f"{bucket_sql('OLD.value')} <> {bucket_sql('NEW.value')} OR {_keys_differ(RANK_KEY[1:], 'IS NOT')}"
    op.execute(f"CREATE TRIGGER rank_rows_insert AFTER INSERT ON rank_rows BEGIN {_count([('NEW', 1)])}; END")
    op.execute(
        f"CREATE TRIGGER rank_rows_update AFTER UPDATE ON rank_rows WHEN {moved} "
        f"BEGIN {_count([('OLD', -1), ('NEW', 1)])}; END"
    )
    op.execute(f"CREATE TRIGGER rank_rows_delete AFTER DELETE ON rank_rows BEGIN {_count([('OLD', -1)])}; END")
    elements, field = SQLITE_JSON
    register = _register("NEW.program_id", elements.format(d="NEW.document"), field)
    op.execute(
        "CREATE TRIGGER program_versions_rank_boards AFTER INSERT ON program_versions BEGIN "
        + "; ".join([register, *fill_sql("NEW.program_id")])
        + "; END"
    )


def _postgres() -> None:
    """Row triggers for single-row writes (what executemany sends), which also move the counts of an
    updated row themselves (a trigger call costs more than its work here); statement triggers over the
    rows for bulk inserts and deletes of rank_rows (a board filled, replay's delete of a program).

    Locking: count rows are shared by every writer of a program, so whoever changes them first takes
    the program's advisory lock (``pg_advisory_xact_lock``, held to the end of the transaction). A
    transaction must not wait for that lock while holding a row another writer may want: team metric
    rows are shared by the team's members (participants are locked one by one, teams are not), and a
    DELETE (replay) takes a whole program; so the lock is also taken *before* those rows are written.
    Writers of one program then meet on one lock in one order instead of deadlocking.
    """
    lock = f"PERFORM {lock_sql('{r}.program_id')};"

    def function(name: str, body: str) -> None:
        # Generic plans: every statement here is a seek by key, and re-planning each call (which the plan
        # cache may choose while the tables have no statistics) costs more than the statement itself.
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan "
            f"AS $$ BEGIN {body} END $$"
        )

    function(
        "levelup_rank_lock",
        f"IF TG_OP = 'DELETE' THEN {lock.format(r='OLD')} RETURN OLD; END IF; {lock.format(r='NEW')} RETURN NEW;",
    )
    for table, ((*_, value), keys) in SOURCES.items():
        value = value.format(r="NEW")
        column = value.removeprefix("NEW.")
        rekeyed = _keys_differ(keys, "IS DISTINCT FROM")
        old_value = value.replace("NEW.", "OLD.")
        function(
            f"{table}_rank",
            # A value changed: a board's row has its copy with the old value (kept so here), so one exact
            # seek updates it (either index of rank_rows serves it, whatever plan is cached) or finds none
            # (not a board's row): no lookup of the board. The counts move here too (one trigger level
            # less than a trigger on rank_rows), under the program's lock.
            f"IF TG_OP = 'UPDATE' AND NOT {rekeyed} THEN UPDATE rank_rows SET value = {value} "
            f"WHERE {_rank_row_of(table, 'NEW')} AND rank_rows.value = {old_value}; "
            f"IF FOUND AND {bucket_sql(old_value)} <> {bucket_sql(value)} THEN {lock.format(r='NEW')} "
            f"{_count_source(table, [('OLD', -1), ('NEW', 1)])}; END IF; RETURN NULL; END IF; "
            f"IF TG_OP = 'UPDATE' THEN {lock.format(r='OLD')} "
            f"DELETE FROM rank_rows WHERE {_rank_row_of(table, 'OLD')}; END IF; "
            f"IF {_registered(table, 'NEW')} THEN {lock.format(r='NEW')} {_insert_rank_row(table, 'NEW')}; END IF; "
            "RETURN NULL;",
        )
        function(
            f"{table}_rank_deleted",
            f"DELETE FROM rank_rows USING gone g WHERE {_rank_row_of(table, 'g')}; RETURN NULL;",
        )
        if table == "metric_totals":
            op.execute(
                "CREATE TRIGGER metric_totals_rank_lock BEFORE INSERT OR UPDATE ON metric_totals "
                "FOR EACH ROW WHEN (NEW.subject_kind = 't') EXECUTE FUNCTION levelup_rank_lock()"
            )
        op.execute(
            f"CREATE TRIGGER {table}_rank_lock_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION levelup_rank_lock()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_rank_insert AFTER INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_rank()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_rank_update AFTER UPDATE ON {table} FOR EACH ROW "
            f"WHEN (OLD.{column} IS DISTINCT FROM NEW.{column} OR {rekeyed}) EXECUTE FUNCTION {table}_rank()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_rank_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS gone "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_rank_deleted()"
        )
    # rank_rows → counts, for inserts and deletes (updates count in {table}_rank above). They come in
    # bulk too (a board added to a stored program, replay's delete): statement triggers count their
    # rows with one grouped statement, where a row trigger would update each bucket row many times in
    # one transaction (a row version each time).
    function(
        "rank_rows_counted",
        f"PERFORM {lock_sql('p')} FROM (SELECT DISTINCT program_id AS p FROM added ORDER BY 1) AS x; "
        "INSERT INTO rank_buckets (program_id, source, key, period, bucket, n) "
        f"SELECT program_id, source, key, period, {bucket_sql('value')}, count(*) FROM added GROUP BY 1, 2, 3, 4, 5 "
        "ON CONFLICT (program_id, source, key, period, bucket) DO UPDATE SET n = rank_buckets.n + excluded.n; "
        "RETURN NULL;",
    )
    function(
        "rank_rows_uncounted",
        "UPDATE rank_buckets c SET n = c.n - d.n FROM (SELECT program_id, source, key, period, "
        f"{bucket_sql('value')} AS bucket, count(*) AS n FROM gone GROUP BY 1, 2, 3, 4, 5) AS d "
        "WHERE c.program_id = d.program_id AND c.source = d.source AND c.key = d.key "
        "AND c.period = d.period AND c.bucket = d.bucket; RETURN NULL;",
    )
    op.execute(
        "CREATE TRIGGER rank_rows_insert AFTER INSERT ON rank_rows REFERENCING NEW TABLE AS added "
        "FOR EACH STATEMENT EXECUTE FUNCTION rank_rows_counted()"
    )
    op.execute(
        "CREATE TRIGGER rank_rows_delete AFTER DELETE ON rank_rows REFERENCING OLD TABLE AS gone "
        "FOR EACH STATEMENT EXECUTE FUNCTION rank_rows_uncounted()"
    )
    elements, field = POSTGRES_JSON
    register = _register("NEW.program_id", elements.format(d="NEW.document"), field)
    function(
        "program_versions_rank_boards",
        f"{lock.format(r='NEW')} " + "; ".join([register, *fill_sql("NEW.program_id")]) + "; RETURN NULL;",
    )
    op.execute(
        "CREATE TRIGGER program_versions_rank_boards AFTER INSERT ON program_versions "
        "FOR EACH ROW EXECUTE FUNCTION program_versions_rank_boards()"
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name != "sqlite"
    triggers = [
        *(f"{table}_rank_{what}" for table in SOURCES for what in ("insert", "update", "delete")),
        *(f"rank_rows_{what}" for what in ("insert", "delete")),
        "program_versions_rank_boards",
    ]
    if postgres:
        triggers += ["metric_totals_rank_lock", "metric_totals_rank_lock_delete", "positions_rank_lock_delete"]
    else:
        triggers += [f"{table}_rank_rekey" for table in SOURCES] + ["rank_rows_update"]
    for trigger in triggers:
        table = next(
            t for t in ("metric_totals", "positions", "rank_rows", "program_versions") if trigger.startswith(t)
        )
        op.execute(f"DROP TRIGGER {trigger}" + (f" ON {table}" if postgres else ""))
    if postgres:
        functions = [
            "levelup_rank_lock",
            "rank_rows_counted",
            "rank_rows_uncounted",
            "program_versions_rank_boards",
        ]
        for name in functions + [f"{table}_rank{suffix}" for table in SOURCES for suffix in ("", "_deleted")]:
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_table("rank_buckets")
    op.drop_index("ix_rank_rows_order", table_name="rank_rows")
    op.drop_table("rank_rows")
    op.drop_table("rank_boards")
