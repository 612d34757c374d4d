"""Moving a test database between migrations, and what its triggers are then (the migration tests')."""

from __future__ import annotations

import re

from alembic import command
from alembic.config import Config

from levelup.storage.db import MIGRATIONS, Database

_TRIGGERS = {
    "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name",
    "postgresql": (
        "SELECT pg_get_triggerdef(g.oid) FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
        "AND NOT g.tgisinternal ORDER BY g.tgname"
    ),
}


def migrate_to(database: Database, revision: str, *, down: bool = False) -> list[str]:
    """Upgrade (or downgrade) ``database`` to ``revision``; its triggers' definitions then, whitespace folded."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.connect() as connection:
        connection.execution_options(levelup_write=True)
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
        connection.commit()
        query = _TRIGGERS[connection.dialect.name]
        return [re.sub(r"\s+", " ", row[0]) for row in connection.exec_driver_sql(query)]
