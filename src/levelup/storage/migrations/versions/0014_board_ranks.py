"""the top of each board at the end of each local day

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 16:20:00

What the TV's "change since yesterday" and the board's movement chart read (``leaderboards.history``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "board_ranks",
        sa.Column("program_id", Id, nullable=False),
        sa.Column("board", sa.String(length=100), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("subject_id", Id, nullable=False),
        sa.Column("period", sa.String(length=40), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_board_ranks_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "board", "day", "subject_id", name=op.f("pk_board_ranks")),
    )


def downgrade() -> None:
    op.drop_table("board_ranks")
