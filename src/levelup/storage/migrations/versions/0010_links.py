"""web pages: signed links, participants' cases, admin studio sessions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:05:00

A link stores the hash of its secret only; a case is a participant's "something is missing" and the
admin's answer (a reply, and the adjustment's ledger entry when there is one); an admin session the hash of
its cookie's secret.
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "links",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("participant_id", Id, nullable=True),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.CheckConstraint(
            "(kind = 'tv' AND participant_id IS NULL) OR (kind = 'participant' AND participant_id IS NOT NULL)",
            name=op.f("ck_links_subject"),
        ),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_links_program_id_programs")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_links_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links")),
    )
    op.create_index("ix_links_program", "links", ["program_id", "created_at"])
    op.create_table(
        "cases",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("program_id", Id, nullable=False),
        sa.Column("participant_id", Id, nullable=False),
        sa.Column("entry_id", Id, nullable=True),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reply", sa.String(length=1000), nullable=True),
        sa.Column("adjustment_id", Id, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("answered_at", Timestamp, nullable=True),
        sa.CheckConstraint("status in ('open', 'resolved', 'declined')", name=op.f("ck_cases_status")),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], name=op.f("fk_cases_program_id_programs")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_cases_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["entry_id"], ["ledger_entries.id"], name=op.f("fk_cases_entry_id_ledger_entries")),
        sa.ForeignKeyConstraint(
            ["adjustment_id"], ["ledger_entries.id"], name=op.f("fk_cases_adjustment_id_ledger_entries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
    )
    op.create_index("ix_cases_program", "cases", ["program_id", "status", "id"])
    op.create_index("ix_cases_participant", "cases", ["participant_id", "id"])
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("programs", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
    )


def downgrade() -> None:
    op.drop_table("admin_sessions")
    op.drop_table("cases")
    op.drop_table("links")
