"""The studio's other pages (WEB.md, admin studio 2 and 6): teams and their members, webhook subscriptions
and their delivery logs, the audit log, tier overrides and erasure. Same session, same CSRF token, same rights as
:mod:`levelup.web.admin`; every change names the key that made it (``actor=``), as the API's would."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from levelup import listing
from levelup.audit import service as audit
from levelup.errors import FieldError, Invalid, LevelupError, NotFound
from levelup.participants import erasure
from levelup.programs import service as programs
from levelup.tiers import service as tiers
from levelup.web.admin import Notice, page_context, posted, runtime_of, signed_in
from levelup.web.render import PageRoute, page
from levelup.webhooks import service as webhooks

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE = 50
After = Annotated[str | None, Query(max_length=200)]
Before = Annotated[int | None, Query(ge=0, le=2**62)]


def _said(error: LevelupError) -> str:
    """A refusal in words, for the page that made it: the detail and each field's message."""
    fields = "; ".join(f"{e.path}: {e.message}" for e in getattr(error, "errors", None) or [])
    return f"{error.detail}{' — ' + fields if fields else ''}"


@router.get("/admin/p/{program}/teams", response_class=HTMLResponse)
async def teams_page(program: str, request: Request, after: After = None) -> HTMLResponse:
    """The program's teams by id, with their member counts, each opening its members."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> tuple[list[dict[str, Any]], str | None]:
        with runtime.db.read() as connection:
            return listing.teams(connection, programs.find(connection, program).id, after=after, limit=PAGE)

    found, last = await run_in_threadpool(read)
    following = f"/admin/p/{program}/teams?" + urlencode({"after": last}) if last else None
    return page("admin_teams.html", program=program, teams=found, following=following, **page_context(request, None))


@router.get("/admin/p/{program}/teams/{team}", response_class=HTMLResponse)
async def team_page(program: str, team: str, request: Request) -> HTMLResponse:
    """One team and its members (the first 500 by id), each linking to their events."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> dict[str, Any] | None:
        with runtime.db.read() as connection:
            return listing.members(connection, programs.find(connection, program).id, team, limit=500)

    found = await run_in_threadpool(read)
    if found is None:
        raise NotFound(f"no team {team!r} in program {program!r}")
    return page("admin_team.html", program=program, team=found, **page_context(request, None))


def _webhooks_page(
    request: Request, program: str, *, status: int = 200, notice: str | None = None, secret: str | None = None
) -> HTMLResponse:
    runtime = runtime_of(request)
    with runtime.db.read() as connection:
        found = webhooks.subscriptions(connection, programs.find(connection, program))
    return page(
        "admin_webhooks.html",
        status,
        program=program,
        webhooks=found,
        types=webhooks.TYPES,
        secret=secret,
        **page_context(request, notice),
    )


@router.get("/admin/p/{program}/webhooks", response_class=HTMLResponse)
async def webhooks_page(program: str, request: Request, notice: Notice = None) -> HTMLResponse:
    """Live subscriptions (never their secrets), a form to add one, and a delete button on each."""
    await signed_in(request, program)
    return await run_in_threadpool(_webhooks_page, request, program, notice=notice)


@router.post("/admin/p/{program}/webhooks", response_class=HTMLResponse)
async def create_webhook(program: str, request: Request) -> HTMLResponse:
    """Subscribe a URL to notification types; the signing secret is shown on the page this once, and a
    refusal (a bad URL, no type, too many subscriptions) is said on the page."""
    principal, fields, runtime = await posted(request, program)
    chosen = [kind for kind in webhooks.TYPES if fields.get(f"type-{kind}")]
    style = fields.get("format", "json")

    def write() -> dict[str, Any]:
        if not chosen:
            raise Invalid("no notification type", errors=[FieldError("events", "choose at least one")])
        if style not in ("json", "slack", "teams"):
            raise Invalid("bad format", errors=[FieldError("format", "json, slack or teams")])
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            made = webhooks.subscribe(
                connection,
                record,
                url=fields.get("url", "").strip(),
                events=chosen,
                secret=None,
                format=style,
                actor=principal.key_id,
            )
        webhooks.forget(runtime.db.engine, record.id)
        return made

    try:
        made = await run_in_threadpool(write)
    except LevelupError as error:
        refused = partial(_webhooks_page, status=error.status, notice=f"Not subscribed: {_said(error)}")
        return await run_in_threadpool(refused, request, program)
    said = f"Subscribed {made['url']} to {len(made['events'])} notification types."
    return await run_in_threadpool(partial(_webhooks_page, notice=said, secret=made["secret"]), request, program)


