"""The rewards catalog, redemptions, and the liability report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, IngestAccess, NumberPath, ReadAccess
from levelup.api.responses import Out, as_is
from levelup.errors import MAX_INT, ExternalId, Text
from levelup.ledger.liability import liability
from levelup.programs.document import Reward
from levelup.rewards import service as rewards

router = APIRouter(tags=["rewards"])


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant: ExternalId
    reward: Text = Field(min_length=1, max_length=64)
    idempotency_key: ExternalId


class Reason(Out):
    code: Literal[
        "insufficient_balance",
        "out_of_stock",
        "limit_reached",
        "requirement_unmet",
        "not_active",
        "participant_suspended",
    ]
    message: str


class CatalogReward(Reward):
    """The reward as the program defines it, with its stock and, for a participant, whether they can redeem it."""

    remaining: int | None = Field(description="stock left; null without a stock")
    active: bool = Field(description="within its starts..ends dates")
    can_redeem: bool | None = Field(default=None, description="with ?participant=")
    reason: Reason | None = Field(default=None, description="with ?participant=, when they cannot redeem it")


class Catalog(Out):
    program: str
    rewards: list[CatalogReward]


class Redemption(Out):
    id: int
    participant: str
    reward: str
    cost: dict[str, int]
    status: Literal["pending", "fulfilled", "cancelled"]
    idempotency_key: str
    created_at: str
    updated_at: str


class RedemptionPage(Out):
    redemptions: list[Redemption] = Field(description="oldest first")
    next_after: int | None = Field(description="pass as ?after= for the next page; null on the last")


class CurrencyLiability(Out):
    currency: str
    outstanding: int = Field(description="available points held")
    spendable: int
    pending: int
    arrears: int
    holders: int = Field(description="participants holding any")
    expiring: dict[str, int] = Field(description="expiring within 30d, 90d…")
    redeemed_by_month: dict[str, int]
    expired_by_month: dict[str, int]


class Liability(Out):
    program: str
    as_of: str
    currencies: list[CurrencyLiability]


@router.get("/programs/{program}/rewards", response_model=Catalog)
def get_rewards(access: ReadAccess, participant: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """The catalog with remaining stock; ``?participant=`` adds ``can_redeem`` and the reason why not."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        found = rewards.catalog(connection, record, access.compiled(connection, record), participant=participant)
    return as_is(Catalog, found)


@router.post(
    "/programs/{program}/redemptions",
    status_code=201,
    response_model=Redemption,
    responses={200: {"model": Redemption, "description": "the same redemption, for a retried key"}},
)
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


@router.post("/programs/{program}/redemptions/{redemption_id}/fulfil", response_model=Redemption)
def fulfil_redemption(access: AdminAccess, redemption_id: NumberPath) -> dict[str, Any]:
    with access.runtime.db.write() as connection:
        return rewards.fulfil(connection, access.record(connection), redemption_id, actor=access.principal.key_id)


@router.post("/programs/{program}/redemptions/{redemption_id}/cancel", response_model=Redemption)
def cancel_redemption(access: AdminAccess, redemption_id: NumberPath) -> dict[str, Any]:
    """Refund into the lots the cost came from (they keep their expiry) and put the stock back."""
    with access.runtime.db.write() as connection:
        return rewards.cancel(connection, access.record(connection), redemption_id, actor=access.principal.key_id)


@router.get("/programs/{program}/redemptions", response_model=RedemptionPage)
def get_redemptions(
    access: ReadAccess,
    participant: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Response:
    with access.runtime.db.read() as connection:
        page = rewards.list_redemptions(
            connection, access.record(connection), participant=participant, status=status, limit=limit, after=after
        )
    return as_is(RedemptionPage, page)


@router.get("/programs/{program}/reports/liability", response_model=Liability)
def get_liability(access: AdminAccess) -> Response:
    """Outstanding, spendable, pending, arrears and expiring per spendable currency; redeemed and expired by month."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        report = liability(connection, record, access.compiled(connection, record))
    return as_is(Liability, report)
