"""SQLite: every stored instant in one text form, so ranges over them compare as instants

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 05:20:00

SQLite keeps a datetime as text, compared as text. Rows written by a compiled statement hold
``2026-11-30 05:00:00.000000``; rows written in bulk (``storage.sql``) held, for a whole second, the
driver's ``2026-11-30 05:00:00``, which sorts before it: a ledger entry at a period's first instant fell
outside that period (and inside the one before) when a query bound the bound. The bulk writes now use the
dialect's own form; this rewrites the short forms already stored. Only the text changes, not the instant,
so each table's UPDATE triggers (the ledger's append-only guard, the rank counters, which read no
datetime) are set aside for the rewrite and put back as they were. PostgreSQL stores instants as
instants: nothing to do there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

WHOLE_SECOND = 19  # len("2026-11-30 05:00:00")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        columns = [c["name"] for c in inspector.get_columns(table) if isinstance(c["type"], sa.DateTime)]
        if not columns:
            continue
        triggers = bind.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND sql LIKE '%UPDATE%'",
            (table,),
        ).all()
        for name, _ in triggers:
            op.execute(f'DROP TRIGGER "{name}"')
        for column in columns:
            op.execute(
                f"UPDATE {table} SET {column} = {column} || '.000000' "
                f"WHERE typeof({column}) = 'text' AND length({column}) = {WHOLE_SECOND}"
            )
        for _, sql in triggers:
            op.execute(sql)


def downgrade() -> None:
    """Nothing to undo: the long form is what the schema's own statements always wrote."""
