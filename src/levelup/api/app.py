"""The HTTP API (SPEC §4): FastAPI app, problem+json errors, OpenAPI at /openapi.json."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from levelup import __version__
from levelup.api.routes import challenges, events, keys, leaderboards, participants, programs
from levelup.errors import FieldError, LevelupError, path_of
from levelup.runtime import Runtime

PROBLEM = "application/problem+json"


def _problem(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM)


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Levelup",
        version=__version__,
        description="Gamification engine for CRM: points, levels, badges, leaderboards and loyalty.",
        docs_url=None,  # Swagger UI loads from a CDN; Levelup serves every asset itself
        redoc_url=None,
    )
    app.state.runtime = runtime

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

    for module in (programs, events, participants, leaderboards, challenges, keys):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(programs.schema_router, prefix="/api/v1")
    return app
