"""Challenges with their status and progress, for a screen or for one participant."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, and_, func, select

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
    teams: list[str] | None = None  # the participant's, read once when a challenge needs them
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
            item["you"] |= quest_pace(item["you"], period, today)
        elif participant_id is not None and c.metric:
            if teams is None:
                teams = list(
                    connection.execute(
                        select(t.teams.c.external_id)
                        .join(t.memberships, t.memberships.c.team_id == t.teams.c.id)
                        .where(t.memberships.c.participant_id == participant_id)
                    ).scalars()
                )
            you = item["you"] = _your_progress(
                connection, program.id, participant_id, participant or "", teams, c, period
            )
            if c.kind == "competition" and c.format != "race":
                you |= time_left(period, today)
            elif c.mode == "individual" or "name" in you:  # a team goal: paced for a member of a team in it
                you |= pace(you["progress"], you["target"], period, today, completed=you["completed"])
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


def quest_pace(step: dict[str, Any], period: str, today: dt.date) -> dict[str, float | int | str]:
    """A quest's pace, from what :func:`current_step` shows: the quest's ``share`` is its steps done plus the
    current step's own share (its progress over its target), over the number of steps.

    Each step weighs the same: steps count different things (purchases, reviews…), so their targets
    cannot be added up, and a step's size says nothing about its effort. The current step's share counts
    so that someone halfway through a step is not shown as having done nothing on it. The same
    computation as the profile's (``achievements.progress``), so both show one pace."""
    partial = step["progress"] / step["target"] if "target" in step else 1.0  # of the current step
    return pace(step["step"] - 1 + partial, step["of"], period, today, completed=step["completed"])


def time_left(period: str, today: dt.date) -> dict[str, float | int | str]:
    """A ranking or duel has no target to pace against (``possible`` says what each prize takes): the
    ``elapsed`` share of its period and the ``days_left``, as :func:`pace` measures them (on a nominal
    target, its verdict and share dropped). Empty for all time."""
    measured = pace(0.0, 1.0, period, today, completed=False)
    return {k: measured[k] for k in ("elapsed", "days_left") if k in measured}


def _your_progress(
    connection: Connection,
    program_id: int,
    participant_id: int,
    participant: str,
    teams: list[str],
    challenge: Challenge,
    period: str,
) -> dict[str, Any]:
    """A participant's progress on a goal or competition, before its pace.

    Individual: their own value, their target (``target: auto``: their own) and whether they completed it.
    Team: their **team's** value against the team's target, as the standings and closing count it
    (``metric_totals`` of the team: its members' events, for the teams they were in when scored), with
    ``name`` the team shown — of the participant's teams taking part, the one furthest along (ties: by
    id). A team goal is completed when the team reached its target (the reward follows at close; once
    the period is closed, as closing judged it). A member of no team taking part: their own value, no
    team, not completed (nothing to pace)."""
    m = t.metric_totals.c
    if challenge.mode == "team":
        found = _team_of(connection, program_id, participant_id, challenge, period)
        if found is not None:
            external_id, name, value = found
            completed = challenge.kind == "goal" and _team_reached(
                connection, program_id, challenge, period, external_id, value
            )
            return {"name": name or external_id, "progress": value, "target": challenge.target, "completed": completed}
    own = connection.execute(
        select(m.value).where(
            m.program_id == program_id,
            m.metric == challenge.metric,
            m.period == period,
            m.subject_kind == "p",
            m.subject_id == participant_id,
        )
    ).scalar_one_or_none()
    if challenge.mode == "team":
        return {"progress": float(own or 0.0), "target": challenge.target, "completed": False}
    done = connection.execute(
        select(func.count()).where(
            t.challenge_completions.c.participant_id == participant_id,
            t.challenge_completions.c.challenge == challenge.key,
            t.challenge_completions.c.period == period,
        )
    ).scalar_one()
    target = personal(connection, program_id, challenge, period, participant, teams)
    return {"progress": own or 0.0, "target": target, "completed": bool(done)}


def _team_of(
    connection: Connection, program_id: int, participant_id: int, challenge: Challenge, period: str
) -> tuple[str, str | None, float] | None:
    """The participant's team taking part in a team challenge furthest along in ``period``: id, name, value."""
    m = t.metric_totals.c
    query = (
        select(t.teams.c.external_id, t.teams.c.name, m.value)
        .select_from(t.memberships.join(t.teams, t.teams.c.id == t.memberships.c.team_id))
        .outerjoin(
            t.metric_totals,
            and_(
                m.subject_id == t.teams.c.id,
                m.subject_kind == "t",
                m.program_id == program_id,
                m.metric == challenge.metric,
                m.period == period,
            ),
        )
        .where(t.memberships.c.participant_id == participant_id, t.teams.c.program_id == program_id)
    )
    if challenge.teams:
        query = query.where(t.teams.c.external_id.in_(challenge.teams))
    rows = [(r.external_id, r.name, float(r.value or 0.0)) for r in connection.execute(query)]
    return min(rows, key=lambda r: (-r[2], r[0])) if rows else None


def _team_reached(
    connection: Connection, program_id: int, challenge: Challenge, period: str, team: str, value: float
) -> bool:
    """Whether a team reached a team goal's target: as closing judged it once the period is closed, else now."""
    closed = connection.execute(
        select(t.closed_periods.c.result).where(
            t.closed_periods.c.program_id == program_id,
            t.closed_periods.c.challenge == challenge.key,
            t.closed_periods.c.period == period,
        )
    ).scalar_one_or_none()
    if isinstance(closed, dict) and "reached" in closed:
        return team in closed["reached"]
    return challenge.target is not None and value >= challenge.target
