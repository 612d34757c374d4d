"""The TV board (WEB.md): the program's boards in rotation, the top N only, a ticker of moments and a
celebration banner, kept live by a page-level feed (Server-Sent Events) that the link's token opens."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from levelup.errors import LevelupError
from levelup.feed import fanout
from levelup.feed import service as feed
from levelup.leaderboards import history
from levelup.leaderboards.service import leaderboard
from levelup.metrics.periods import local_date
from levelup.participants import visibility
from levelup.runtime import Runtime
from levelup.web.access import Opened, open_page
from levelup.web.charts import board_movement
from levelup.web.moments import moments, recent
from levelup.web.render import PageRoute, board_title, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Token = Annotated[str | None, Query(max_length=200)]
TICKER = 8
MOVEMENT_DAYS = 14
DEEPEST = 15  # the movement chart's lowest rank: a line breaks where someone fell below it
DAY = dt.timedelta(days=1)
HEARTBEAT_SECONDS = 15.0


def _boards(connection: Connection, opened: Opened, now: dt.datetime) -> list[dict[str, Any]]:
    """The link's boards, each its top N (never the bottom of a board), each row with its change since the end
    of yesterday, and the board's movement over the last days (its top 10's ranks, a chart). Yesterday's
    ranks, who opted out and the movement are each one statement for all the boards, not one a board: a link
    may show every board, and each statement is a round trip to the database within the page's budget."""
    wanted = opened.link.options.boards or [b.key for b in opened.compiled.doc.leaderboards]
    by_key = {b.key: b for b in opened.compiled.doc.leaderboards}
    today = local_date(now, opened.compiled.timezone)
    top = opened.link.options.top
    boards = [  # a board the program has since dropped is skipped
        leaderboard(connection, opened.program, opened.compiled, key, limit=top, now=now)
        for key in wanted
        if key in by_key
    ]
    shown = [history.Shown(board["key"], board["by"], board["period"]) for board in boards]
    yesterday = history.ranks_on(connection, opened.program, shown, today - DAY)
    for board in boards:
        before = yesterday[board["key"]]
        for entry in board["entries"]:
            rank = before.get(entry["id"])
            entry["since"] = None if not before else "new" if rank is None else rank - entry["rank"]
    people = {e["id"] for board in boards if board["by"] == "participant" for e in board["entries"]}
    hidden = visibility.hidden(connection, opened.program.id, people, opened.compiled.program_holdouts)
    masking = {
        b["key"]: hidden & {e["id"] for e in b["entries"]} if b["by"] == "participant" else set() for b in boards
    }
    leaders = {b["key"]: [e for e in b["entries"][:10] if e["id"] not in masking[b["key"]]] for b in boards}
    first = today - (MOVEMENT_DAYS - 1) * DAY
    kept = history.movement(connection, opened.program, {s: [e["id"] for e in leaders[s.board]] for s in shown}, first)
    out = []
    for board in boards:
        key = board["key"]
        moved = _movement(leaders[key], kept[key], today)
        if masking[key]:  # opted out: the row keeps its place, without a name
            board["entries"] = visibility.mask(board["entries"], masking[key])
        out.append(board | {"name": board_title(by_key[key])} | moved)
    return out


def _movement(leaders: list[dict[str, Any]], kept: dict[str, dict[dt.date, int]], today: dt.date) -> dict[str, Any]:
    """A board's top 10 (without those who opted out) as they stood at the end of each of the last
    :data:`MOVEMENT_DAYS` days of its period (``kept``) and now: a chart, and the same in words for its caption."""
    days = sorted({day for held in kept.values() for day in held} | {today})
    names = {e["id"]: e["name"] or e["id"] for e in leaders}
    ranks = {names[e["id"]]: kept[e["id"]] | {today: e["rank"]} for e in leaders}
    said = [
        f"{names[e['id']]}: " + ", ".join(f"#{r}" for _, r in sorted(kept[e["id"]].items())) + f", #{e['rank']} now"
        for e in leaders
        if kept[e["id"]]
    ]
    deepest = min(max((r for held in ranks.values() for r in held.values()), default=1), DEEPEST)
    return {"chart": board_movement(ranks, days, deepest), "movement": said, "since_day": days[0]}


