"""Clawback: an admin takes back what a (flagged) event or kudos paid, audited, never silently."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, IdPath, NumberPath
from levelup.api.responses import Out, as_is
from levelup.errors import Text
from levelup.events import clawback as events
from levelup.kudos import service as kudos

router = APIRouter(tags=["events"])


class ClawbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = Field(min_length=1, max_length=500, description="why: kept in the audit log (and an event's reversal)")


class ClawedBack(Out):
    """What a clawback answers, of an event or of a kudos."""

    status: str = Field(description="accepted; duplicate: clawed back before, nothing changed")
    clawback: str = Field(
        description="what took it back: the reversal event clawback:<event>, or the ledger entry kudos-clawback:<id>"
    )
    participant: str = Field(description="who was debited")
    reason: str = Field(description="always clawback")
    note: str
    by: str = Field(description="the API key that clawed it back")
    at: str
    taken: dict[str, int] = Field(description="per currency: what the clawback booked (negative)")


class Clawback(ClawedBack):
    event: str = Field(description="the event clawed back")


class KudosClawback(ClawedBack):
    kudos: int = Field(description="the kudos clawed back")
    giver: str = Field(description="who gave the kudos (their budget is not given back)")


def _answered(model: type[ClawedBack], made: dict[str, Any]) -> Response:
    return as_is(model, made, 200 if made["status"] == "duplicate" else 201)


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
    return _answered(
        Clawback, events.clawback(access.runtime, access.key, event_id, note=body.note, actor=access.principal.key_id)
    )


@router.post(
    "/programs/{program}/kudos/{kudos_id}/clawback",
    status_code=201,
    response_model=KudosClawback,
    responses={200: {"model": KudosClawback, "description": "already clawed back: the first clawback, unchanged"}},
    tags=["kudos"],
)
def post_kudos_clawback(access: AdminAccess, kudos_id: NumberPath, body: ClawbackIn) -> Response:
    """Take back from the receiver what a kudos paid (a ``kudos_ring`` flag lists them): a ledger entry of
    kind ``clawback`` and an audit entry naming the key, in one transaction: 201; 200 if it was clawed back
    before; 404 for a kudos the program does not have. The giver's budget is not given back; what the
    receiver already spent becomes arrears."""
    return _answered(
        KudosClawback,
        kudos.claw_back(access.runtime, access.key, kudos_id, note=body.note, actor=access.principal.key_id),
    )
