"""What a running Levelup holds: the database and the compiled-program cache.

Made once by whoever starts the process (server, CLI, test) and passed down,
never imported as a global.
"""

from __future__ import annotations

from levelup.programs.service import ProgramCache
from levelup.storage.db import Database


class Runtime:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.programs = ProgramCache()

    @classmethod
    def from_url(cls, url: str | None = None, *, migrate: bool = True) -> Runtime:
        db = Database(url)
        if migrate:
            db.migrate()
        return cls(db)
