"""The floor for single-event POSTs: the least an HTTP ingestion endpoint can do, on Levelup's server settings.

``bench/http_api.py`` starts this next to ``levelup serve`` and sends both the same single-event
POSTs. It is a FastAPI app served by uvicorn with the settings ``levelup serve`` passes to
``uvicorn.run`` (read by calling the serve command with ``uvicorn.run`` replaced, so a change there
is followed here), one worker. Its one endpoint reads the body, parses the JSON (orjson, as
Levelup does) and inserts one row in a SQLite file with Levelup's durability settings (WAL,
``synchronous=FULL``, ``BEGIN IMMEDIATE``), one transaction per request, in the thread pool; it
answers once the commit returned. No authentication, no validation, no scoring.

    python bench/floor_server.py --port 8123 --database floor.db
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000")  # storage/db.py's
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
    "type TEXT NOT NULL, participant TEXT NOT NULL, occurred_at TEXT NOT NULL, data TEXT NOT NULL, "
    "received_at REAL NOT NULL)"
)
INSERT = "INSERT INTO events (event_id, type, participant, occurred_at, data, received_at) VALUES (?, ?, ?, ?, ?, ?)"


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    for pragma in PRAGMAS:
        connection.execute(f"PRAGMA {pragma}")
    return connection


def create_app(path: Path) -> FastAPI:
    with connect(path) as connection:
        connection.execute(SCHEMA)
    local = threading.local()

    def insert(event: dict[str, Any]) -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = connect(path)
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                INSERT,
                (
                    event["id"],
                    event["type"],
                    event["participant"],
                    event["occurred_at"],
                    orjson.dumps(event.get("data", {})).decode(),
                    time.time(),
                ),
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    app = FastAPI(docs_url=None, redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/floor/events", response_model=dict[str, Any])
    async def post_event(request: Request) -> dict[str, Any]:
        event = orjson.loads(await request.body())
        await run_in_threadpool(insert, event)
        return {"id": event["id"], "status": "accepted", "awards": []}

    return app


def serve_settings() -> tuple[dict[str, Any], str]:
    """The keyword arguments ``levelup serve`` gives ``uvicorn.run`` (app, place and workers left out),
    and where they came from."""
    captured: dict[str, Any] = {}

    def capture(_app: object, **kwargs: Any) -> None:
        captured.update(kwargs)

    try:
        from levelup.cli import main as cli

        real: Callable[..., Any] = uvicorn.run
        uvicorn.run = capture  # type: ignore[assignment]
        try:
            with tempfile.TemporaryDirectory(prefix="levelup-floor-settings-") as directory:
                cli.serve(host="127.0.0.1", port=0, workers=1, database=f"sqlite:///{directory}/settings.db")
        finally:
            uvicorn.run = real  # type: ignore[assignment]
    except Exception as exc:  # a bench falls back, and says so
        return {"log_level": "warning"}, f"uvicorn defaults (reading levelup serve's settings failed: {exc!r})"
    settings = {k: v for k, v in captured.items() if k not in ("host", "port", "workers", "factory", "uds", "fd")}
    return settings, "as levelup serve passes them"


def describe(settings: dict[str, Any]) -> str:
    http = settings.get("http", "auto")
    http_name = http if isinstance(http, str) else f"{http.__module__}.{http.__qualname__}"
    return f"loop={settings.get('loop', 'auto')} http={http_name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", type=Path, required=True, help="the SQLite file (made if missing)")
    args = parser.parse_args()
    settings, source = serve_settings()
    print(f"floor server: uvicorn {describe(settings)} ({source}), 1 worker, SQLite {args.database}", flush=True)
    uvicorn.run(create_app(args.database), host=args.host, port=args.port, workers=1, **settings)


if __name__ == "__main__":
    main()
