"""Participants, teams, their ledgers and manual adjustments."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from levelup import listing
from levelup.api.deps import AdminAccess, Cursor, IdPath, IngestAccess, ReadAccess
from levelup.api.responses import Out, as_is
from levelup.api.routes.challenges import YourProgress
from levelup.errors import ExternalId, Text
from levelup.events.schema import BoundedData, in_event_range
from levelup.ledger import lots
from levelup.ledger import service as ledger
from levelup.participants import erasure, visibility
from levelup.participants import repository as participants
from levelup.participants.profile import profile
from levelup.tiers import service as tier_service

router = APIRouter(tags=["participants"])


class ParticipantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text | None = Field(default=None, max_length=200)
    teams: list[ExternalId] | None = Field(default=None, max_length=100)
    attributes: BoundedData | None = Field(default=None, max_length=100, description="at most 64 KiB as JSON")


class TierOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: Text | None = Field(max_length=100, description="the tier to hold; null lifts the override")
    until: Annotated[dt.datetime, AfterValidator(in_event_range)] | None = Field(
        default=None, description="RFC 3339 with an offset, before 3000"
    )
    note: Text = Field(min_length=1, max_length=500)


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "suspended"]
    note: Text = Field(min_length=1, max_length=500)


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)


class Level(Out):
    name: str
    next: str | None
    progress: float = Field(description="0..1 from this level to the next")
    value: float = Field(description="what levels climb on: lifetime earned, or the metric's all-time value")
    next_at: int | None


class TierOverride(Out):
    tier: str
    until: str | None
    note: str | None


class TierStanding(Out):
    name: str
    metric: str
    window: str
    value: float = Field(description="the qualifying value over the window")
    since: str | None
    next: str | None
    needed: float | None = Field(description="what the next tier still needs")
    lost_on: str | None = Field(description="the first day this tier would be lost if nothing else happened")
    demotion: str
    override: TierOverride | None
    multiplier: dict[str, float]


class BadgeHeld(Out):
    key: str
    grade: str
    period: str
    awarded_at: str
    event: str = Field(description="the event that earned it")


class CriterionProgress(Out):
    metric: str
    window: str
    value: float
    at_least: float


class BadgeProgress(Out):
    key: str
    next_grade: str
    period: str
    criteria: list[CriterionProgress]


class StreakProgress(Out):
    key: str
    current: int
    best: int
    period: str


class ChallengeProgress(YourProgress):
    """A goal or quest of the current period and the participant's progress on it; ``draft`` only when true."""

    key: str
    kind: str
    period: str
    draft: bool | None = None


class Profile(Out):
    id: str
    name: str | None
    teams: list[str]
    attributes: dict[str, Any] | None
    status: Literal["active", "suspended"]
    balances: dict[str, int] = Field(description="spendable (available) per currency of the program")
    arrears: dict[str, int] = Field(description="per currency, only where not zero")
    level: Level | None
    tier: TierStanding | None
    badges: list[BadgeHeld]
    badge_progress: list[BadgeProgress]
    streaks: list[StreakProgress]
    challenges: list[ChallengeProgress]


class LedgerEntry(Out):
    id: int
    currency: str
    amount: int
    kind: str
    rule: str | None
    rule_version: int | None
    event: str | None
    explain: str | None
    at: str


class LedgerPage(Out):
    entries: list[LedgerEntry] = Field(description="newest first")
    next: str | None = Field(description="the URL of the next page; null on the last")


class ExpiringAmount(Out):
    currency: str
    amount: int
    expires_at: str


class Expiring(Out):
    participant: str
    as_of: str
    expiring: list[ExpiringAmount] = Field(description="soonest first")


class Team(Out):
    id: str
    name: str


class Adjustment(Out):
    id: int = Field(description="the ledger entry")
    status: Literal["accepted", "duplicate"]


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    participant: ExternalId
    currency: Text = Field(min_length=1, max_length=64)
    amount: int = Field(ge=-(10**12), le=10**12, strict=True)
    note: Text = Field(min_length=1, max_length=500)
    idempotency_key: ExternalId | None = None


class ParticipantItem(Out):
    id: str
    name: str | None
    status: Literal["active", "suspended"]


class ParticipantPage(Out):
    participants: list[ParticipantItem]
    next: str | None = Field(description="the URL of the next page, or null on the last")


