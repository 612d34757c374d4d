"""Alembic environment: runs on the connection Levelup hands it (see levelup.storage.db.migrate)."""

from alembic import context

from levelup.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
