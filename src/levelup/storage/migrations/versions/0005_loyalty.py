"""loyalty: lots, redemptions, reward stock counts, tier state; positions.pending

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 04:45:53.076191
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reward_counts",
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reward", sa.String(length=64), nullable=False),
        sa.Column("redeemed", sa.Integer(), nullable=False),
        sa.CheckConstraint("redeemed >= 0", name=op.f("ck_reward_counts_redeemed")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_reward_counts_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "reward", name=op.f("pk_reward_counts")),
    )
    op.create_table(
        "redemptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("participant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reward", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=64), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("created_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status in ('pending', 'fulfilled', 'cancelled')", name=op.f("ck_redemptions_status")),
        sa.CheckConstraint("cost > 0", name=op.f("ck_redemptions_cost")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_redemptions_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_redemptions_program_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("program_id", "idempotency_key", name=op.f("uq_redemptions_program_id")),
    )
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.create_index("ix_redemptions_participant", ["participant_id", "reward", "period"], unique=False)
        batch_op.create_index("ix_redemptions_status", ["program_id", "status", "id"], unique=False)

    op.create_table(
        "tier_state",
        sa.Column("participant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("earned", sa.String(length=100), nullable=True),
        sa.Column("since", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reviewed", sa.String(length=32), nullable=True),
        sa.Column("override", sa.String(length=100), nullable=True),
        sa.Column("override_until", levelup.storage.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("override_note", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_tier_state_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_tier_state_program_id_programs")),
        sa.PrimaryKeyConstraint("participant_id", name=op.f("pk_tier_state")),
    )
    with op.batch_alter_table("tier_state", schema=None) as batch_op:
        batch_op.create_index("ix_tier_state_program", ["program_id"], unique=False)

    op.create_table(
        "lots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("participant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("earned_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("available_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("matured", sa.Boolean(), nullable=False),
        sa.Column("event_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("source_key", sa.String(length=300), nullable=False),
        sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name=op.f("ck_lots_remaining")),
        sa.ForeignKeyConstraint(["event_seq"], ["events.seq"], name=op.f("fk_lots_event_seq_events")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_lots_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_lots_program_id_programs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
    )
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.create_index("ix_lots_event", ["event_seq"], unique=False)
        batch_op.create_index("ix_lots_expiry", ["program_id", "expires_at"], unique=False)
        batch_op.create_index("ix_lots_participant", ["participant_id", "currency", "remaining"], unique=False)

    op.create_table(
        "redemption_draws",
        sa.Column("redemption_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["lot_id"], ["lots.id"], name=op.f("fk_redemption_draws_lot_id_lots")),
        sa.ForeignKeyConstraint(
            ["redemption_id"], ["redemptions.id"], name=op.f("fk_redemption_draws_redemption_id_redemptions")
        ),
        sa.PrimaryKeyConstraint("redemption_id", "lot_id", name=op.f("pk_redemption_draws")),
    )
    op.create_table(
        "referrals",
        sa.Column("referred_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("referrer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("referral_event", sa.String(length=200), nullable=False),
        sa.Column("qualifying_event", sa.String(length=200), nullable=True),
        sa.Column("pay_after", levelup.storage.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", levelup.storage.tables.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("referred_id <> referrer_id", name=op.f("ck_referrals_not_self")),
        sa.CheckConstraint("status in ('waiting', 'qualified', 'paid', 'void')", name=op.f("ck_referrals_status")),
        sa.ForeignKeyConstraint(
            ["referred_id"], ["participants.id"], name=op.f("fk_referrals_referred_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["participants.id"], name=op.f("fk_referrals_referrer_id_participants")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_referrals_program_id_programs")),
        sa.PrimaryKeyConstraint("referred_id", name=op.f("pk_referrals")),
    )
    op.create_index("ix_referrals_due", "referrals", ["program_id", "status", "pay_after"])
    op.create_table(
        "refunds",
        sa.Column("program_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reversed_event", sa.String(length=200), nullable=False),
        sa.Column("refunded", sa.Integer(), nullable=False),
        sa.CheckConstraint("refunded >= 0 AND refunded <= 1000000", name=op.f("ck_refunds_refunded")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_refunds_program_id_programs")),
        sa.PrimaryKeyConstraint("program_id", "reversed_event", name=op.f("pk_refunds")),
    )
    for column in (
        sa.Column("tier", sa.String(length=100), nullable=True),
        sa.Column("suspended", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("share", sa.Integer(), nullable=True),
    ):
        op.add_column("events", column)
    # add the column in place (a batch rebuild on SQLite would drop the triggers other migrations put on positions)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE positions ADD COLUMN pending BIGINT NOT NULL DEFAULT 0 "
            "CONSTRAINT ck_positions_pending CHECK (pending >= 0 AND pending <= available)"
        )
    else:
        op.execute(
            "ALTER TABLE positions ADD COLUMN pending BIGINT NOT NULL DEFAULT 0, "
            "ADD CONSTRAINT ck_positions_pending CHECK (pending >= 0 AND pending <= available)"
        )


def downgrade() -> None:
    op.execute("ALTER TABLE positions DROP COLUMN pending")
    op.drop_column("events", "share")
    op.drop_column("events", "suspended")
    op.drop_table("refunds")
    op.drop_index("ix_referrals_due", table_name="referrals")
    op.drop_table("referrals")
    op.drop_column("events", "tier")
    op.drop_table("redemption_draws")
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index("ix_lots_participant")
        batch_op.drop_index("ix_lots_expiry")
        batch_op.drop_index("ix_lots_event")

    op.drop_table("lots")
    with op.batch_alter_table("tier_state", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_state_program")

    op.drop_table("tier_state")
    with op.batch_alter_table("redemptions", schema=None) as batch_op:
        batch_op.drop_index("ix_redemptions_status")
        batch_op.drop_index("ix_redemptions_participant")

    op.drop_table("redemptions")
    op.drop_table("reward_counts")