@router.get("/programs/{program}/participants", response_model=ParticipantPage)
def list_participants(
    access: ReadAccess,
    q: Annotated[Text | None, Query(max_length=200, description="part of the id or name, any case")] = None,
    after: Annotated[Text | None, Query(max_length=200, description="the last id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_PAGE)] = 50,
) -> Response:
    """Participants by id, searchable; ``next`` is the URL of the next page, or null."""
    with access.runtime.db.read() as connection:
        page, last = listing.participants(connection, access.record(connection).id, search=q, after=after, limit=limit)
    query = urlencode({k: v for k, v in (("q", q), ("after", last), ("limit", limit)) if v is not None})
    following = f"/api/v1/programs/{access.key}/participants?{query}" if last is not None else None
    return as_is(ParticipantPage, {"participants": page, "next": following})


@router.put(
    "/programs/{program}/participants/{participant_id}",
    response_model=Profile,
    responses={201: {"model": Profile, "description": "created"}},
)
def put_participant(access: IngestAccess, participant_id: IdPath, body: ParticipantIn) -> Response:
    """Create or update a participant: 201 created, 200 updated. Omitted fields are kept."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        created = participants.set_profile(
            connection, record.id, participant_id, name=body.name, teams=body.teams, attributes=body.attributes
        )
        found = profile(connection, record, access.compiled(connection, record), participant_id)
    return as_is(Profile, found, 201 if created else 200)


@router.get("/programs/{program}/participants/{participant_id}", response_model=Profile)
def get_participant(access: ReadAccess, participant_id: IdPath) -> Response:
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        found = profile(connection, record, access.compiled(connection, record), participant_id)
    return as_is(Profile, found)


@router.get("/programs/{program}/participants/{participant_id}/ledger", response_model=LedgerPage)
def get_ledger(
    access: ReadAccess,
    participant_id: IdPath,
    before: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=ledger.MAX_PAGE)] = 50,
) -> Response:
    """Entries newest first; ``next`` is the URL of the next page, or null."""
    with access.runtime.db.read() as connection:
        entries, cursor = ledger.entries(
            connection, access.record(connection), participant_id, before=before, limit=limit
        )
    base = f"/api/v1/programs/{access.key}/participants/{participant_id}/ledger"
    return as_is(LedgerPage, {"entries": entries, "next": f"{base}?before={cursor}&limit={limit}" if cursor else None})


@router.get("/programs/{program}/participants/{participant_id}/expiring", response_model=Expiring)
def get_expiring(access: ReadAccess, participant_id: IdPath) -> dict[str, Any]:
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


@router.put("/programs/{program}/participants/{participant_id}/tier", response_model=TierStanding)
def put_tier(access: AdminAccess, participant_id: IdPath, body: TierOverrideIn) -> Response:
    """Override a participant's tier (until a time, or until lifted with ``tier: null``); audited."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        standing = tier_service.set_override(
            connection,
            record.id,
            access.compiled(connection, record),
            participant_id,
            tier=body.tier,
            until=body.until,
            note=body.note,
            actor=access.principal.key_id,
        )
    return as_is(TierStanding, standing)


@router.put("/programs/{program}/participants/{participant_id}/status", response_model=Profile)
def put_status(access: AdminAccess, participant_id: IdPath, body: StatusIn) -> Response:
    """Suspend (earns and spends nothing, visibly) or reactivate a participant; audited."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        participants.set_status(
            connection, record.id, participant_id, body.status, note=body.note, actor=access.principal.key_id
        )
        found = profile(connection, record, access.compiled(connection, record), participant_id)
    return as_is(Profile, found)


class Erasure(Out):
    participant: str = Field(description="the pseudonym the participant has from now on")
    rewritten: dict[str, int] = Field(description="stored rows rewritten, per table (empty: erased before)")


@router.delete("/programs/{program}/participants/{participant_id}", response_model=Erasure)
def delete_participant(access: AdminAccess, participant_id: IdPath) -> Response:
    """Erase a participant: pseudonymised everywhere, every balance and the liability unchanged; audited
    without the erased values. A later event for the old id makes a new participant (docs/security.md)."""
    with access.runtime.db.write() as connection:
        done = erasure.erase(connection, access.record(connection).id, participant_id, actor=access.principal.key_id)
    return as_is(Erasure, {"participant": done.participant, "rewritten": done.rewritten})


class VisibilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hidden: bool = Field(description="true: masked on public boards (TV screens), still scored and ranked")


class Visibility(Out):
    participant: str
    hidden: bool


@router.put("/programs/{program}/participants/{participant_id}/visibility", response_model=Visibility)
def put_visibility(access: IngestAccess, participant_id: IdPath, body: VisibilityIn) -> dict[str, Any]:
    """Opt a participant out of (or back into) public boards: their row keeps its rank, with id and name masked."""
    with access.runtime.db.write() as connection:
        hidden = visibility.set_hidden(connection, access.record(connection).id, participant_id, body.hidden)
    return {"participant": participant_id, "hidden": hidden}


@router.put("/programs/{program}/teams/{team_id}", response_model=Team)
def put_team(access: IngestAccess, team_id: IdPath, body: TeamIn) -> dict[str, Any]:
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        participants.set_team(connection, record.id, team_id, name=body.name)
    return {"id": team_id, "name": body.name}


@router.post(
    "/programs/{program}/adjustments",
    status_code=201,
    response_model=Adjustment,
    responses={200: {"model": Adjustment, "description": "the same adjustment, for a retried idempotency key"}},
)
def post_adjustment(access: AdminAccess, body: AdjustmentIn, response: Response) -> dict[str, Any]:
    """A manual credit or debit, audited: 201; 200 for a retried idempotency key (as a redemption);
    a debit never takes the balance below zero (409)."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        made = ledger.adjust(
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
    response.status_code = 200 if made["status"] == "duplicate" else 201
    return made
