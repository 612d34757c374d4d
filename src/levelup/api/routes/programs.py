"""Program documents: apply a new version, read the one in force, and the JSON Schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from levelup.api.deps import AdminAccess, PrincipalDep, ReadAccess, RuntimeDep, read_body
from levelup.api.responses import Out, as_is
from levelup.jobs import registry as jobs
from levelup.programs import service as programs
from levelup.programs.document import (
    Cap,
    Criterion,
    Currency,
    Leaderboard,
    Levels,
    ProgramDocument,
    Referrals,
    Reward,
    Streak,
    Tiers,
)
from levelup.programs.validation import validate_document
from levelup.rules.catalog import how_to_play

router = APIRouter(tags=["programs"])


class ProgramListed(Out):
    program: str
    version: int


class ProgramList(Out):
    programs: list[ProgramListed]


@router.get("/programs", response_model=ProgramList)
def list_programs(runtime: RuntimeDep, principal: PrincipalDep) -> dict[str, Any]:
    """The programs this key may read, by key."""
    with runtime.db.read() as connection:
        found = programs.selected(connection)
    return {"programs": [{"program": p.key, "version": p.version} for p in found if principal.can("read", p.key)]}


class ProgramApplied(Out):
    program: str
    version: int
    changed: bool = Field(description="false when the document equals the version in force (no new version)")


class ProgramVersion(Out):
    program: str
    version: int = Field(description="the version shown")
    current_version: int = Field(description="the version in force")
    document: ProgramDocument = Field(description="the document as applied (JSON Schema: GET /api/v1/schema/program)")


class Explained(Out):
    explain: str = Field(description="the same, in plain language")


class CurrencyRules(Currency):
    explain: str


class WayToEarn(Out):
    rule: str
    event: str
    awards: dict[str, str] = Field(description="per currency: a constant or a CEL expression, as written")
    cap: Cap | None
    cooldown_seconds: int | None
    explain: str


class LevelRules(Levels):
    explain: str


class GradeRules(Explained):
    name: str
    when: list[Criterion]


class BadgeRules(Out):
    key: str
    name: str
    repeatable: str | None
    grades: list[GradeRules]


class StreakRules(Streak):
    explain: str


class ChallengeRules(Explained):
    key: str
    kind: str


class TierRules(Tiers):
    explain: str


class ReferralRules(Referrals):
    explain: str


class HowToPlay(Out):
    """Every way to earn and what there is to reach, in plain language (drafts left out)."""

    program: str
    name: str
    version: int
    timezone: str
    currencies: list[CurrencyRules]
    ways_to_earn: list[WayToEarn]
    levels: LevelRules | None
    badges: list[BadgeRules]
    streaks: list[StreakRules]
    challenges: list[ChallengeRules]
    tiers: TierRules | None
    referrals: ReferralRules | None
    leaderboards: list[Leaderboard]
    rewards: list[Reward]


class JsonSchema(Out):
    """A JSON Schema (draft 2020-12) of the program document."""

    model_config = ConfigDict(extra="allow")
    title: str
    type: str
    properties: dict[str, Any]
    required: list[str]
    defs: dict[str, Any] = Field(alias="$defs")


DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ProgramDocument"}},  # also served alone
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.put(
    "/programs/{program}",
    openapi_extra=DOCUMENT_BODY,
    response_model=ProgramApplied,
    responses={201: {"model": ProgramApplied, "description": "the first version of a new program"}},
)
async def put_program(access: AdminAccess, request: Request, response: Response) -> dict[str, Any]:
    """Apply a document (JSON, or YAML with ``Content-Type: application/yaml``): 201 new, 200 updated or unchanged."""
    data = await read_body(request, yaml_ok=True)
    doc = validate_document(data, program=access.key)

    def apply() -> tuple[programs.ProgramRecord, bool]:
        with access.runtime.db.write() as connection:
            return programs.apply(connection, doc, actor=access.principal.key_id)

    record, changed = await run_in_threadpool(apply)
    response.status_code = 201 if changed and record.version == 1 else 200
    return {"program": record.key, "version": record.version, "changed": changed}


@router.get("/programs/{program}", response_model=ProgramVersion)
def get_program(access: ReadAccess, version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    """The document in force (or ``?version=``) and its version."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        body = {
            "program": record.key,
            "version": version or record.version,
            "current_version": record.version,
            "document": programs.document_of(connection, record, version),
        }
    return as_is(ProgramVersion, body)


@router.get("/programs/{program}/rules", response_model=HowToPlay)
def get_rules(access: ReadAccess) -> Response:
    """How the game works, in plain language: every way to earn, with caps and cooldowns."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        body = how_to_play(access.compiled(connection, record))
    return as_is(HowToPlay, body)


class JobRun(Out):
    job: str
    doing: str
    last_run: str | None = Field(description="when this process last ran it for the program; null: not yet")
    count: int | None = Field(description="what the last run did, in unit")
    unit: str
    error: str | None = Field(description="why the last run failed (it is retried on the next); null if it did not")
    failed_runs: int = Field(description="runs that failed since this process started")


class JobRuns(Out):
    program: str
    jobs: list[JobRun]


@router.get("/programs/{program}/jobs", response_model=JobRuns)
def get_jobs(access: AdminAccess) -> dict[str, Any]:
    """The periodic jobs (closing, expiry, tiers, referrals) for this program as this server process last
    ran them: a failure shows here with its cause until a run succeeds, and is counted."""
    with access.runtime.db.read() as connection:
        access.record(connection)  # 404 for an unknown program
    runs = [
        {
            "job": job.name,
            "doing": job.doing,
            "last_run": ran.at.isoformat() if ran else None,
            "count": ran.count if ran and ran.error is None else None,
            "unit": job.unit,
            "error": ran.error if ran else None,
            "failed_runs": failed,
        }
        for job, (ran, failed) in zip(jobs.JOBS, jobs.HISTORY.of(access.key), strict=True)
    ]
    return {"program": access.key, "jobs": runs}


schema_router = APIRouter(tags=["programs"])


@schema_router.get("/schema/program", response_model=JsonSchema)
def program_schema() -> Response:
    """The JSON Schema of a program document (no key needed: it is public)."""
    return as_is(JsonSchema, ProgramDocument.model_json_schema(by_alias=True))
