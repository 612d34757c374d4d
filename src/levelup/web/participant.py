"""A participant's pages (WEB.md): their home, the store and the rules, opened by their signed link.

Every read goes through the services the API uses (profile, ledger, lots, catalog, redemptions, rules
catalogue, cases); a link opens its own participant only: no page takes a participant from the URL."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection, func, select
from starlette.concurrency import run_in_threadpool

from levelup.cases import service as cases
from levelup.errors import FieldError, Invalid, LevelupError, NotFound
from levelup.kudos.service import give
from levelup.leaderboards.service import NotIndexed, leaderboard
from levelup.ledger import lots
from levelup.ledger import service as ledger
from levelup.metrics.periods import local_date, period_key
from levelup.participants import repository as participants
from levelup.participants import visibility
from levelup.participants.profile import profile
from levelup.rewards import service as rewards
from levelup.rules.catalog import how_to_play
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.web.access import Opened, open_page
from levelup.web.charts import balances_over_time
from levelup.web.render import PageRoute, board_title, csrf_token, form, page, whole

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Token = Annotated[str | None, Query(max_length=200)]
Notice = Annotated[str | None, Query(max_length=200)]
LEDGER_LINES = 25


def _here(opened: Opened, page_name: str, **query: str) -> str:
    return f"/p/{opened.program.key}/{page_name}?" + urlencode({"token": opened.token, **query})


def _common(opened: Opened, name: str | None, notice: str | None) -> dict[str, Any]:
    return {
        "program": opened.compiled.doc,
        "name": name or opened.participant,
        "csrf": csrf_token(opened.token),
        "links": {p: _here(opened, p) for p in ("me", "store", "rules")},
        "notice": notice,
    }


def _kudos(connection: Connection, opened: Opened, today: dt.date) -> dict[str, Any] | None:
    """What the participant gave lately and the budget they have left this period (kudos received are ledger lines)."""
    settings = opened.compiled.doc.kudos
    if settings is None:
        return None
    k, p = t.kudos.c, t.participants.c
    given = connection.execute(
        select(k.amount, k.message, k.at, k.period, p.name, p.external_id)
        .join(t.participants, p.id == k.receiver_id)
        .where(k.giver_id == opened.participant_id)
        .order_by(k.id.desc())
        .limit(10)
    ).all()
    period = period_key(settings.budget.per, today)
    spent = connection.execute(
        select(func.coalesce(func.sum(k.amount), 0)).where(k.giver_id == opened.participant_id, k.period == period)
    ).scalar_one()
    return {"given": given, "left": settings.budget.amount - int(spent), "settings": settings}


def _boards(connection: Connection, opened: Opened) -> list[dict[str, Any]]:
    """Where the participant stands on each board ranked by index (the neighbourhood, never the bottom of a
    board): rank of total, value and the gap to the one above. Only boards read by index: one ranked afresh over
    every participant (a windowed board before the board-windows job has kept today's
    rows) is too slow for a page at scale, and is left to the TV and the API."""
    shown = []
    for board in opened.compiled.doc.leaderboards:
        if board.by != "participant":
            continue
        try:
            body = leaderboard(
                connection,
                opened.program,
                opened.compiled,
                board.key,
                around=opened.participant,
                limit=1,
                indexed_only=True,
            )
        except (NotFound, NotIndexed):  # not on this board for the period yet; or not read by index
            continue
        entries = body["entries"]
        at = next(i for i, e in enumerate(entries) if e["id"] == opened.participant)
        above = entries[at - 1] if at > 0 and entries[at - 1]["rank"] < entries[at]["rank"] else None
        if above is not None:  # the one above may have opted out of being shown: a place, not a name
            above = visibility.masked(connection, opened.program.id, [above], opened.compiled.program_holdouts)[0]
        shown.append(
            {
                "name": board_title(board),
                "period": body["period"],
                "rank": entries[at]["rank"],
                "total": body["total"],
                "value": entries[at]["value"],
                "above": above,
                "gap": above["value"] - entries[at]["value"] if above else None,
            }
        )
    return shown


def _home(runtime: Runtime, program: str, token: str | None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    with runtime.db.read() as connection:
        opened = open_page(runtime, connection, program, token, "participant")
        today = local_date(now, opened.compiled.timezone)
        found = profile(connection, opened.program, opened.compiled, opened.participant, now)
        # the newest lines: the first ones listed, all of them drawn
        entries, _ = ledger.entries(connection, opened.program, opened.participant, before=None, limit=ledger.MAX_PAGE)
        return {
            "opened": opened,
            "profile": found,  # each challenge with its pace (engine.goals.pace, as the API shows it)
            "entries": entries,
            "expiring": lots.expiring(connection, opened.participant_id, now),
            "kudos": _kudos(connection, opened, today),
            "cases": cases.of_participant(connection, opened.program, opened.participant_id),
            "boards": _boards(connection, opened),
            "received": [e for e in entries if e["kind"] == "kudos"],
            "hidden": bool(visibility.hidden(connection, opened.program.id, [opened.participant])),
        }


@router.get("/p/{program}/me", response_class=HTMLResponse)
async def home(program: str, request: Request, token: Token = None, notice: Notice = None) -> HTMLResponse:
    read = await run_in_threadpool(_home, request.app.state.runtime, program, token)
    opened: Opened = read["opened"]
    doc = opened.compiled.doc
    return page(
        "me.html",
        **_common(opened, read["profile"]["name"], notice),
        me=read["profile"],
        entries=read["entries"][:LEDGER_LINES],
        chart=balances_over_time(
            read["entries"],
            {c: n - read["profile"]["arrears"].get(c, 0) for c, n in read["profile"]["balances"].items()},
            {c.key: c.name for c in doc.currencies},
        ),
        expiring=read["expiring"],
        kudos=read["kudos"],
        received=read["received"],
        cases=read["cases"],
        boards=read["boards"],
        hidden=read["hidden"],
        currencies={c.key: c for c in doc.currencies},
        badges={b.key: b for b in doc.badges},
        challenges={c.key: c for c in doc.challenges},
        action={
            "kudos": _here(opened, "me/kudos"),
            "case": _here(opened, "me/cases"),
            "visibility": _here(opened, "me/visibility"),
        },
    )


def _after_post(opened: Opened, page_name: str, notice: str) -> RedirectResponse:
    """Post, then redirect, then get: a reload never posts twice."""
    return RedirectResponse(_here(opened, page_name, notice=notice), status_code=303)


async def _posted(request: Request, program: str, token: str | None) -> tuple[Runtime, Opened, dict[str, str]]:
    runtime: Runtime = request.app.state.runtime

    def opened() -> Opened:
        with runtime.db.read() as connection:
            return open_page(runtime, connection, program, token, "participant")

    found = await run_in_threadpool(opened)
    return runtime, found, await form(request, found.token)


async def _attempt(opened: Opened, page_name: str, write: Callable[[], str]) -> RedirectResponse:
    """Run ``write`` (one transaction) and go back to the page saying what it did, or why it did nothing
    (a refusal such as a spent budget or balance is news for the person, not an error page)."""
    try:
        said = await run_in_threadpool(write)
    except LevelupError as refused:
        why = refused.errors[0].message if refused.errors else ""
        said = f"Not done: {refused.detail}" + (f" ({why})" if why else "")
    return _after_post(opened, page_name, said)


@router.post("/p/{program}/me/kudos")
async def post_kudos(program: str, request: Request, token: Token = None) -> Response:
    runtime, opened, fields = await _posted(request, program, token)
    receiver = fields.get("to", "").strip()
    message = fields.get("message", "").strip()

    def write() -> str:
        if not receiver or not 1 <= len(message) <= 500:
            raise Invalid("kudos need someone and a message", errors=[FieldError("message", "1..500 characters")])
        amount = whole(fields, "amount")
        with runtime.db.write() as connection:
            participants.find_id(connection, opened.program.id, receiver)  # kudos to someone who plays
            give(
                connection,
                opened.program,
                opened.compiled,
                giver=opened.participant,
                receiver=receiver,
                amount=amount,
                message=message,
                idempotency_key=fields.get("key") or None,
            )
        return f"Kudos sent to {receiver}."

    return await _attempt(opened, "me", write)


@router.post("/p/{program}/me/cases")
async def post_case(program: str, request: Request, token: Token = None) -> Response:
    runtime, opened, fields = await _posted(request, program, token)

    def write() -> str:
        entry = whole(fields, "entry", low=1, high=2**62) if fields.get("entry") else None
        with runtime.db.write() as connection:
            cases.open_case(
                connection, opened.program, opened.participant_id, fields.get("message", ""), entry_id=entry
            )
        return "Thanks: your case is open, the answer will show here."

    return await _attempt(opened, "me", write)


@router.post("/p/{program}/me/visibility")
async def post_visibility(program: str, request: Request, token: Token = None) -> Response:
    """The participant's own choice to be shown on public screens (the TV) or not: still scored and ranked."""
    runtime, opened, fields = await _posted(request, program, token)
    hide = fields.get("hidden") == "true"

    def write() -> str:
        with runtime.db.write() as connection:
            visibility.set_hidden(connection, opened.program.id, opened.participant, hide)
        return "Public screens no longer show your name." if hide else "Public screens show your name again."

    return await _attempt(opened, "me", write)


