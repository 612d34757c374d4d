"""API keys: an optional expiry and the time a key was last used

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:10:00

``expires_at`` is set at creation (null: never); ``last_used_at`` is written at most once a minute per key
and process, in a short transaction of its own, never in the request's (see keys/service.py).
"""

import sqlalchemy as sa
from alembic import op

import levelup.storage.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Timestamp = levelup.storage.tables.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("last_used_at", Timestamp, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
        batch.drop_column("expires_at")
