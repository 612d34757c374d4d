"""webhooks out: subscriptions, the transactional outbox, the delivery log

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 13:40:00

A notification row is written in the transaction of the effect that caused it (``webhook_outbox``);
workers claim due rows through the partial index of pending ones, so the index holds only what is
left to send, not the history of what was delivered.
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("deleted_at", Timestamp, nullable=True),
        sa.CheckConstraint("format in ('json', 'slack', 'teams')", name=op.f("ck_webhook_subscriptions_format")),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_webhook_subscriptions_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_index("ix_webhook_subscriptions_program", "webhook_subscriptions", ["program_id"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("subscription_id", Id, nullable=False),
        sa.Column("notification", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("dedup", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", Timestamp, nullable=False),
        sa.Column("claim", sa.String(length=32), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("done_at", Timestamp, nullable=True),
        sa.CheckConstraint(
            "status in ('pending', 'delivered', 'failed', 'cancelled')", name=op.f("ck_webhook_outbox_status")
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_webhook_outbox_program_id_programs")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["webhook_subscriptions.id"],
            name=op.f("fk_webhook_outbox_subscription_id_webhook_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_outbox")),
        sa.UniqueConstraint("subscription_id", "dedup", name=op.f("uq_webhook_outbox_subscription_id")),
    )
    op.create_index(
        "ix_webhook_outbox_due", "webhook_outbox", ["next_at"], postgresql_where=PENDING, sqlite_where=PENDING
    )
    op.create_index("ix_webhook_outbox_subscription", "webhook_outbox", ["subscription_id", "id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("outbox_id", Id, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["webhook_outbox.id"], name=op.f("fk_webhook_attempts_outbox_id_webhook_outbox")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_outbox", "webhook_attempts", ["outbox_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_outbox")
    op.drop_table("webhook_subscriptions")
