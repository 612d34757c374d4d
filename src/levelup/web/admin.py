"""The admin studio (``/admin``, WEB.md): an admin key exchanged for a session cookie (HttpOnly,
SameSite=Strict, path /admin), every form carrying a CSRF token derived from the session's secret.

A program's page: the document in force in an editor checked as you type (the API's own validation, each
error at its line), the diff against the version in force, apply; open cases to answer (a reply, or an
adjustment); pending redemptions to fulfil or cancel; the program's links to make and revoke."""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from levelup import listing
from levelup.cases import service as cases
from levelup.errors import FieldError, Invalid, LevelupError, Unauthorized
from levelup.events.explain import explain_event
from levelup.insights import simulate as sim
from levelup.keys import service as keys
from levelup.keys.service import Principal, authenticate
from levelup.ledger import service as ledger
from levelup.ledger.liability import liability
from levelup.links import service as links
from levelup.participants import repository as participant_repository
from levelup.programs import service as programs
from levelup.programs.document import ProgramDocument
from levelup.programs.validation import MAX_DOCUMENT_BYTES, load_document
from levelup.rewards import service as rewards
from levelup.runtime import Runtime
from levelup.web import editor, sessions
from levelup.web.charts import liability_by_month
from levelup.web.render import MAX_FORM_BYTES, PageRoute, csrf_token, form, page, whole

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Notice = Annotated[str | None, Query(max_length=300)]
FORM_LIMIT = 2 * MAX_DOCUMENT_BYTES  # a document, URL-encoded


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def session_secret(request: Request) -> str:
    return request.cookies.get(sessions.COOKIE, "")


async def _principal(request: Request) -> Principal | None:
    runtime, secret = runtime_of(request), session_secret(request)

    def find() -> Principal | None:
        with runtime.db.read() as connection:
            return sessions.find(connection, secret)

    return await run_in_threadpool(find) if secret else None


async def signed_in(request: Request, program: str | None = None) -> Principal:
    """The signed-in admin, allowed on ``program``; 401 (the sign-in page) without a live session."""
    principal = await _principal(request)
    if principal is None:
        raise Unauthorized("sign in with an admin key first")
    principal.require("admin", program)
    return principal


async def posted(
    request: Request, program: str | None = None, limit: int = MAX_FORM_BYTES
) -> tuple[Principal, dict[str, str], Runtime]:
    """A studio form, posted: the signed-in admin (allowed on ``program``), the form's fields once its CSRF
    token is proven, and the runtime to act with."""
    principal = await signed_in(request, program)
    return principal, await form(request, session_secret(request), limit), runtime_of(request)


@router.get("/admin", response_class=HTMLResponse)
async def studio(request: Request, notice: Notice = None) -> HTMLResponse:
    """The programs and keys this admin may change, or the sign-in form."""
    principal = await _principal(request)
    if principal is None:
        return page("admin_signin.html", notice=notice)
    return await _studio(request, principal, notice, None)


async def _studio(request: Request, principal: Principal, notice: str | None, secret: str | None) -> HTMLResponse:
    runtime = runtime_of(request)

    def read() -> tuple[list[programs.ProgramRecord], list[dict[str, Any]]]:
        with runtime.db.read() as connection:
            listed = [p for p in programs.selected(connection) if principal.can("admin", p.key)]
            return listed, keys.listed(connection, by=principal)

    listed, known = await run_in_threadpool(read)
    return page(
        "admin_programs.html",
        programs=listed,
        keys=known,
        secret=secret,
        csrf=csrf_token(session_secret(request)),
        notice=notice,
    )


@router.post("/admin/keys", response_class=HTMLResponse)
async def make_key(request: Request) -> HTMLResponse:
    """A new API key within this admin's programs; its secret is shown on the page this once."""
    principal, fields, runtime = await posted(request)
    scope = sorted({p.strip() for p in fields.get("programs", "").split(",") if p.strip()})
    role = fields.get("role", "")

    def write() -> str:
        if role not in keys.RANK or not scope:
            raise Invalid("bad key", errors=[FieldError("programs", "a role and at least one program (or *)")])
        with runtime.db.write() as connection:
            note = fields.get("note", "").strip()[:200] or None
            return keys.create(connection, role=role, programs=scope, creator=principal, note=note)[1]

    return await _studio(request, principal, f"Key made: {role} on {', '.join(scope)}.", await run_in_threadpool(write))


