"""POST a CRM's delivery to a source (docs/integrations.md): authenticated by the CRM's own scheme, not a key.

The URL a signature covers is the one the sender called. Behind a proxy that rewrites the host or the
scheme, set ``LEVELUP_PUBLIC_URL`` to the public base (``https://levelup.example.com``): the path and
query received are appended to it. Without it, the URL is the one this server saw (with uvicorn's
``X-Forwarded-Proto`` handling for trusted proxies).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response

from levelup.api.deps import IdPath
from levelup.api.responses import as_is
from levelup.api.routes.events import BatchResults
from levelup.errors import TooLarge
from levelup.sources import service, vendors

MAX_DELIVERY_BYTES = 2 * 1024 * 1024


@asynccontextmanager
async def _close_client(app: FastAPI) -> AsyncIterator[None]:
    yield
    client: httpx.AsyncClient | None = getattr(app.state, "sources_http", None)
    if client is not None:
        await client.aclose()


router = APIRouter(tags=["sources"], lifespan=_close_client)


def _http(request: Request) -> httpx.AsyncClient:
    """One client a process for ``fetch`` (kept-alive connections to the CRM's API); tests set their own."""
    state = request.app.state
    client: httpx.AsyncClient | None = getattr(state, "sources_http", None)
    if client is None:
        client = state.sources_http = httpx.AsyncClient()
    return client


def signed_url(request: Request) -> str:
    public = os.environ.get("LEVELUP_PUBLIC_URL")
    if not public:
        return str(request.url)
    query = request.url.query
    return public.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def _raw_body(request: Request) -> bytes:
    """The body as signed: bytes, bounded tighter than other routes (a CRM sends small deliveries)."""
    body = await request.body()
    if len(body) > MAX_DELIVERY_BYTES:
        raise TooLarge(f"a delivery is at most {MAX_DELIVERY_BYTES} bytes")
    return body


SOURCE_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Too many events waiting to be ingested, the server stopping, or the CRM's API (fetch) not "
        "answering in time: nothing was stored; the CRM sends the delivery again.",
        "content": {"application/problem+json": {}},
    },
    200: {
        "description": "One result per event the delivery's items made, as for a batch; a Salesforce "
        "Outbound Message is answered with its SOAP acknowledgement instead.",
        "content": {"text/xml": {"schema": {"type": "string", "description": "<Ack>true</Ack> in a SOAP envelope"}}},
    },
    401: {
        "description": "The delivery failed the CRM's check, or the server lacks the source's secret: "
        "nothing was stored.",
        "content": {"application/problem+json": {}},
    },
}


@router.post(
    "/programs/{program}/sources/{source}",
    response_model=BatchResults,
    responses=SOURCE_RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}, "text/xml": {}}}},
)
async def post_delivery(program: IdPath, source: IdPath, request: Request) -> Response:
    """A CRM's webhook delivery: checked with the source's scheme, each item mapped to events and
    ingested like a batch (200 with a result per event); 401 when the check fails; 429 past the rate of
    the sending address (before the check) or of the source (deliveries that passed it)."""
    delivery = vendors.Delivery(
        program=program,
        method=request.method,
        url=signed_url(request),
        headers=dict(request.headers),
        body=await _raw_body(request),
        now=time.time(),
    )
    limiter = request.app.state.limiter
    # Before the check, a bucket per peer; the source's own bucket only for deliveries that passed it, so a
    # flood of unsigned posts cannot spend the real CRM's rate.
    await limiter.check(f"peer:{request.client.host if request.client else '-'}")
    answer = await service.deliver(
        request.app.state.runtime,
        request.app.state,
        source,
        delivery,
        _http(request),
        admit=lambda: limiter.check(f"source:{program}:{source}"),
    )
    if answer.soap:
        return Response(vendors.SOAP_ACK, media_type="text/xml")
    return as_is(BatchResults, {"results": answer.results})
