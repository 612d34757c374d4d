"""the studio's insight page reads analyses computed on an admin's request

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 14:30:00

Each analysis of the insight page is an aggregate over a window's events: seconds at 100,000 participants
(``bench/web.py``), against the 100 ms a page may take. So the page only reads: an admin's "Compute" (a POST,
like the editor's simulation) runs the analysis and keeps its answer here, by program, view and the
window's parameters, with when and by whom; the page shows it beside that time. A cache of derived
figures: an erasure drops the program's (they may name the participant), exports leave them out.
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "insight_snapshots",
        sa.Column("program_id", Id, nullable=False),
        sa.Column("view", sa.String(length=16), nullable=False),
        sa.Column("params", sa.String(length=120), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("computed_at", Timestamp, nullable=False),
        sa.Column("computed_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_insight_snapshots_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "view", "params", name=op.f("pk_insight_snapshots")),
    )


def downgrade() -> None:
    op.drop_table("insight_snapshots")