@router.post("/admin/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> Response:
    principal, _, runtime = await posted(request)

    def write() -> None:
        with runtime.db.write() as connection:
            keys.revoke(connection, key_id, by=principal)

    await run_in_threadpool(write)
    return RedirectResponse("/admin?" + urlencode({"notice": f"Key {key_id} revoked."}), status_code=303)


@router.post("/admin/sign-in")
async def sign_in(request: Request) -> Response:
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    key = dict(parse_qsl(body)).get("key", "").strip()
    runtime = runtime_of(request)

    def start() -> str:
        with runtime.db.write() as connection:
            principal = authenticate(connection, key or None, os.environ.get("LEVELUP_ADMIN_KEY"))
            return sessions.start(connection, principal)

    try:
        secret = await run_in_threadpool(start)
    except LevelupError:
        return page("admin_signin.html", 401, notice="That key does not open the studio: an admin key is needed.")
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        secret,
        max_age=int(sessions.LIFETIME.total_seconds()),
        path="/admin",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/admin/sign-out")
async def sign_out(request: Request) -> Response:
    await signed_in(request)
    await form(request, session_secret(request))
    runtime, secret = runtime_of(request), session_secret(request)

    def end() -> None:
        with runtime.db.write() as connection:
            sessions.end(connection, secret)

    await run_in_threadpool(end)
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/admin")
    return response


def _program_page(runtime: Runtime, program: str) -> dict[str, Any]:
    with runtime.db.read() as connection:
        record = programs.find(connection, program)
        compiled = runtime.programs.compiled(connection, record)
        report = liability(connection, record, compiled)
        return {
            "record": record,
            "document": editor.as_yaml(programs.document_of(connection, record)),
            "cases": cases.listed(connection, record),
            "redemptions": rewards.list_redemptions(connection, record, status="pending")["redemptions"],
            "links": links.listed(connection, record),
            "currencies": [c.key for c in compiled.doc.currencies],
            "liability": report,
            "chart": liability_by_month(report),
        }


@router.get("/admin/p/{program}", response_class=HTMLResponse)
async def program_page(program: str, request: Request, notice: Notice = None) -> HTMLResponse:
    await signed_in(request, program)
    read = await run_in_threadpool(_program_page, runtime_of(request), program)
    return page(
        "admin_program.html", **read, draft=read["document"], errors=[], diff="", **page_context(request, notice)
    )


def _back(program: str, notice: str) -> RedirectResponse:
    """Post, redirect, get: back to the program's page, saying what was done."""
    return RedirectResponse(f"/admin/p/{program}?" + urlencode({"notice": notice}), status_code=303)


def page_context(request: Request, notice: str | None) -> dict[str, Any]:
    return {"csrf": csrf_token(session_secret(request)), "notice": notice, "made": None, "simulation": None, "days": 30}


@router.post("/admin/p/{program}/check")
async def check(program: str, request: Request) -> JSONResponse:
    """The draft's errors at their lines and its diff against the version in force, as the editor types."""
    _, fields, runtime = await posted(request, program, FORM_LIMIT)

    def current() -> str:
        with runtime.db.read() as connection:
            return editor.as_yaml(programs.document_of(connection, programs.find(connection, program)))

    draft = fields.get("document", "")
    errors = await run_in_threadpool(editor.check, draft, program)
    return JSONResponse({"errors": errors, "diff": editor.diff(await run_in_threadpool(current), draft)})


@router.post("/admin/p/{program}/apply", response_class=HTMLResponse)
async def apply(program: str, request: Request) -> Response:
    principal, fields, runtime = await posted(request, program, FORM_LIMIT)
    draft = fields.get("document", "")
    errors = await run_in_threadpool(editor.check, draft, program)
    if errors:
        read = await run_in_threadpool(_program_page, runtime, program)
        return page(
            "admin_program.html",
            422,
            **read | {"draft": draft, "errors": errors, "diff": editor.diff(read["document"], draft)},
            **page_context(request, "Not applied: fix the errors below."),
        )

    def write() -> tuple[programs.ProgramRecord, bool]:
        with runtime.db.write() as connection:
            return programs.apply(connection, load_document(draft, program=program), actor=principal.key_id)

    record, changed = await run_in_threadpool(write)
    said = f"Applied: version {record.version} is in force." if changed else "Nothing changed: the same document."
    return _back(program, said)


@router.post("/admin/p/{program}/simulate", response_class=HTMLResponse)
async def simulate(program: str, request: Request) -> HTMLResponse:
    """The draft scored over the last ``days`` of stored events beside the version in force (nothing is
    written), its changes in words, with the draft kept in the editor."""
    _, fields, runtime = await posted(request, program, FORM_LIMIT)
    draft = fields.get("document", "")
    days = whole(fields, "days", low=1, high=366)
    errors = await run_in_threadpool(editor.check, draft, program)
    result = None
    if not errors:
        end = dt.datetime.now(dt.UTC)
        doc = load_document(draft, program=program)
        result = await run_in_threadpool(sim.run, runtime, program, doc, end - dt.timedelta(days=days), end)
    read = await run_in_threadpool(_program_page, runtime, program)
    return page(
        "admin_program.html",
        422 if errors else 200,
        **read | {"draft": draft, "errors": errors, "diff": editor.diff(read["document"], draft)},
        **page_context(request, None) | {"simulation": result, "days": days},
    )


@router.post("/admin/p/{program}/cases/{case_id}")
async def answer_case(program: str, case_id: int, request: Request) -> Response:
    principal, fields, runtime = await posted(request, program)
    amount = whole(fields, "amount", low=-(10**12), high=10**12) if fields.get("amount", "").strip() else None
    status: cases.Answer = "declined" if fields.get("decision") == "decline" else "resolved"

    def write() -> None:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            cases.answer(
                connection,
                record,
                runtime.programs.compiled(connection, record),
                case_id,
                status=status,
                reply=fields.get("reply", ""),
                actor=principal.key_id,
                currency=fields.get("currency") or None,
                amount=amount,
            )

    await run_in_threadpool(write)
    return _back(program, f"Case {case_id} {status}.")


@router.post("/admin/p/{program}/redemptions/{redemption_id}")
async def move_redemption(program: str, redemption_id: int, request: Request) -> Response:
    principal, fields, runtime = await posted(request, program)
    move = rewards.fulfil if fields.get("action") == "fulfil" else rewards.cancel

    def write() -> str:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            return str(move(connection, record, redemption_id, actor=principal.key_id)["status"])

    status = await run_in_threadpool(write)
    return _back(program, f"Redemption {redemption_id} {status}.")


@router.post("/admin/p/{program}/links", response_class=HTMLResponse)
async def make_link(program: str, request: Request) -> HTMLResponse:
    """A new link, shown on the page this once."""
    principal, fields, runtime = await posted(request, program)
    kind: links.Kind = "participant" if fields.get("kind") == "participant" else "tv"
    days = whole(fields, "days", low=1, high=366)

    def write() -> dict[str, Any]:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            return links.create(
                connection,
                record,
                runtime.programs.compiled(connection, record),
                kind=kind,
                participant=fields.get("participant", "").strip() or None,
                expires_in=days * 86400,
                options=links.TvOptions(top=whole(fields, "top", low=1, high=50)) if kind == "tv" else None,
                actor=principal.key_id,
            )

    made = await run_in_threadpool(write)
    read = await run_in_threadpool(_program_page, runtime, program)
    base = str(request.base_url).rstrip("/")
    return page(
        "admin_program.html",
        **read,
        draft=read["document"],
        errors=[],
        diff="",
        **page_context(request, None) | {"made": base + links.page_path(program, kind, made["token"])},
    )


@router.post("/admin/p/{program}/links/{link_id}/revoke")
async def revoke_link(program: str, link_id: str, request: Request) -> Response:
    principal, _, runtime = await posted(request, program)

    def write() -> None:
        with runtime.db.write() as connection:
            links.revoke(connection, programs.find(connection, program), link_id, actor=principal.key_id)

    await run_in_threadpool(write)
    return _back(program, f"Link {link_id} revoked.")


@router.get("/admin/p/{program}/participants", response_class=HTMLResponse)
async def participants_page(
    program: str,
    request: Request,
    q: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[str | None, Query(max_length=200)] = None,
    notice: Notice = None,
) -> HTMLResponse:
    """Participants by id, searchable by id or name, each with its events and forms: adjust, suspend, override
    the tier (a program with tiers), erase."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> tuple[list[dict[str, Any]], str | None, ProgramDocument]:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            found, last = listing.participants(connection, record.id, search=q or None, after=after, limit=50)
            return found, last, runtime.programs.compiled(connection, record).doc

    found, last, doc = await run_in_threadpool(read)
    following = f"/admin/p/{program}/participants?" + urlencode({"q": q or "", "after": last}) if last else None
    return page(
        "admin_participants.html",
        program=program,
        participants=found,
        q=q or "",
        following=following,
        currencies=[c.key for c in doc.currencies],
        tiers=[step.name for step in doc.tiers.steps] if doc.tiers else [],
        **page_context(request, notice),
    )


@router.post("/admin/p/{program}/adjustments")
async def adjust(program: str, request: Request) -> Response:
    """A manual credit or debit with its note (audited), as ``POST …/adjustments``."""
    principal, fields, runtime = await posted(request, program)
    amount = whole(fields, "amount", low=-(10**12), high=10**12)
    who = fields.get("participant", "")

    def write() -> None:
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            ledger.adjust(
                connection,
                record,
                runtime.programs.compiled(connection, record),
                participant=who,
                currency=fields.get("currency", ""),
                amount=amount,
                note=fields.get("note", "").strip() or "by the studio",
                actor=principal.key_id,
                idempotency_key=fields.get("key") or None,
            )

    await run_in_threadpool(write)
    said = f"Adjusted {who} by {amount:+,} {fields.get('currency', '')}."
    return RedirectResponse(
        f"/admin/p/{program}/participants?" + urlencode({"q": who, "notice": said}), status_code=303
    )


@router.post("/admin/p/{program}/participants/{participant}/status")
async def set_status(program: str, participant: str, request: Request) -> Response:
    """Suspend (earns and spends nothing, visibly) or reactivate a participant, with a note; audited."""
    principal, fields, runtime = await posted(request, program)
    status = "suspended" if fields.get("status") == "suspended" else "active"

    def write() -> None:
        note = fields.get("note", "").strip()
        if not note:
            raise Invalid("a note is needed", errors=[FieldError("note", "say why")])
        with runtime.db.write() as connection:
            record = programs.find(connection, program)
            participant_repository.set_status(
                connection, record.id, participant, status, note=note[:500], actor=principal.key_id
            )

    await run_in_threadpool(write)
    said = f"{participant} is {status}."
    return RedirectResponse(
        f"/admin/p/{program}/participants?" + urlencode({"q": participant, "notice": said}), status_code=303
    )


@router.get("/admin/p/{program}/events", response_class=HTMLResponse)
async def events_page(
    program: str,
    request: Request,
    participant: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    before: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    """The event explorer: newest first, by participant and type, each opening what it caused."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> tuple[list[dict[str, Any]], int | None]:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            return listing.events(
                connection, record.id, participant=participant or None, kind=type or None, before=before, limit=50
            )

    found, cursor = await run_in_threadpool(read)
    query = {"participant": participant or "", "type": type or ""}
    following = f"/admin/p/{program}/events?" + urlencode(query | {"before": cursor}) if cursor else None
    return page(
        "admin_events.html",
        program=program,
        events=found,
        query=query,
        following=following,
        **page_context(request, None),
    )


@router.get("/admin/p/{program}/events/{event_id}", response_class=HTMLResponse)
async def event_page(program: str, event_id: str, request: Request) -> HTMLResponse:
    """One event and everything it caused: ledger entries (rule and version), metrics, problems, notes."""
    await signed_in(request, program)
    runtime = runtime_of(request)

    def read() -> dict[str, Any]:
        with runtime.db.read() as connection:
            record = programs.find(connection, program)
            return explain_event(
                connection, record, lambda version: runtime.programs.compiled(connection, record, version), event_id
            )

    explained = await run_in_threadpool(read)
    return page("admin_event.html", program=program, event=explained, **page_context(request, None))
