"""Challenges with their status and progress, for a screen or for one participant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.challenges.closing import participants_taking_part, race_finishers
from levelup.engine.goals import goal_period, pace
from levelup.engine.quests import current_step
from levelup.insights.targets import personal
from levelup.leaderboards.service import Row, rank
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
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    challenge: Challenge,
    period: str,
    limit: int = 10,
) -> list[dict[str, Any]]:
    """The top of a competition or team goal as it stands: the same entrants closing would rank."""
    if challenge.format == "race":
        return [
            {"rank": place, "id": row.id, "name": row.name, "reached_at": dt.datetime.fromtimestamp(row.value, dt.UTC)}
            for place, row in race_finishers(connection, program_id, compiled, challenge, period)[:limit]
        ]
    kind = "t" if challenge.mode == "team" else "p"
    m = t.metric_totals.c
    subjects = t.teams if kind == "t" else t.participants
    query = (
        select(subjects.c.id, subjects.c.external_id, subjects.c.name, m.value)
        .join(subjects, subjects.c.id == m.subject_id)
        .where(m.program_id == program_id, m.metric == challenge.metric, m.period == period, m.subject_kind == kind)
        .order_by(m.value.desc(), subjects.c.external_id)
    )
    if kind == "t" and challenge.teams:
        query = query.where(subjects.c.external_id.in_(challenge.teams))
    filtered = kind == "p" and bool(
        challenge.teams or challenge.entrants or challenge.eligible or compiled.challenge_holdouts.get(challenge.key)
    )
    if challenge.entrants:
        query = query.where(subjects.c.external_id.in_(challenge.entrants))
    rows = connection.execute(query if filtered else query.limit(limit)).all()
    if filtered:
        admitted = participants_taking_part(connection, program_id, compiled, challenge, [r.id for r in rows])
        rows = [r for r in rows if r.id in admitted][:limit]
    ranked = rank([Row(r.external_id, r.name, r.value) for r in rows])
    return [{"rank": place, "id": row.id, "name": row.name, "value": row.value} for place, row in ranked]


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
            item["standings"] = _standings(connection, program.id, compiled, c, period)
        if participant_id is not None and c.kind == "quest":
            item["you"] = _quest_progress(connection, program.id, participant_id, c, period)
        elif participant_id is not None and c.metric:
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
            teams = connection.execute(
                select(t.teams.c.external_id)
                .join(t.memberships, t.memberships.c.team_id == t.teams.c.id)
                .where(t.memberships.c.participant_id == participant_id)
            ).scalars()
            target = personal(connection, program.id, c, period, participant or "", list(teams))
            item["you"] = {"progress": value or 0.0, "target": target, "completed": bool(done)}
            item["you"] |= pace(value or 0.0, target, period, today, completed=bool(done))
        out.append(item)
    return {"program": program.key, "today": today.isoformat(), "challenges": out}


def _quest_progress(
    connection: Connection, program_id: int, participant_id: int, quest: Challenge, period: str
) -> dict[str, Any]:
    q = t.quest_progress.c
    baselines = connection.execute(
        select(q.baselines).where(q.participant_id == participant_id, q.challenge == quest.key, q.period == period)
    ).scalar_one_or_none()
    m = t.metric_totals.c
    values = {
        metric: float(value)
        for metric, value in connection.execute(
            select(m.metric, m.value).where(
                m.program_id == program_id,
                m.period == period,
                m.subject_kind == "p",
                m.subject_id == participant_id,
                m.metric.in_({s.metric for s in quest.steps or ()}),
            )
        )
    }
    return current_step(
        quest,
        tuple((float(b), int(at)) for b, at in baselines or [(0.0, 0)]),
        period,
        lambda metric, _period: values.get(metric, 0.0),
    )
