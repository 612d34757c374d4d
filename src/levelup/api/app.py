"""The HTTP API (docs/api.md): FastAPI app, problem+json errors, OpenAPI at /openapi.json."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from levelup import __version__, web
from levelup.api.deps import BoundedRequests
from levelup.api.limits import Limiter
from levelup.api.responses import Out
from levelup.api.routes import (
    audit,
    challenges,
    clawback,
    events,
    export,
    home,
    insights,
    keys,
    kudos,
    leaderboards,
    links,
    participants,
    programs,
    rewards,
    sources,
    stream,
    webhooks,
)
from levelup.errors import FieldError, Invalid, LevelupError, path_of
from levelup.jobs import registry as jobs
from levelup.keys.service import LastUsed
from levelup.leaderboards import redis_board
from levelup.observability import http as observed
from levelup.observability import logs
from levelup.observability.metrics import process_exited, watch_pool
from levelup.runtime import Runtime
from levelup.webhooks import delivery

PROBLEM = "application/problem+json"


class Health(Out):
    status: Literal["ok"]


logger = logging.getLogger("levelup")


def _problem(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM)


@asynccontextmanager
async def _job_loop(app: FastAPI) -> AsyncIterator[None]:
    """Run the periodic jobs (:mod:`levelup.jobs.registry`) every ``close_every`` seconds while serving,
    and the webhook delivery worker when ``deliver`` is set."""
    every: float | None = app.state.close_every
    settings: delivery.Settings | None = app.state.deliver
    task = asyncio.create_task(_jobs_forever(app.state.runtime, every)) if every else None
    boards = redis_board.of(app.state.runtime.db.engine)
    if boards is not None:  # a copy missing or stale (Redis flushed, a version applied meanwhile) is rebuilt
        boards.rebuild_stale_later()
    with ExitStack() as stack:
        stack.callback(app.state.key_use.close)  # the last uses noted are written before the process ends
        stop = threading.Event()
        if settings is not None:  # the worker blocks (see levelup.webhooks.delivery.Worker): a thread of its own
            worker = delivery.Worker(app.state.runtime, settings, stack.enter_context(httpx.Client()))
            stack.callback(worker.close)
            thread = threading.Thread(target=worker.run_forever, args=(delivery.IDLE_SECONDS, stop), daemon=True)
            thread.start()
            stack.callback(thread.join)
        stack.callback(stop.set)
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            process_exited(os.getpid())


async def _jobs_forever(runtime: Runtime, every: float) -> None:
    """Run the jobs on the clock's multiples of ``every``, so every worker's tick starts together and
    one of them does each job (:class:`levelup.jobs.registry.Turns`, kept until the next tick)."""
    held: jobs.Turns | None = None
    try:
        while True:
            logs.REQUEST_ID.set(f"jobs-{logs.new_id()}")  # the run's log lines share an id, as a request's do
            turns = jobs.Turns(runtime, tick=str(int(time.time() // every)))
            try:  # each job and program is isolated inside; this catches what stops them all (the database down)
                if held is not None:
                    await run_in_threadpool(held.close)
                held = turns
                await run_in_threadpool(jobs.run, runtime, turns=turns)
            except Exception:  # a failed run is retried next time; the loop must not die
                logger.exception("the periodic jobs failed")
            await asyncio.sleep(every - time.time() % every)
    finally:
        if held is not None:
            held.close()


def create_app(
    runtime: Runtime, *, close_every: float | None = None, deliver: delivery.Settings | None = None
) -> FastAPI:
    """The API over ``runtime``; with ``close_every`` it also runs the periodic jobs that often, and with
    ``deliver`` the webhook delivery worker."""
    app = FastAPI(
        lifespan=_job_loop,
        title="Levelup",
        version=__version__,
        description="Gamification engine for CRM: points, levels, badges, leaderboards and loyalty.",
        docs_url=None,  # Swagger UI loads from a CDN; Levelup serves every asset itself
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.limiter = Limiter.from_environment()
    app.state.key_use = LastUsed(runtime.db)
    app.state.close_every = close_every
    app.add_middleware(BoundedRequests)
    app.add_middleware(observed.Observed)  # outermost: it sees every answer, a 503 of BoundedRequests too
    watch_pool(runtime.db.engine)
    app.state.deliver = deliver

    @app.exception_handler(LevelupError)
    async def _levelup_error(_request: Request, exc: LevelupError) -> JSONResponse:
        response = _problem(exc.problem())
        if "retry_after" in exc.extra:  # overloaded, rate limited, a CRM's API out of time: when to come back
            response.headers["Retry-After"] = str(exc.extra["retry_after"])
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(path_of([p for p in e["loc"] if p != "body"]) or "(body)", e["msg"]) for e in exc.errors()]
        return _problem(Invalid("invalid request", errors=errors).problem())

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return _problem(
            {"type": "about:blank", "title": str(exc.detail), "status": exc.status_code, "detail": str(exc.detail)}
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> Health:
        """Liveness: the process answers and the database too."""
        with runtime.db.read() as connection:
            connection.exec_driver_sql("SELECT 1")
        return Health(status="ok")

    routers = (
        programs,
        events,
        clawback,
        sources,
        participants,
        leaderboards,
        challenges,
        stream,
        kudos,
        rewards,
        keys,
        webhooks,
        links,
        insights,
        audit,
        export,
    )
    for module in routers:
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(programs.schema_router, prefix="/api/v1")
    app.include_router(observed.router)
    home.mount(app)  # the landing page and /docs
    web.mount(app)  # the pages under /p/{program}/… and their assets
    return app
