"""game mechanics

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 02:29:58.310193
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("participant", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_feed_program_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed")),
    )
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.create_index("ix_feed_program", ["program_id", "id"], unique=False)

    op.create_table(
        "badge_grants",
        sa.Column("participant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("badge", sa.String(length=64), nullable=False),
        sa.Column("grade", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("awarded_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_badge_grants_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_badge_grants_program_id_programs")),
        sa.PrimaryKeyConstraint("participant_id", "badge", "grade", "period", name=op.f("pk_badge_grants")),
    )
    op.create_table(
        "challenge_completions",
        sa.Column("participant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("completed_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reward", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_challenge_completions_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_challenge_completions_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("participant_id", "challenge", "period", name=op.f("pk_challenge_completions")),
    )
    op.create_table(
        "streak_runs",
        sa.Column("participant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("streak", sa.String(length=64), nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("periods", sa.JSON(), nullable=False),
        sa.Column("best", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_streak_runs_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_streak_runs_program_id_programs")),
        sa.PrimaryKeyConstraint("participant_id", "streak", name=op.f("pk_streak_runs")),
    )
    op.create_table(
        "closed_periods",
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("challenge", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("closed_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_closed_periods_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "challenge", "period", name=op.f("pk_closed_periods")),
    )
    op.create_table(
        "kudos",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("giver_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("receiver_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_kudos_positive")),
        sa.CheckConstraint("giver_id <> receiver_id", name=op.f("ck_kudos_not_self")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_kudos_program_id_programs")),
        sa.ForeignKeyConstraint(["giver_id"], ["participants.id"], name=op.f("fk_kudos_giver_id_participants")),
        sa.ForeignKeyConstraint(["receiver_id"], ["participants.id"], name=op.f("fk_kudos_receiver_id_participants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kudos")),
        sa.UniqueConstraint("program_id", "idempotency_key", name=op.f("uq_kudos_program_id")),
    )
    op.create_index("ix_kudos_giver", "kudos", ["giver_id", "period"])
    _widen_periods(32)


def _widen_periods(length: int) -> None:
    """Room for range periods (``20261001-20261031``). SQLite does not enforce lengths."""
    if op.get_bind().dialect.name != "sqlite":
        for table in ("metric_totals", "rule_counters"):
            op.alter_column(table, "period", type_=sa.String(length=length), existing_nullable=False)


def downgrade() -> None:
    _widen_periods(16)
    op.drop_index("ix_kudos_giver", table_name="kudos")
    op.drop_table("kudos")
    op.drop_table("closed_periods")
    op.drop_table("streak_runs")
    op.drop_table("challenge_completions")
    op.drop_table("badge_grants")
    with op.batch_alter_table("feed", schema=None) as batch_op:
        batch_op.drop_index("ix_feed_program")

    op.drop_table("feed")
