"""PostgreSQL: a trigram index for the studio's participant search, where the database allows it

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 11:10:00

The studio's search (``listing.participants``: the id or the name contains the text, any case) scanned the
program's participants: about 100 ms at 100,000 on PostgreSQL (``bench/web.py``). A GIN index of
``pg_trgm`` trigrams on ``lower(external_id)`` and ``lower(name)`` answers ``lower(...) LIKE '%text%'``
from the index for a text of three characters or more (shorter ones fall back to the scan, which a common
one or two letters stop early anyway: the page is the first 50 by id).

``pg_trgm`` ships with PostgreSQL and is a trusted extension (13 and later): any role that may create in the
database may install it. A managed database can still refuse it, so it is tried in a savepoint; without it
the index is not made and the search scans as before — slower, never wrong. The index is not declared in
``levelup.storage.tables`` (it exists on some databases only); ``tests/storage/test_schema_drift.py`` allows
for it by name. SQLite has no such index: its LIKE over 100,000 rows is ~50 ms.
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

INDEX = "ix_participants_search"


def create_extension(connection: sa.Connection, name: str) -> bool:
    """Whether extension ``name`` is installed afterwards, installing it if the database lets us; a refusal
    rolls back to a savepoint, so the migration's transaction goes on."""
    if not connection.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = :n"), {"n": name}).first():
        return False
    try:
        with connection.begin_nested():
            connection.execute(sa.text(f'CREATE EXTENSION IF NOT EXISTS "{name}"'))
    except sa.exc.DBAPIError:
        return False
    return True


def upgrade() -> None:
    connection = op.get_bind()
    if connection.dialect.name != "postgresql" or not create_extension(connection, "pg_trgm"):
        return
    op.execute(
        f"CREATE INDEX {INDEX} ON participants USING gin (lower(external_id) gin_trgm_ops, lower(name) gin_trgm_ops)"
    )


def downgrade() -> None:
    # the extension stays: something else in the database may use it
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
