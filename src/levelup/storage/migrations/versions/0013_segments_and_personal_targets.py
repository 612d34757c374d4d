"""segment assignments with their effective time, and frozen personal targets of target: auto goals

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 16:35:00

Both are inputs the engine is handed, stored so replay hands it the same: a participant's segment in force
at an event's time (``segment_assignments``) and a goal's personal target for a period, frozen when first
needed (``personal_targets``).
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segment_assignments",
        sa.Column("participant_id", Id, nullable=False),
        sa.Column("effective_at", Timestamp, nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_segment_assignments_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_segment_assignments_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("participant_id", "effective_at", name=op.f("pk_segment_assignments")),
    )
    op.create_index("ix_segment_assignments_program", "segment_assignments", ["program_id", "effective_at"])
    op.create_table(
        "personal_targets",
        sa.Column("participant_id", Id, nullable=False),
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_personal_targets_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_personal_targets_program_id_programs")),
        sa.PrimaryKeyConstraint("participant_id", "challenge", "period", name=op.f("pk_personal_targets")),
    )


def downgrade() -> None:
    op.drop_table("personal_targets")
    op.drop_index("ix_segment_assignments_program", "segment_assignments")
    op.drop_table("segment_assignments")
