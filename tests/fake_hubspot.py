"""A local fake of HubSpot's CRM objects batch read, for ``fetch`` in tests and bench/sources.py.

``POST /crm/v3/objects/{type}/batch/read`` with ``{"properties": [...], "inputs": [{"id": ...}]}`` and the
private app's bearer token, answered as HubSpot documents it: 200 with ``results``, 207 with ``errors``
when some ids are unknown, 401 for another token, and ``throttle`` 429s with ``Retry-After`` first.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class FakeHubSpot:
    def __init__(self, token: str, objects: dict[str, dict[str, Any]], *, throttle: int = 0, retry_after: str = "0"):
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
