"""POST events (one or a batch) and GET an event with everything it caused.

POSTs go through the process's group commit (:mod:`levelup.events.group_commit`): concurrent
requests to a program share one transaction, each answered once it committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request, Response
from pydantic import Field

from levelup import listing
from levelup.api.deps import Cursor, IdPath, IngestAccess, ReadAccess, read_body
from levelup.api.responses import Out, as_is
from levelup.errors import FieldError, Invalid, TooLarge
from levelup.events.explain import explain_event
from levelup.events.group_commit import group_commit
from levelup.events.schema import MAX_BATCH


class Award(Out):
    currency: str
    amount: int
    rule: str | None


class FieldProblem(Out):
    path: str
    message: str


class EventResult(Out):
    """One event's outcome: ``awards`` when accepted or a duplicate, ``errors`` when rejected."""

    id: str
    status: Literal["accepted", "duplicate", "rejected"]
    awards: list[Award] | None = None
    errors: list[FieldProblem] | None = None


class BatchResults(Out):
    results: list[EventResult]


class Entry(Out):
    currency: str
    amount: int
    kind: str
    rule: str | None
    rule_version: int | None
    explain: str


class MetricContribution(Out):
    """What the event added to a metric: ``period`` and ``delta`` (count, sum), or ``day`` and ``value`` (max,
    distinct)."""

    metric: str
    period: str | None = None
    delta: float | None = None
    day: str | None = None
    value: float | None = None


class EventExplained(Out):
    id: str
    type: str
    participant: str
    occurred_at: str
    received_at: str
    data: dict[str, Any]
    reverses: str | None
    reversed_by: str | None
    program_version: int
    teams: list[str]
    entries: list[Entry]
    awards: list[Award]
    metrics: list[MetricContribution]
    problems: list[dict[str, Any]]
    notes: list[str]


@asynccontextmanager
async def _finish_groups(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, answer every request still waiting for its group before the loop goes away."""
    yield
    current = getattr(app.state, "group_commit", None)
    if current is not None and current.loop is asyncio.get_running_loop():
        await current.close()


router = APIRouter(tags=["events"], lifespan=_finish_groups)

OVERLOADED: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Too many events waiting to be ingested, or the server is stopping: nothing was "
        "ingested; retry after the `Retry-After` seconds.",
        "content": {"application/problem+json": {}},
    }
}

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


@router.post(
    "/programs/{program}/events",
    openapi_extra=EVENT_BODY,
    response_model=EventResult | BatchResults,
    responses=OVERLOADED,
)
async def post_events(access: IngestAccess, request: Request) -> Response:
    """One event (200, 409 for a conflicting id, 422 if invalid) or ``{"events": [...]}`` (200, one result each);
    503 with ``Retry-After`` when too much is waiting."""
    body = await read_body(request)
    single = not (isinstance(body, dict) and set(body) == {"events"})
    events = [body] if single else body["events"]
    if not isinstance(events, list):
        raise Invalid("events must be a list", errors=[FieldError("events", "expected a list")])
    if len(events) > MAX_BATCH:
        raise TooLarge(f"at most {MAX_BATCH} events a batch", errors=[FieldError("events", f"{len(events)} events")])
    outcomes = await group_commit(request.app.state).submit(access.key, events)  # Overloaded: 503, Retry-After
    if not single:
        return as_is(BatchResults, {"results": [o.as_dict() for o in outcomes]})
    if outcomes[0].error is not None:
        raise outcomes[0].error
    return as_is(EventResult, outcomes[0].as_dict())


class EventItem(Out):
    id: str
    type: str
    participant: str
    occurred_at: str
    received_at: str
    reverses: str | None


class EventPage(Out):
    events: list[EventItem]
    next: str | None = Field(description="the URL of the next page, or null on the last")


@router.get("/programs/{program}/events", response_model=EventPage)
def list_events(
    access: ReadAccess,
    participant: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    before: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = 50,
) -> Response:
    """Events newest first (in the order received), of a participant and a type if given; ``next`` is the
    URL of the next page, or null."""
    with access.runtime.db.read() as connection:
        page, last = listing.events(
            connection, access.record(connection).id, participant=participant, kind=type, before=before, limit=limit
        )
    query = urlencode({k: v for k, v in {"participant": participant, "type": type, "before": last}.items() if v})
    following = f"/api/v1/programs/{access.key}/events?{query}&limit={limit}" if last is not None else None
    return as_is(EventPage, {"events": page, "next": following})


@router.get("/programs/{program}/events/{event_id}", response_model=EventExplained)
def get_event(access: ReadAccess, event_id: IdPath) -> Response:
    """The event, its ledger entries (rule and version), metric contributions, problems and notes."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        explained = explain_event(
            connection, record, lambda version: access.runtime.programs.compiled(connection, record, version), event_id
        )
    return as_is(EventExplained, explained)
