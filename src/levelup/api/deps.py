"""What every route needs: the runtime, the caller, and the program it may touch.

Authorization lives here once, as typed dependencies, not in each route.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Path, Query, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from levelup.errors import ID_PATTERN, ID_RULE, MAX_ID_LENGTH, MAX_INT, FieldError, Invalid, LevelupError, TooLarge
from levelup.keys.service import Principal, authenticate, bootstrap
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.validation import parse_text
from levelup.runtime import Runtime

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAGE_OFFSET = 10**9

# path and query values, bounded where they are declared so a bad one is a 422 naming it
IdPath = Annotated[
    str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN, description=f"an id: {ID_RULE}")
]
NumberPath = Annotated[int, Path(ge=1, le=MAX_INT)]
Cursor = Annotated[int | None, Query(ge=0, le=MAX_INT, description="a position from a previous page")]
Offset = Annotated[int, Query(ge=0, le=MAX_PAGE_OFFSET)]


async def get_runtime(request: Request) -> Runtime:  # async: a sync dependency costs a thread hop a request
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The caller. The bootstrap admin key is judged on the event loop; a stored key is looked up in a
    worker thread (a database read must not block the loop), and its use noted
    (:class:`levelup.keys.service.LastUsed`)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else None
    admin_key = os.environ.get("LEVELUP_ADMIN_KEY")
    found = bootstrap(presented, admin_key)
    if found is None:

        def lookup() -> Principal:
            with runtime.db.read() as connection:
                return authenticate(connection, presented, admin_key)

        found = await run_in_threadpool(lookup)
        request.app.state.key_use.note(found.key_id)  # written apart, at most once a minute a key
    await request.app.state.limiter.check(f"key:{found.key_id}")
    return found


PrincipalDep = Annotated[Principal, Depends(get_principal)]


@dataclass(frozen=True)
class ProgramAccess:
    """A program the caller may act on with at least the route's role."""

    runtime: Runtime
    principal: Principal
    key: str

    def record(self, connection: Connection) -> programs.ProgramRecord:
        return programs.find(connection, self.key)

    def compiled(self, connection: Connection, record: programs.ProgramRecord) -> CompiledProgram:
        return self.runtime.programs.compiled(connection, record)


def program_access(role: str) -> Callable[..., Awaitable[ProgramAccess]]:
    async def dependency(program: str, runtime: RuntimeDep, principal: PrincipalDep) -> ProgramAccess:
        principal.require(role, program)
        return ProgramAccess(runtime, principal, program)

    return dependency


ReadAccess = Annotated[ProgramAccess, Depends(program_access("read"))]
IngestAccess = Annotated[ProgramAccess, Depends(program_access("ingest"))]
AdminAccess = Annotated[ProgramAccess, Depends(program_access("admin"))]


async def read_body(request: Request, *, yaml_ok: bool = False) -> Any:
    """The request body as data: JSON, or (``yaml_ok``) a program document, JSON or YAML by content type.
    Its size is bounded by :class:`BoundedRequests`, on every route."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if yaml_ok:  # a program document: strict about duplicate keys, depth and aliases
        return parse_text(body, yaml_ok="yaml" in content_type)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("body is not valid JSON", errors=[FieldError("(body)", str(exc))]) from None


def seconds_setting(name: str, default: float) -> float:
    """A time-out from the environment, in seconds (above 0, below a day)."""
    value = float(os.environ.get(name, default))
    if not 0 < value < 86_400:
        raise ValueError(f"{name} must be a number of seconds above 0 and below a day, not {value!r}")
    return value


class BoundedRequests:
    """Refuses, before any route runs, what no route accepts: a NUL character in the path or the query
    string (no database stores it), an encoded "/" in the path, and a body larger than
    :data:`MAX_BODY_BYTES` on every route; and a body that has not all arrived ``LEVELUP_BODY_TIMEOUT``
    seconds (default 60) after the request's head (408, and the connection closed), so a client trickling
    its body cannot hold a request open. (Waiting for a disconnect after the body, as a stream does, is not
    bounded.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.body_seconds = seconds_setting("LEVELUP_BODY_TIMEOUT", 60)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _refusal(scope)
        if refused is not None:
            await _send_problem(refused, send)
            return
        received = 0
        deadline: float | None = asyncio.get_running_loop().time() + self.body_seconds  # None: the body is in
        too_slow = False

        async def bounded() -> Message:
            nonlocal received, deadline, too_slow
            if deadline is None:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                too_slow = True
                raise _BodyTooSlow(self.body_seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                deadline = None
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise _BodyTooLarge()
            return message

        async def closing(message: Message) -> None:
            if too_slow and message["type"] == "http.response.start":  # the rest of the body is not awaited
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, bounded, closing)
        except (_BodyTooLarge, _BodyTooSlow) as exc:
            await _send_problem(exc, closing)


class _BodyTooSlow(LevelupError):
    """Raised into the route reading the body when it is late; answered 408 and the connection closed."""

    status = 408
    title = "Request timeout"
    code = "request_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s")


class _BodyTooLarge(TooLarge):
    """Raised into the route reading the body; rendered by the app's handler, or here if it escapes."""

    def __init__(self) -> None:
        super().__init__(f"request body larger than {MAX_BODY_BYTES} bytes")


def _refusal(scope: Scope) -> LevelupError | None:
    raw_path = scope.get("raw_path") or scope["path"].encode()
    if b"\x00" in raw_path or b"%00" in raw_path or "\x00" in scope["path"]:
        return Invalid("invalid path", errors=[FieldError("(path)", "contains a NUL character")])
    if b"%2f" in raw_path.lower():  # no id holds a "/": decoded, it would name another route (or redirect)
        return Invalid("invalid path", errors=[FieldError("(path)", 'an id contains "/"')])
    query: bytes = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        return Invalid("invalid query string", errors=[FieldError("(query)", "contains a NUL character")])
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            return TooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
    return None


async def _send_problem(error: LevelupError, send: Send) -> None:
    body = orjson.dumps(error.problem())
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
