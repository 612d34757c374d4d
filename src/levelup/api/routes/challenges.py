"""Challenges with status and progress, and the live feed (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from levelup.api.deps import AdminAccess, ReadAccess
from levelup.challenges.launch import launch
from levelup.challenges.service import list_challenges
from levelup.storage import tables as t

router = APIRouter(tags=["challenges"])
POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0
PAGE = 500


@router.get("/programs/{program}/challenges")
def get_challenges(access: ReadAccess, participant: str | None = None) -> dict[str, Any]:
    """Every challenge with its status (upcoming, active, ended), current period and progress;
    ``?participant=`` adds that participant's progress. Drafts are shown to admin keys only."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return list_challenges(
            connection,
            record,
            access.compiled(connection, record),
            participant=participant,
            include_drafts=access.principal.can("admin", access.key),
        )


@router.post("/programs/{program}/challenges/{challenge}/launch")
def launch_challenge(access: AdminAccess, challenge: str) -> dict[str, Any]:
    """Take a draft live: a new program version, and the draft's completions of the current period paid."""
    with access.runtime.db.write() as connection:
        return launch(connection, access.key, challenge, actor=access.principal.key_id)


@router.get("/programs/{program}/stream", response_class=StreamingResponse)
async def stream(
    access: ReadAccess,
    request: Request,
    last_event_id: Annotated[str | None, Header()] = None,
    since: Annotated[int | None, Query(ge=0, description="resume after this message id")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000, description="stop after this many messages")] = None,
) -> StreamingResponse:
    """The live feed: awards, badges, level changes, streaks and completions as they happen.

    Each message has an ``id``; reconnect with ``Last-Event-ID`` (or ``?since=``) to resume
    exactly after it. Without either, the feed starts with what happens next.
    """
    with access.runtime.db.read() as connection:
        program_id = access.record(connection).id
        newest = connection.execute(
            select(t.feed.c.id).where(t.feed.c.program_id == program_id).order_by(t.feed.c.id.desc()).limit(1)
        ).scalar_one_or_none()
    resume = since
    if resume is None and last_event_id is not None and last_event_id.isdigit():
        resume = int(last_event_id)
    start = resume if resume is not None else (newest or 0)

    def fetch(after: int) -> list[Any]:
        with access.runtime.db.read() as connection:
            return list(
                connection.execute(
                    select(t.feed)
                    .where(t.feed.c.program_id == program_id, t.feed.c.id > after)
                    .order_by(t.feed.c.id)
                    .limit(PAGE)
                )
            )

    async def messages() -> AsyncIterator[bytes]:
        last, sent, quiet = start, 0, 0.0
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            rows = await run_in_threadpool(fetch, last)
            for row in rows:
                data = {"participant": row.participant, "at": row.at.isoformat(), **row.payload}
                yield b"id: %d\nevent: %s\ndata: %s\n\n" % (row.id, row.kind.encode(), orjson.dumps(data))
                last, sent = row.id, sent + 1
                if limit is not None and sent >= limit:
                    return
            if rows:
                quiet = 0.0
                continue
            await asyncio.sleep(POLL_SECONDS)
            quiet += POLL_SECONDS
            if quiet >= HEARTBEAT_SECONDS:
                quiet = 0.0
                yield b": keep-alive\n\n"

    return StreamingResponse(messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