def _store(runtime: Runtime, program: str, token: str | None) -> dict[str, Any]:
    with runtime.db.read() as connection:
        opened = open_page(runtime, connection, program, token, "participant")
        found = profile(connection, opened.program, opened.compiled, opened.participant)
        return {
            "opened": opened,
            "profile": found,
            "catalog": rewards.catalog(connection, opened.program, opened.compiled, participant=opened.participant),
            "history": rewards.list_redemptions(
                connection, opened.program, participant=opened.participant, status=None, limit=50, after=0
            )["redemptions"],
        }


@router.get("/p/{program}/store", response_class=HTMLResponse)
async def store(
    program: str,
    request: Request,
    token: Token = None,
    notice: Notice = None,
    confirm: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """The catalog; ``?confirm=<reward>`` asks to confirm that redemption (a page of its own: no script needed)."""
    read = await run_in_threadpool(_store, request.app.state.runtime, program, token)
    opened: Opened = read["opened"]
    items = read["catalog"]["rewards"]
    asked = next((r for r in items if r["key"] == confirm and r.get("can_redeem")), None)
    return page(
        "store.html",
        **_common(opened, read["profile"]["name"], notice),
        me=read["profile"],
        rewards=items,
        history=read["history"],
        names={r.key: r.name for r in opened.compiled.doc.rewards},
        currencies={c.key: c for c in opened.compiled.doc.currencies},
        confirm=asked,
        confirm_url={r["key"]: _here(opened, "store", confirm=r["key"]) for r in items},
        redeem=_here(opened, "store/redeem"),
        key=uuid.uuid4().hex,
    )


@router.post("/p/{program}/store/redeem")
async def post_redeem(program: str, request: Request, token: Token = None) -> Response:
    runtime, opened, fields = await _posted(request, program, token)
    names = {r.key: r.name for r in opened.compiled.doc.rewards}

    def write() -> str:
        with runtime.db.write() as connection:
            made, _ = rewards.redeem(
                connection,
                opened.program,
                opened.compiled,
                participant=opened.participant,
                reward_key=fields.get("reward", ""),
                idempotency_key=f"web-{fields.get('key') or uuid.uuid4().hex}"[:200],
            )
        return f"Redeemed: {names.get(made['reward'], made['reward'])}. It is on its way."

    return await _attempt(opened, "store", write)


@router.get("/p/{program}/rules", response_class=HTMLResponse)
async def rules(program: str, request: Request, token: Token = None) -> HTMLResponse:
    """How to play, for people: the same catalogue as ``GET …/rules``, linkable by anchor."""
    runtime: Runtime = request.app.state.runtime

    def read() -> Opened:
        with runtime.db.read() as connection:
            return open_page(runtime, connection, program, token, "participant")

    opened = await run_in_threadpool(read)
    return page("rules.html", **_common(opened, None, None), rules=how_to_play(opened.compiled, opened.participant))
