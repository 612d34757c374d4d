"""Challenges with their status and progress, for a screen or for one participant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.challenges.goals import goal_period
from levelup.metrics.periods import local_date
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Challenge
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t


def status(challenge: Challenge, today: dt.date) -> str:
    if challenge.start and today < challenge.start:
        return "upcoming"
    if challenge.end and today > challenge.end:
        return "ended"
    return "active"


def _period(challenge: Challenge, today: dt.date) -> str:
    """The period shown: the current one, or a one-off challenge's own range even before or after it."""
    if challenge.start and challenge.end and not challenge.every:
        return goal_period(challenge, challenge.start) or "all"
    return goal_period(challenge, today) or "all"


def _standings(
    connection: Connection, program_id: int, challenge: Challenge, period: str, kind: str, limit: int = 10
) -> list[dict[str, Any]]:
    m = t.metric_totals.c
    subjects = t.teams if kind == "t" else t.participants
    query = (
        select(subjects.c.external_id, subjects.c.name, m.value)
        .join(subjects, subjects.c.id == m.subject_id)
        .where(m.program_id == program_id, m.metric == challenge.metric, m.period == period, m.subject_kind == kind)
        .order_by(m.value.desc(), subjects.c.external_id)
        .limit(limit)
    )
    if kind == "t" and challenge.teams:
        query = query.where(subjects.c.external_id.in_(challenge.teams))
    rows = connection.execute(query)
    return [{"id": r.external_id, "name": r.name, "value": r.value} for r in rows]


def list_challenges(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    participant: str | None = None,
    include_drafts: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    today = local_date(now or dt.datetime.now(dt.UTC), compiled.timezone)
    participant_id = None
    if participant is not None:
        participant_id = connection.execute(
            select(t.participants.c.id).where(
                t.participants.c.program_id == program.id, t.participants.c.external_id == participant
            )
        ).scalar_one_or_none()
    out = []
    for c in compiled.doc.challenges:
        if c.draft and not include_drafts:
            continue
        period = _period(c, today)
        item: dict[str, Any] = {
            **c.model_dump(mode="json", exclude_none=True, by_alias=True),
            "status": status(c, today),
            "period": period,
        }
        if c.kind == "goal" and c.mode == "individual":
            item["completions"] = connection.execute(
                select(func.count()).where(
                    t.challenge_completions.c.program_id == program.id,
                    t.challenge_completions.c.challenge == c.key,
                    t.challenge_completions.c.period == period,
                )
            ).scalar_one()
        if c.metric and (c.mode == "team" or c.kind == "competition"):
            kind = "t" if c.mode == "team" else "p"
            item["standings"] = _standings(connection, program.id, c, period, kind)
        if participant_id is not None and c.metric:
            m = t.metric_totals.c
            value = connection.execute(
                select(m.value).where(
                    m.program_id == program.id,
                    m.metric == c.metric,
                    m.period == period,
                    m.subject_kind == "p",
                    m.subject_id == participant_id,
                )
            ).scalar_one_or_none()
            done = connection.execute(
                select(func.count()).where(
                    t.challenge_completions.c.participant_id == participant_id,
                    t.challenge_completions.c.challenge == c.key,
                    t.challenge_completions.c.period == period,
                )
            ).scalar_one()
            item["you"] = {"progress": value or 0.0, "target": c.target, "completed": bool(done)}
        out.append(item)
    return {"program": program.key, "today": today.isoformat(), "challenges": out}
