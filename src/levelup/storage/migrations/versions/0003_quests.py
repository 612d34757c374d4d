"""quests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 04:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "quest_progress",
        sa.Column("participant_id", Id, nullable=False),
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("baselines", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_quest_progress_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_quest_progress_program_id_programs")),
        sa.PrimaryKeyConstraint("participant_id", "challenge", "period", name=op.f("pk_quest_progress")),
    )


def downgrade() -> None:
    op.drop_table("quest_progress")
