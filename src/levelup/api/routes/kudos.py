"""Peer recognition within a periodic budget, and an admin's clawback of what one kudos paid."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, IngestAccess, NumberPath
from levelup.api.responses import Out, as_is
from levelup.errors import ExternalId, Text
from levelup.kudos.service import claw_back, give

router = APIRouter(tags=["kudos"])


class KudosIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    giver: ExternalId = Field(alias="from")
    to: ExternalId
    amount: int = Field(ge=1, le=10**9, strict=True)
    message: Text = Field(min_length=1, max_length=500)
    idempotency_key: ExternalId | None = None


class KudosGiven(Out):
    id: int
    status: Literal["accepted", "duplicate"]
    period: str | None = Field(default=None, description="the budget period (absent for a duplicate)")
    budget_left: int | None = Field(default=None, description="what the giver has left (absent for a duplicate)")


@router.post("/programs/{program}/kudos", status_code=201, response_model=KudosGiven, response_model_exclude_unset=True)
def post_kudos(access: IngestAccess, body: KudosIn) -> dict[str, Any]:
    """``{from, to, amount, message}``: 409 ``kudos_budget`` past the giver's budget, 422 to oneself."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        return give(
            connection,
            record,
            access.compiled(connection, record),
            giver=body.giver,
            receiver=body.to,
            amount=body.amount,
            message=body.message,
            idempotency_key=body.idempotency_key,
        )


class KudosClawbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = Field(min_length=1, max_length=500, description="why: kept in the audit log")


class KudosClawback(Out):
    status: str = Field(description="accepted; duplicate: the kudos was clawed back before, nothing changed")
    kudos: int = Field(description="the kudos clawed back")
    clawback: str = Field(description="the key of the ledger entry that took it back: kudos-clawback:<id>")
    giver: str = Field(description="who gave the kudos (their budget is not given back)")
    participant: str = Field(description="who received it, and was debited")
    reason: str = Field(description="always clawback")
    note: str
    by: str = Field(description="the API key that clawed it back")
    at: str
    taken: dict[str, int] = Field(description="per currency: what the clawback booked (negative)")


@router.post(
    "/programs/{program}/kudos/{kudos_id}/clawback",
    status_code=201,
    response_model=KudosClawback,
    responses={200: {"model": KudosClawback, "description": "already clawed back: the first clawback, unchanged"}},
)
def post_kudos_clawback(access: AdminAccess, kudos_id: NumberPath, body: KudosClawbackIn) -> Response:
    """Take back from the receiver what a kudos paid (a ``kudos_ring`` flag lists them): a ledger entry of
    kind ``clawback`` and an audit entry naming the key, in one transaction: 201; 200 if it was clawed back
    before; 404 for a kudos the program does not have. The giver's budget is not given back; what the
    receiver already spent becomes arrears."""
    made = claw_back(access.runtime, access.key, kudos_id, note=body.note, actor=access.principal.key_id)
    return as_is(KudosClawback, made, 200 if made["status"] == "duplicate" else 201)