@router.post("/admin/p/{program}/webhooks/{webhook_id}/delete")
async def delete_webhook(program: str, webhook_id: int, request: Request) -> Response:
    """Delete a subscription: what waits to be sent is cancelled; its delivery log stays."""
    principal, _, runtime = await posted(request, program)

    def write() -> None:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            webhooks.unsubscribe(connection, record, webhook_id, actor=principal.key_id)
        webhooks.forget(runtime.db.engine, record.id)

    await run_in_threadpool(write)
    notice = f"Webhook {webhook_id} deleted."
    return RedirectResponse(f"/admin/p/{program}/webhooks?" + urlencode({"notice": notice}), status_code=303)


@router.get("/admin/p/{program}/webhooks/{webhook_id}", response_class=HTMLResponse)
async def deliveries_page(program: str, webhook_id: int, request: Request, before: Before = None) -> HTMLResponse:
    """A subscription's delivery log: notifications newest first, each with its attempts (answer, error, time)."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> tuple[dict[str, Any], dict[str, Any]]:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            shown = next((w for w in webhooks.subscriptions(connection, record) if w["id"] == webhook_id), None)
            if shown is None:
                raise NotFound(f"no webhook subscription {webhook_id}")
            return shown, webhooks.deliveries(connection, record, webhook_id, limit=PAGE, before=before)

    subscription, log = await run_in_threadpool(read)
    cursor = log["next"]
    following = f"/admin/p/{program}/webhooks/{webhook_id}?" + urlencode({"before": cursor}) if cursor else None
    return page(
        "admin_deliveries.html",
        program=program,
        webhook=subscription,
        deliveries=log["deliveries"],
        following=following,
        **page_context(request, None),
    )


@router.get("/admin/p/{program}/audit", response_class=HTMLResponse)
async def audit_page(program: str, request: Request, before: Before = None) -> HTMLResponse:
    """The program's audit log, newest first: who (which key) did what, when, with the detail."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> list[dict[str, Any]]:
        with runtime.db.read() as connection:
            return audit.page(connection, programs.find(connection, program).id, before=before, limit=PAGE)

    entries = await run_in_threadpool(read)
    following = (
        f"/admin/p/{program}/audit?" + urlencode({"before": entries[-1]["id"]}) if len(entries) == PAGE else None
    )
    return page(
        "admin_audit.html", program=program, entries=entries, following=following, **page_context(request, None)
    )


def _until(text: str) -> dt.datetime | None:
    """A date field (YYYY-MM-DD, the end of that day in UTC), or None when left empty."""
    if not text.strip():
        return None
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid("bad date", errors=[FieldError("until", "a date, YYYY-MM-DD")]) from None
    return dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC)


@router.post("/admin/p/{program}/participants/{participant}/tier")
async def override_tier(program: str, participant: str, request: Request) -> Response:
    """Put a participant in a tier by hand until a date (or lift the override: no tier), with a note;
    audited and reviewed at once, as ``PUT …/participants/{id}/tier``."""
    principal, fields, runtime = await posted(request, program)
    tier = fields.get("tier", "").strip() or None

    def write() -> str:
        note = fields.get("note", "").strip()
        if not note:
            raise Invalid("a note is needed", errors=[FieldError("note", "say why")])
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            held = tiers.set_override(
                connection,
                record.id,
                runtime.programs.compiled(connection, record),
                participant,
                tier=tier,
                until=_until(fields.get("until", "")),
                note=note[:500],
                actor=principal.key_id,
            )
        return str(held["name"])

    held = await run_in_threadpool(write)
    said = f"{participant} is held in {held} by hand." if tier else f"Override of {participant} lifted: {held}."
    return RedirectResponse(
        f"/admin/p/{program}/participants?" + urlencode({"q": participant, "notice": said}), status_code=303
    )


@router.post("/admin/p/{program}/participants/{participant}/erase")
async def erase_participant(program: str, participant: str, request: Request) -> Response:
    """Erase a participant (pseudonymised everywhere, the books unchanged), as ``DELETE …/participants/{id}``;
    it cannot be undone, so the form asks for the id typed again."""
    principal, fields, runtime = await posted(request, program)

    def write() -> str:
        if fields.get("confirm", "").strip() != participant:
            raise Invalid("not confirmed", errors=[FieldError("confirm", f"type {participant} to erase them")])
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            return erasure.erase(connection, record.id, participant, actor=principal.key_id).participant

    pseudonym = await run_in_threadpool(write)
    said = f"{participant} erased: pseudonymised as {pseudonym}, every balance kept."
    return RedirectResponse(f"/admin/p/{program}/participants?" + urlencode({"notice": said}), status_code=303)
