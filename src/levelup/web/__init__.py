"""The web pages (docs/web.md): server-rendered HTML under ``/p/{program}/…``, opened by signed links,
with every asset served from this package (no CDN, no external font)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from levelup.web import admin, insight, participant, studio, tv

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """The pages' routers (participant and TV links, the admin studio) and their assets (``/static/web/…``)."""
    app.include_router(tv.router)
    app.include_router(participant.router)
    app.include_router(admin.router)
    app.include_router(studio.router)
    app.include_router(insight.router)
    app.mount("/static/web", StaticFiles(directory=STATIC), name="web-static")
