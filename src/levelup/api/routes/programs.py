"""Program documents: apply a new version, read the one in force, and the JSON Schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from levelup.api.deps import AdminAccess, ReadAccess, read_body
from levelup.programs import service as programs
from levelup.programs.document import ProgramDocument
from levelup.programs.validation import validate_document
from levelup.rules.catalog import how_to_play

router = APIRouter(tags=["programs"])

DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "/api/v1/schema/program"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.put("/programs/{program}", openapi_extra=DOCUMENT_BODY)
async def put_program(access: AdminAccess, request: Request, response: Response) -> dict[str, Any]:
    """Apply a document (JSON, or YAML with ``Content-Type: application/yaml``): 201 new, 200 updated or unchanged."""
    data = await read_body(request, yaml_ok=True)
    doc = validate_document(data, program=access.key)

    def apply() -> tuple[programs.ProgramRecord, bool]:
        with access.runtime.db.write() as connection:
            return programs.apply(connection, doc, actor=access.principal.key_id)

    record, changed = await run_in_threadpool(apply)
    response.status_code = 201 if changed and record.version == 1 else 200
    return {"program": record.key, "version": record.version, "changed": changed}


@router.get("/programs/{program}")
def get_program(access: ReadAccess, version: int | None = None) -> dict[str, Any]:
    """The document in force (or ``?version=``) and its version."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return {
            "program": record.key,
            "version": version or record.version,
            "current_version": record.version,
            "document": programs.document_of(connection, record, version),
        }


@router.get("/programs/{program}/rules")
def get_rules(access: ReadAccess) -> dict[str, Any]:
    """How the game works, in plain language: every way to earn, with caps and cooldowns."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return how_to_play(access.compiled(connection, record))


schema_router = APIRouter(tags=["programs"])


@schema_router.get("/schema/program")
def program_schema() -> dict[str, Any]:
    """The JSON Schema of a program document (no key needed: it is public)."""
    return ProgramDocument.model_json_schema(by_alias=True)
