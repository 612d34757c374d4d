"""Peer recognition within a periodic budget (an admin's clawback of one kudos: ``routes.clawback``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import IngestAccess
from levelup.api.responses import Out
from levelup.errors import ExternalId, Text
from levelup.kudos.service import give

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
