"""Clawback: an admin takes back a (flagged) event's awards, as an audited reversal."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, IdPath
from levelup.api.responses import Out, as_is
from levelup.errors import Text
from levelup.events import clawback as service

router = APIRouter(tags=["events"])


class ClawbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = Field(min_length=1, max_length=500, description="why: kept in the audit log and on the reversal")


class Clawback(Out):
    status: str = Field(description="accepted; duplicate: the event was clawed back before, nothing changed")
    event: str = Field(description="the event clawed back")
    clawback: str = Field(description="the reversal event that took its awards back: clawback:<event>")
    participant: str
    reason: str = Field(description="always clawback")
    note: str
    by: str = Field(description="the API key that clawed it back")
    at: str
    taken: dict[str, int] = Field(description="per currency: what the reversal booked (negative)")


@router.post(
    "/programs/{program}/events/{event_id}/clawback",
    status_code=201,
    response_model=Clawback,
    responses={200: {"model": Clawback, "description": "already clawed back: the first clawback, unchanged"}},
)
def post_clawback(access: AdminAccess, event_id: IdPath, body: ClawbackIn) -> Response:
    """Take back what an event paid, with a reversal of reason ``clawback`` (its entries say so in the
    ledger) and an audit entry naming the key, in one transaction: 201; 200 if it was clawed back before;
    409 if the CRM already reversed it."""
    made = service.clawback(access.runtime, access.key, event_id, note=body.note, actor=access.principal.key_id)
    return as_is(Clawback, made, 200 if made["status"] == "duplicate" else 201)
