"""The HTTP side of observability: a middleware that times, counts and logs every request under a
request id, ``GET /metrics`` and ``GET /readyz``."""

from __future__ import annotations

import functools
import logging
import time
from typing import Literal

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request, Response
from redis import Redis
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from levelup.api.responses import Out, as_is
from levelup.leaderboards import redis_board
from levelup.observability import logs, metrics
from levelup.storage.db import MIGRATIONS, Database

logger = logging.getLogger("levelup.http")
REQUEST_ID_HEADER = "x-request-id"
UNMATCHED = "(unmatched)"  # the route label of a 404 no route matched: never the raw path (unbounded labels)


class Observed:
    """Pure ASGI (a ``BaseHTTPMiddleware`` would buffer streams and lose context variables): each request
    gets an id (the caller's ``X-Request-ID`` if it sent a sane one), echoed in the response; when it
    ends, one log line and its count and latency by route template (``/api/v1/programs/{program}/…``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if given.isprintable() and 0 < len(given) <= 64 else logs.new_id()
        token = logs.REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _template(scope)
            method = scope["method"]
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            metrics.LATENCY.labels(method, route).observe(elapsed)
            logger.info(
                "%s %s %d %.1f ms",
                method,
                scope["path"],
                status,
                elapsed * 1000,
                extra={"method": method, "route": route, "status": status, "ms": round(elapsed * 1000, 2)},
            )
            logs.REQUEST_ID.reset(token)


def _template(scope: Scope) -> str:
    """The matched route's path template as included (``/api/v1/programs/{program}``): FastAPI keeps the
    included route in its scope entry (``scope["route"]`` is the router's own, without the prefix)."""
    effective = scope.get("fastapi", {}).get("effective_route_context")
    path = getattr(effective, "path_format", None) or getattr(scope.get("route"), "path", None)
    return str(path) if path else UNMATCHED


router = APIRouter(tags=["health"])


class Ready(Out):
    status: Literal["ready"]


class NotReady(Out):
    status: Literal["not ready"]
    failed: dict[str, str]


@functools.cache
def _migration_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory(str(MIGRATIONS)).get_heads())


def not_ready(db: Database, redis: Redis | None = None) -> dict[str, str]:
    """What keeps this worker from taking traffic, by check (empty: ready): the database unreachable or
    behind the code's migrations, or the configured Redis unreachable."""
    failed: dict[str, str] = {}
    try:
        with db.read() as connection:
            heads = frozenset(MigrationContext.configure(connection).get_current_heads())
        if heads != _migration_heads():
            code = sorted(_migration_heads())
            failed["migrations"] = f"database at {sorted(heads)}, code at {code}: run levelup init"
    except Exception as exc:
        failed["database"] = f"{type(exc).__name__}: {exc}"
    if redis is not None:
        try:
            redis.ping()
        except Exception as exc:
            failed["redis"] = f"{type(exc).__name__}: {exc}"
    return failed


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "not ready, with the failed checks"}},
)
async def readyz(request: Request) -> Response:
    """Readiness: the database answers and is at the newest migration, and Redis (when configured) answers.
    A load balancer sends traffic only to workers answering 200."""
    db = request.app.state.runtime.db
    boards = redis_board.of(db.engine)
    failed = await run_in_threadpool(not_ready, db, None if boards is None else boards.client)
    if failed:
        return as_is(NotReady, {"status": "not ready", "failed": failed}, status_code=503)
    return as_is(Ready, {"status": "ready"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}}}},
)
def prometheus() -> Response:
    """Prometheus metrics (text format): requests, events, awards, group commits, jobs, the pool, Redis."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