def _read(runtime: Runtime, program: str, token: str | None) -> dict[str, Any]:
    with runtime.db.read() as connection:
        opened = open_page(runtime, connection, program, token, "tv")
        latest = recent(connection, opened.program.id, TICKER)
        return {
            "opened": opened,
            "boards": _boards(connection, opened, dt.datetime.now(dt.UTC)),
            "moments": moments(connection, opened.program.id, opened.compiled, latest),
            "newest": feed.latest_id(connection, opened.program.id),
        }


@router.get("/p/{program}/tv", response_class=HTMLResponse)
async def tv_page(program: str, request: Request, token: Token = None) -> HTMLResponse:
    read = await run_in_threadpool(_read, request.app.state.runtime, program, token)
    opened: Opened = read["opened"]
    return page(
        "tv.html",
        program=opened.compiled.doc,
        boards=read["boards"],
        moments=read["moments"],
        newest=read["newest"],
        rotate=opened.link.options.rotate,
        token=token,
        now=dt.datetime.now(dt.UTC),
    )


@router.get("/p/{program}/tv/boards", response_class=HTMLResponse)
async def tv_boards(program: str, request: Request, token: Token = None) -> HTMLResponse:
    """The boards alone, which the page fetches again when the feed says something moved."""
    read = await run_in_threadpool(_read, request.app.state.runtime, program, token)
    return page("tv_boards.html", boards=read["boards"])


@router.get("/p/{program}/tv/feed", response_class=StreamingResponse)
async def tv_feed(
    program: str,
    request: Request,
    token: Token = None,
    since: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """The program's moments as Server-Sent Events ({id, text, celebrate, at}), after ``since`` (or from now);
    ``Last-Event-ID`` resumes. The link is checked again at every look, so a revoked link ends the stream."""
    runtime: Runtime = request.app.state.runtime
    last_seen = request.headers.get("last-event-id", "")

    def start() -> tuple[Opened, int]:
        with runtime.db.read() as connection:
            opened = open_page(runtime, connection, program, token, "tv")
            return opened, feed.latest_id(connection, opened.program.id)

    opened, newest = await run_in_threadpool(start)
    after = int(last_seen) if last_seen.isdigit() and len(last_seen) < 19 else since if since is not None else newest

    def fetch(last: int) -> tuple[int, list[dict[str, Any]]]:
        with runtime.db.read() as connection:
            open_page(runtime, connection, program, token, "tv")  # revoked or expired since: the stream ends
            items = feed.after(connection, opened.program.id, last, 100)
            said = moments(connection, opened.program.id, opened.compiled, items)
        return (items[-1].id if items else last), [m.data() for m in said]

    waking = fanout.of(runtime.db.engine)
    assert waking is not None  # every Database has one (levelup.storage.db.Database._keep_copies)

    async def messages() -> AsyncIterator[bytes]:
        last, quiet_since = after, time.monotonic()
        yield b"retry: 2000\n\n"
        async with waking.waiter(opened.program.id) as woken:  # registered before the first read: none is lost
            while not await request.is_disconnected():
                try:
                    newest, said = await run_in_threadpool(fetch, last)
                except LevelupError:  # the link was revoked or expired: the page keeps its last state
                    return
                for moment in said:
                    yield b"id: %d\ndata: %s\n\n" % (moment["id"], orjson.dumps(moment))
                if newest != last:
                    last, quiet_since = newest, time.monotonic()
                    yield b"id: %d\nevent: moved\ndata: {}\n\n" % last  # the boards may have changed
                    continue
                await woken.wait()  # a commit of the program's feed, in any process, or time to look anyway
                if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"

    return StreamingResponse(messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
