"""Participants, teams, their ledgers and manual adjustments."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, IngestAccess, ReadAccess
from levelup.ledger import lots
from levelup.ledger import service as ledger
from levelup.participants import repository as participants
from levelup.participants.service import profile
from levelup.tiers import service as tier_service

router = APIRouter(tags=["participants"])


class ParticipantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    teams: list[str] | None = Field(default=None, max_length=100)
    attributes: dict[str, Any] | None = Field(default=None, max_length=100)


class TierOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: str | None = Field(description="the tier to hold; null lifts the override")
    until: dt.datetime | None = None
    note: str = Field(min_length=1, max_length=500)


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "suspended"]
    note: str = Field(min_length=1, max_length=500)


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant: str = Field(min_length=1, max_length=200)
    currency: str = Field(min_length=1, max_length=64)
    amount: int = Field(ge=-(10**12), le=10**12)
    note: str = Field(min_length=1, max_length=500)
    idempotency_key: str | None = Field(default=None, max_length=200)


@router.put("/programs/{program}/participants/{participant_id}")
def put_participant(
    access: IngestAccess, participant_id: str, body: ParticipantIn, response: Response
) -> dict[str, Any]:
    """Create or update a participant: 201 created, 200 updated. Omitted fields are kept."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        created = participants.set_profile(
            connection, record.id, participant_id, name=body.name, teams=body.teams, attributes=body.attributes
        )
        response.status_code = 201 if created else 200
        return profile(connection, record, access.compiled(connection, record), participant_id)


@router.get("/programs/{program}/participants/{participant_id}")
def get_participant(access: ReadAccess, participant_id: str) -> dict[str, Any]:
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        return profile(connection, record, access.compiled(connection, record), participant_id)


@router.get("/programs/{program}/participants/{participant_id}/ledger")
def get_ledger(access: ReadAccess, participant_id: str, before: int | None = None, limit: int = 50) -> dict[str, Any]:
    """Entries newest first; ``next`` is the URL of the next page, or null."""
    limit = max(1, min(limit, ledger.MAX_PAGE))
    with access.runtime.db.read() as connection:
        entries, cursor = ledger.entries(
            connection, access.record(connection), participant_id, before=before, limit=limit
        )
    base = f"/api/v1/programs/{access.key}/participants/{participant_id}/ledger"
    return {"entries": entries, "next": f"{base}?before={cursor}&limit={limit}" if cursor else None}


@router.get("/programs/{program}/participants/{participant_id}/expiring")
def get_expiring(access: ReadAccess, participant_id: str) -> dict[str, Any]:
    """Spendable points by expiry date, soonest first."""
    now = dt.datetime.now(dt.UTC)
    with access.runtime.db.read() as connection:
        found = participants.find_id(connection, access.record(connection).id, participant_id)
        rows = lots.expiring(connection, found, now)
    return {
        "participant": participant_id,
        "as_of": now.isoformat(),
        "expiring": rows,
    }


@router.put("/programs/{program}/participants/{participant_id}/tier")
def put_tier(access: AdminAccess, participant_id: str, body: TierOverrideIn) -> dict[str, Any]:
    """Override a participant's tier (until a time, or until lifted with ``tier: null``); audited."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        return tier_service.set_override(
            connection,
            record.id,
            access.compiled(connection, record),
            participant_id,
            tier=body.tier,
            until=body.until,
            note=body.note,
            actor=access.principal.key_id,
        )


@router.put("/programs/{program}/participants/{participant_id}/status")
def put_status(access: AdminAccess, participant_id: str, body: StatusIn) -> dict[str, Any]:
    """Suspend (earns and spends nothing, visibly) or reactivate a participant; audited."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        participants.set_status(
            connection, record.id, participant_id, body.status, note=body.note, actor=access.principal.key_id
        )
        return profile(connection, record, access.compiled(connection, record), participant_id)


@router.put("/programs/{program}/teams/{team_id}")
def put_team(access: IngestAccess, team_id: str, body: TeamIn) -> dict[str, Any]:
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        participants.set_team(connection, record.id, team_id, name=body.name)
    return {"id": team_id, "name": body.name}


@router.post("/programs/{program}/adjustments", status_code=201)
def post_adjustment(access: AdminAccess, body: AdjustmentIn) -> dict[str, Any]:
    """A manual credit or debit, audited; a debit never takes the balance below zero (409)."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        return ledger.adjust(
            connection,
            record,
            access.compiled(connection, record),
            participant=body.participant,
            currency=body.currency,
            amount=body.amount,
            note=body.note,
            actor=access.principal.key_id,
            idempotency_key=body.idempotency_key,
        )
