"""The rewards catalog, redemptions, and the liability report."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, IngestAccess, ReadAccess
from levelup.ledger.liability import liability
from levelup.rewards import service as rewards

router = APIRouter(tags=["rewards"])


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant: str = Field(min_length=1, max_length=200)
    reward: str = Field(min_length=1, max_length=64)
    idempotency_key: str = Field(min_length=1, max_length=200)


@router.get("/programs/{program}/rewards")
def get_rewards(access: ReadAccess, participant: str | None = None) -> dict[str, Any]:
    """The catalog with remaining stock; ``?participant=`` adds ``can_redeem`` and the reason why not."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return rewards.catalog(connection, record, access.compiled(connection, record), participant=participant)


@router.post("/programs/{program}/redemptions", status_code=201)
def post_redemption(access: IngestAccess, body: RedemptionIn, response: Response) -> dict[str, Any]:
    """201 with the redemption (status pending, cost debited); 200 with the same one for a retried key;
    409 problem+json with ``code`` insufficient_balance, out_of_stock, limit_reached, requirement_unmet,
    not_active, participant_suspended or idempotency_conflict."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        made, created = rewards.redeem(
            connection,
            record,
            access.compiled(connection, record),
            participant=body.participant,
            reward_key=body.reward,
            idempotency_key=body.idempotency_key,
        )
    response.status_code = 201 if created else 200
    return made


@router.post("/programs/{program}/redemptions/{redemption_id}/fulfil")
def fulfil_redemption(access: AdminAccess, redemption_id: int) -> dict[str, Any]:
    with access.runtime.db.write() as connection:
        return rewards.fulfil(connection, access.record(connection), redemption_id)


@router.post("/programs/{program}/redemptions/{redemption_id}/cancel")
def cancel_redemption(access: AdminAccess, redemption_id: int) -> dict[str, Any]:
    """Refund into the lots the cost came from (they keep their expiry) and put the stock back."""
    with access.runtime.db.write() as connection:
        return rewards.cancel(connection, access.record(connection), redemption_id)


@router.get("/programs/{program}/redemptions")
def get_redemptions(
    access: ReadAccess, participant: str | None = None, status: str | None = None, limit: int = 100, after: int = 0
) -> dict[str, Any]:
    with access.runtime.db.read() as connection:
        return rewards.list_redemptions(
            connection, access.record(connection), participant=participant, status=status, limit=limit, after=after
        )


@router.get("/programs/{program}/reports/liability")
def get_liability(access: AdminAccess) -> dict[str, Any]:
    """Outstanding, spendable, pending, arrears and expiring per spendable currency; redeemed and expired by month."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return liability(connection, record, access.compiled(connection, record))
