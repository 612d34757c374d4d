"""indexes for the studio's pages at 100,000 participants: the event explorer, the liability

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 08:40:00

Measured with ``bench/web.py`` (the studio's pages were added to it): at 100,000 participants the event
explorer (newest first, of a type) sorted the program's whole log for its 50 rows (120 ms on SQLite), and
the program's page took 530 ms, mostly the liability: every balance read through an index that held none
of the sums' columns, and the whole ledger scanned for the few redemptions, refunds and expiries. So:
the log by program in order and by program and type in order; the board index of balances holding
``pending`` and ``arrears`` too (a covering index for the sums: a balance's row changes ``available`` with
every posting anyway, so the wider entry costs the writes nothing more); a partial index of the ledger's
monthly kinds (a few entries among every award).
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

MONTHLY = sa.text("kind IN ('redemption', 'refund', 'expiry')")


def upgrade() -> None:
    op.create_index("ix_events_program", "events", ["program_id", "seq"])
    op.create_index("ix_events_type", "events", ["program_id", "type", "seq"])
    op.create_index(
        "ix_ledger_monthly", "ledger_entries", ["program_id", "kind"], postgresql_where=MONTHLY, sqlite_where=MONTHLY
    )
    op.drop_index("ix_positions_board", table_name="positions")
    op.create_index("ix_positions_board", "positions", ["program_id", "currency", "available", "pending", "arrears"])


def downgrade() -> None:
    op.drop_index("ix_positions_board", table_name="positions")
    op.create_index("ix_positions_board", "positions", ["program_id", "currency", "available"])
    op.drop_index("ix_ledger_monthly", table_name="ledger_entries")
    op.drop_index("ix_events_type", table_name="events")
    op.drop_index("ix_events_program", table_name="events")
