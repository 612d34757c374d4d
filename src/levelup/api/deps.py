"""What every route needs: the runtime, the caller, and the program it may touch.

Authorization lives here once, as typed dependencies, not in each route.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import yaml
from fastapi import Depends, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from levelup.errors import FieldError, Invalid, TooLarge
from levelup.keys.service import Principal, authenticate, bootstrap
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.runtime import Runtime

MAX_BODY_BYTES = 8 * 1024 * 1024


async def get_runtime(request: Request) -> Runtime:  # async: a sync dependency costs a thread hop a request
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The caller. The bootstrap admin key is judged on the event loop; a stored key is looked up in a
    worker thread (a database read must not block the loop)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else None
    admin_key = os.environ.get("LEVELUP_ADMIN_KEY")
    found = bootstrap(presented, admin_key)
    if found is not None:
        return found

    def lookup() -> Principal:
        with runtime.db.read() as connection:
            return authenticate(connection, presented, admin_key)

    return await run_in_threadpool(lookup)


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
    """The request body as data: JSON, or YAML when the content type says so; bounded in size."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise TooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise TooLarge(f"request body larger than {MAX_BODY_BYTES} bytes")
    content_type = request.headers.get("content-type", "")
    if yaml_ok and "yaml" in content_type:
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise Invalid("body is not valid YAML", errors=[FieldError("(body)", str(exc))]) from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("body is not valid JSON", errors=[FieldError("(body)", str(exc))]) from None
