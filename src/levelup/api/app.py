"""The HTTP API (SPEC §4): FastAPI app, problem+json errors, OpenAPI at /openapi.json."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from levelup import __version__
from levelup.api.routes import (
    challenges,
    events,
    keys,
    kudos,
    leaderboards,
    participants,
    programs,
    rewards,
    stream,
)
from levelup.challenges.closing import close_periods
from levelup.errors import FieldError, LevelupError, path_of
from levelup.ledger import expiry
from levelup.referrals.service import pay_due
from levelup.runtime import Runtime
from levelup.tiers.service import review_all

PROBLEM = "application/problem+json"
logger = logging.getLogger("levelup")


def _problem(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM)


@asynccontextmanager
async def _closing_job(app: FastAPI) -> AsyncIterator[None]:
    """Run the periodic jobs (:data:`JOBS`) every ``close_every`` seconds while serving."""
    every: float | None = app.state.close_every
    task = asyncio.create_task(_close_forever(app.state.runtime, every)) if every else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()


# The time-driven work, all idempotent and safe on several workers at once: settle closed periods,
# make pending points spendable and expire old ones, re-rate tiers as activity leaves their window.
JOBS: tuple[tuple[str, Callable[[Runtime], object]], ...] = (
    ("closing periods", close_periods),
    ("expiring lots", expiry.run),
    ("reviewing tiers", review_all),
    ("paying referrals", pay_due),
)


async def _close_forever(runtime: Runtime, every: float) -> None:
    while True:
        for name, job in JOBS:
            try:
                await run_in_threadpool(job, runtime)
            except Exception:  # a failed run is retried next time; the job must not die
                logger.exception("%s failed", name)
        await asyncio.sleep(every)


def create_app(runtime: Runtime, *, close_every: float | None = None) -> FastAPI:
    """The API over ``runtime``; with ``close_every`` it also runs the period-closing job."""
    app = FastAPI(
        lifespan=_closing_job,
        title="Levelup",
        version=__version__,
        description="Gamification engine for CRM: points, levels, badges, leaderboards and loyalty.",
        docs_url=None,  # Swagger UI loads from a CDN; Levelup serves every asset itself
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.close_every = close_every

    @app.exception_handler(LevelupError)
    async def _levelup_error(_request: Request, exc: LevelupError) -> JSONResponse:
        return _problem(exc.problem())

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(path_of([p for p in e["loc"] if p != "body"]) or "(body)", e["msg"]) for e in exc.errors()]
        return _problem(
            {
                **LevelupError("invalid request", errors=errors).problem(),
                "status": 422,
                "title": "Invalid input",
                "code": "invalid",
            }
        )

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _problem(
            {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code, "detail": str(exc.detail)}
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers and the database too."""
        with runtime.db.read() as connection:
            connection.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    for module in (programs, events, participants, leaderboards, challenges, stream, kudos, rewards, keys):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(programs.schema_router, prefix="/api/v1")
    return app
