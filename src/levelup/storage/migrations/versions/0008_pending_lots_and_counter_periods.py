"""indexes for two reads that grew with history: pending lots, and a participant's counters of a period

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:30:00

``ledger.lots.mature`` looked for the program's pending lots through ``ix_lots_expiry`` and read every
lot the program ever made; a partial index holds only the lots not matured yet, so the job's read is as
small as what it has to do. Scoring loads a participant's rule counters of the periods in play; the
primary key ``(participant_id, rule, period)`` could only narrow by participant, reading their counters
of every period ever; ``(participant_id, period)`` reads the few that count.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_lots_pending",
        "lots",
        ["program_id", "available_at"],
        postgresql_where=sa.text("NOT matured"),
        sqlite_where=sa.text("matured = 0"),  # as SQLAlchemy writes NOT matured for SQLite: the query must match
    )
    op.create_index("ix_rule_counters_period", "rule_counters", ["participant_id", "period"])


def downgrade() -> None:
    op.drop_index("ix_rule_counters_period", table_name="rule_counters")
    op.drop_index("ix_lots_pending", table_name="lots")
