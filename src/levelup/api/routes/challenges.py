"""Challenges with status and progress; launching drafts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from levelup.api.deps import AdminAccess, IdPath, ReadAccess
from levelup.api.responses import Out, as_is
from levelup.challenges.launch import launch
from levelup.challenges.service import list_challenges
from levelup.programs.document import Challenge

router = APIRouter(tags=["challenges"])


class Standing(Out):
    """A place in a competition or team goal: ``value`` so far, or for a race the time it was reached."""

    rank: int
    id: str
    name: str | None
    value: float | None = None
    reached_at: dt.datetime | None = None


class YourProgress(Out):
    """The participant's progress: on a goal (``progress``, ``target``), or on a quest's current step
    (``step`` of ``of``, with ``name``, ``metric``, ``progress`` and ``target`` until it is completed)."""

    step: int | None = None
    of: int | None = None
    name: str | None = Field(default=None, description="a quest's current step; a team challenge: the team shown")
    metric: str | None = None
    progress: float | None = Field(default=None, description="a team challenge: the team's value in the period")
    target: float | None = Field(default=None, description="a target: auto goal: this participant's own")
    completed: bool
    share: float | None = Field(default=None, description="of the target done (a quest: of its steps), 0 to 1")
    elapsed: float | None = Field(default=None, description="of the period's days gone, today counted, 0 to 1")
    pace: Literal["done", "ahead", "on", "behind"] | None = Field(
        default=None, description="against the time elapsed, a tenth of the target either way (on: on track)"
    )
    days_left: int | None = None


class ChallengeStatus(Challenge):
    """The challenge as the program defines it, with where it stands."""

    status: Literal["upcoming", "active", "ended"]
    period: str = Field(description="the current period, or a one-off challenge's own range")
    completions: int | None = Field(default=None, description="individual goals: completions in the period")
    standings: list[Standing] | None = Field(default=None, description="competitions and team goals: the top 10")
    you: YourProgress | None = Field(default=None, description="with ?participant=")


class ChallengeList(Out):
    program: str
    today: str = Field(description="in the program's time zone")
    challenges: list[ChallengeStatus]


class Launched(Out):
    program: str
    version: int = Field(description="the new version, with the challenge no longer a draft")
    challenge: str
    paid: int = Field(description="participants paid for completions of the current period")


@router.get("/programs/{program}/challenges", response_model=ChallengeList)
def get_challenges(access: ReadAccess, participant: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """Every challenge with its status (upcoming, active, ended), current period and progress;
    ``?participant=`` adds that participant's progress. Drafts are shown to admin keys only."""
    with access.runtime.db.read() as connection:
        record = access.record(connection)
        listed = list_challenges(
            connection,
            record,
            access.compiled(connection, record),
            participant=participant,
            include_drafts=access.principal.can("admin", access.key),
        )
    return as_is(ChallengeList, listed)


@router.post("/programs/{program}/challenges/{challenge}/launch", response_model=Launched)
def launch_challenge(access: AdminAccess, challenge: IdPath) -> dict[str, Any]:
    """Take a draft live: a new program version, and the draft's completions of the current period paid."""
    with access.runtime.db.write() as connection:
        return launch(connection, access.key, challenge, actor=access.principal.key_id)
