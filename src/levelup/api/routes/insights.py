"""Insight: simulate a draft over past events (admin), and the analytics (read)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess
from levelup.api.responses import Out, as_is
from levelup.api.routes.leaderboards import BoardEntry
from levelup.insights import simulate as sim
from levelup.programs.validation import validate_document

router = APIRouter(tags=["insights"])


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    document: dict[str, Any] = Field(description="the draft program document (JSON), as for PUT /programs/{program}")
    from_: AwareDatetime = Field(alias="from", description="first instant of the window (event time, inclusive)")
    to: AwareDatetime = Field(description="end of the window (exclusive); at most ten years after from")


class Window(Out):
    from_: str = Field(alias="from")
    to: str
    events: int = Field(description="stored events whose occurred_at lies in the window")


class BadgeCount(Out):
    badge: str
    grade: str
    holders: int = Field(description="participants holding it at the window's end")
    grants: int = Field(description="grants held (a repeatable badge counts once a period)")


class ChallengeCount(Out):
    challenge: str
    completions: int = Field(description="(participant, period) completions; a team goal: teams that reached it")


class BoardTop(Out):
    key: str
    period: str = Field(description="the board's period at the window's end")
    total: int
    entries: list[BoardEntry]


class PrizePaid(Out):
    challenge: str
    period: str
    rank: int | None = Field(description="null: a team goal reached")
    winner: str = Field(description="participant, or team (each member is paid)")
    awards: dict[str, int]


class Owed(Out):
    outstanding: int
    arrears: int


class Scored(Out):
    events: int
    skipped: int = Field(description="reversals of events before the window: nothing to undo")
    totals: dict[str, int] = Field(description="per currency: what the window's events, rewards and prizes made")
    participants: dict[str, dict[str, int]] = Field(description="per participant: balance per currency")
    distribution: dict[str, dict[str, float]] = Field(
        description="per currency: p10, p25, p50, p75, p90, p99, min, max, mean of the balances"
    )
    badges: list[BadgeCount]
    challenges: list[ChallengeCount]
    leaderboards: list[BoardTop]
    prizes: list[PrizePaid] = Field(description="team goals and competitions closed in the window")
    liability: dict[str, Owed] = Field(description="spendable currencies: points created, still held")


class Change(Out):
    kind: str = Field(description="total, liability, badge, challenge, leaderboard or participant")
    key: str
    before: float
    after: float
    text: str = Field(description='in plain words: "Dana: +1,200 XP", "top-closer Gold: 4 → 9 holders"')


class Simulation(Out):
    program: str
    version: int = Field(description="the version in force, scored as current")
    window: Window
    current: Scored
    draft: Scored
    changes: Annotated[list[Change], Field(max_length=sim.MAX_CHANGES)]


@router.post("/programs/{program}/simulate", response_model=Simulation)
def post_simulate(access: AdminAccess, body: SimulateIn) -> Response:
    """Score a draft document over the stored events of [from, to) beside the document in force, in
    memory, in one read-only transaction: nothing is written."""
    draft = validate_document(body.document, program=access.key)
    return as_is(Simulation, sim.run(access.runtime, access.key, draft, body.from_, body.to))
