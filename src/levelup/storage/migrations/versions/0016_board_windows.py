"""windowed boards kept in rank_rows: the periods kept of rolling boards and currency boards over a window

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02 21:30:00

A board over a rolling window (``last_N_days``) or a currency board over a window is now served from
``rank_rows`` (source ``w``) like a plain board, for the periods listed in ``board_windows``
(``leaderboards.windows``). Nothing is filled here: until the board-windows job has filled a period, its
board is ranked afresh, with the same answers.
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "board_windows",
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("first_day", sa.String(length=10), nullable=False),
        sa.Column("last_day", sa.String(length=10), nullable=False),
        sa.Column("starts_at", Timestamp, nullable=True),
        sa.Column("ends_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_board_windows_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "key", "period", name=op.f("pk_board_windows")),
    )


def downgrade() -> None:
    op.execute("DELETE FROM rank_rows WHERE source = 'w'")  # the triggers take their counts off
    op.execute("DELETE FROM rank_buckets WHERE source = 'w'")
    op.drop_table("board_windows")
