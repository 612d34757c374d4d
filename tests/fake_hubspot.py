"""A local fake of HubSpot's CRM objects batch read, for ``fetch`` in tests and bench/sources.py.

``POST /crm/v3/objects/{type}/batch/read`` with ``{"properties": [...], "inputs": [{"id": ...}]}`` and the
private app's bearer token, answered as HubSpot documents it: 200 with ``results``, 207 with ``errors``
when some ids are unknown, 401 for another token, and ``throttle`` 429s with ``Retry-After`` first.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn
from bench.server import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeHubSpot:
    def __init__(self, token: str, objects: Mapping[str, dict[str, Any]], *, throttle: int = 0, retry_after: str = "0"):
        self.token = token
        self.objects = objects  # id -> properties
        self.throttle = throttle
        self.retry_after = retry_after
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/crm/v3/objects/{kind}/batch/read", self._batch_read, methods=["POST"])])

    async def _batch_read(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append({"kind": request.path_params["kind"], **body})
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"status": "error", "category": "INVALID_AUTHENTICATION"}, 401)
        if self.throttle:
            self.throttle -= 1
            return JSONResponse({"status": "error", "category": "RATE_LIMITS"}, 429, {"Retry-After": self.retry_after})
        ids = [i["id"] for i in body["inputs"]]
        results = [
            {
                "id": i,
                "properties": {p: self.objects[i].get(p) for p in body["properties"]},
                "createdAt": "2026-11-01T10:00:00Z",
                "updatedAt": "2026-11-20T15:04:05Z",
                "archived": False,
            }
            for i in ids
            if i in self.objects
        ]
        missing = [i for i in ids if i not in self.objects]
        if not missing:
            return JSONResponse({"status": "COMPLETE", "results": results})
        errors = [{"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": missing}}]
        return JSONResponse({"status": "COMPLETE", "results": results, "numErrors": 1, "errors": errors}, 207)


@contextmanager
def serving(fake: FakeHubSpot) -> Iterator[str]:
    """``fake`` served on a free loopback port in a thread, for a server in another process: its base URL."""
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake HubSpot API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


class EveryDeal(Mapping[str, dict[str, Any]]):
    """Any numeric id is a deal (amount 5000, owner id mod 50): the benchmark's CRM."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        if not key.isdigit():
            raise KeyError(key)
        return {"amount": "5000", "hubspot_owner_id": str(int(key) % 50), "dealname": f"Deal {key}"}

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def bench_app() -> Starlette:
    """``uvicorn --factory tests.fake_hubspot:bench_app``: every deal exists; the token from FAKE_HUBSPOT_TOKEN."""
    return FakeHubSpot(os.environ["FAKE_HUBSPOT_TOKEN"], EveryDeal()).app
