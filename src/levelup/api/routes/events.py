"""POST events (one or a batch) and GET an event with everything it caused."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from levelup.api.deps import IngestAccess, ReadAccess, read_body
from levelup.errors import FieldError, Invalid, TooLarge
from levelup.events.ingest import ingest
from levelup.events.schema import MAX_BATCH
from levelup.events.service import explain_event

router = APIRouter(tags=["events"])

EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {
                            "type": "object",
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "maxItems": MAX_BATCH,
                                    "items": {"$ref": "#/components/schemas/EventIn"},
                                }
                            },
                            "required": ["events"],
                        },
                    ]
                }
            }
        },
    }
}


@router.post("/programs/{program}/events", openapi_extra=EVENT_BODY)
async def post_events(access: IngestAccess, request: Request) -> dict[str, Any]:
    """One event (200, 409 for a conflicting id, 422 if invalid) or ``{"events": [...]}`` (200, one result each)."""
    body = await read_body(request)
    if isinstance(body, dict) and set(body) == {"events"}:
        batch = body["events"]
        if not isinstance(batch, list):
            raise Invalid("events must be a list", errors=[FieldError("events", "expected a list")])
        if len(batch) > MAX_BATCH:
            raise TooLarge(f"at most {MAX_BATCH} events a batch", errors=[FieldError("events", f"{len(batch)} events")])
        outcomes = await run_in_threadpool(ingest, access.runtime, access.key, batch)
        return {"results": [o.as_dict() for o in outcomes]}
    outcome = (await run_in_threadpool(ingest, access.runtime, access.key, [body]))[0]
    if outcome.error is not None:
        raise outcome.error
    return outcome.as_dict()


@router.get("/programs/{program}/events/{event_id}")
def get_event(access: ReadAccess, event_id: str) -> dict[str, Any]:
    """The event, its ledger entries (rule and version), metric contributions, problems and notes."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return explain_event(
            connection, record, lambda version: access.runtime.programs.compiled(connection, record, version), event_id
        )
