"""The live feed as Server-Sent Events, read through :mod:`levelup.feed.service`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from levelup.api.deps import ReadAccess
from levelup.errors import MAX_INT
from levelup.feed import fanout
from levelup.feed import service as feed

router = APIRouter(tags=["challenges"])
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

    waking = fanout.of(access.runtime.db.engine)
    assert waking is not None  # every Database has one (levelup.storage.db.Database._keep_copies)

    async def messages() -> AsyncIterator[bytes]:
        last, sent, quiet_since = start, 0, time.monotonic()
        yield b"retry: 2000\n\n"
        async with waking.waiter(program_id) as woken:  # registered before the first read: no wake-up is lost
            while not await request.is_disconnected():
                items = await run_in_threadpool(fetch, last)
                for item in items:
                    data = orjson.dumps(item.data())
                    yield b"id: %d\nevent: %s\ndata: %s\n\n" % (item.id, item.kind.encode(), data)
                    last, sent = item.id, sent + 1
                    if limit is not None and sent >= limit:
                        return
                if items:
                    quiet_since = time.monotonic()
                    continue
                await woken.wait()  # a commit of the program's feed, in any process, or time to look anyway
                if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"

    return StreamingResponse(messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
