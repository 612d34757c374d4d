"""The app factory uvicorn loads in each worker process (``levelup serve --workers N``)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from levelup.api.app import create_app
from levelup.runtime import Runtime


def app() -> FastAPI:
    """One app per worker, on the database in ``LEVELUP_DATABASE_URL`` (schema already migrated).

    Every worker runs the period-closing job (``LEVELUP_CLOSE_EVERY`` seconds, default 60; 0 turns it
    off): closing is idempotent across workers.
    """
    every = float(os.environ.get("LEVELUP_CLOSE_EVERY", "60"))
    return create_app(Runtime.from_url(migrate=False), close_every=every or None)
