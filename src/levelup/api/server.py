"""The app factory uvicorn loads in each worker process (``levelup serve --workers N``)."""

from __future__ import annotations

from fastapi import FastAPI

from levelup.api.app import create_app
from levelup.runtime import Runtime


def app() -> FastAPI:
    """One app per worker, on the database in ``LEVELUP_DATABASE_URL`` (schema already migrated)."""
    return create_app(Runtime.from_url(migrate=False))
