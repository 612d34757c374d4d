"""The live feed as Server-Sent Events, read through :mod:`levelup.feed.service`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from levelup.api.deps import ReadAccess
from levelup.errors import MAX_INT
from levelup.feed import service as feed

router = APIRouter(tags=["challenges"])
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
PAGE = 500


@router.get(
    "/programs/{program}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream(
    access: ReadAccess,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_INT, description="resume after this message id")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="stop after this many messages")] = None,
) -> StreamingResponse:
    """The live feed: awards, badges, level changes, streaks and completions as they happen.

    Each message has an ``id``; reconnect with ``Last-Event-ID`` (or ``?since=``) to resume
    exactly after it. Without either, the feed starts with what happens next.
    """
    with access.runtime.db.read() as connection:
        program_id = access.record(connection).id
        newest = feed.latest_id(connection, program_id)
    resume = since
    if resume is None and last_event_id is not None and last_event_id.isdigit() and len(last_event_id) < 19:
        resume = int(last_event_id)  # anything else (not an id we sent): start with what happens next
    start = resume if resume is not None else newest

    def fetch(last_id: int) -> list[feed.Published]:
        with access.runtime.db.read() as connection:
            return feed.after(connection, program_id, last_id, PAGE)

    async def messages() -> AsyncIterator[bytes]:
        last, sent, quiet = start, 0, 0.0
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            items = await run_in_threadpool(fetch, last)
            for item in items:
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (item.id, item.kind.encode(), orjson.dumps(item.data()))
                last, sent = item.id, sent + 1
                if limit is not None and sent >= limit:
                    return
            if items:
                quiet = 0.0
                continue
            await asyncio.sleep(POLL_SECONDS)
            quiet += POLL_SECONDS
            if quiet >= HEARTBEAT_SECONDS:
                quiet = 0.0
                yield b": keep-alive\n\n"

    return StreamingResponse(messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
