"""What a participant sees of their progress: badges held and next, streaks, challenges.

Read-side only: it reads the projections the engine keeps (metric totals, badge
grants, completions, streak periods) as of ``today`` in the program's time zone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from levelup.engine import streaks
from levelup.engine.badges import badge_period
from levelup.engine.goals import eligible, goal_period, pace
from levelup.engine.model import ParticipantState
from levelup.engine.quests import FIRST, current_step
from levelup.insights.targets import personal
from levelup.metrics.periods import period_key
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t


def _values(
    connection: Connection, program_id: int, participant_id: int, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], float]:
    if not keys:
        return {}
    m = t.metric_totals.c
    rows = connection.execute(
        select(m.metric, m.period, m.value).where(
            m.program_id == program_id,
            m.subject_kind == "p",
            m.subject_id == participant_id,
            m.metric.in_({k[0] for k in keys}),
            m.period.in_({k[1] for k in keys}),
        )
    )
    return {(metric, period): value for metric, period, value in rows}


def progress(
    connection: Connection,
    program: CompiledProgram,
    program_id: int,
    participant_id: int,
    participant: ParticipantState,
    today: dt.date,
    *,
    include_drafts: bool = False,
) -> dict[str, Any]:
    """Badges (held, and progress toward the next grade), streaks and challenges of one participant."""
    doc = program.doc
    shown = [
        c
        for c in (*program.goals, *program.quests)
        if (include_drafts or not c.draft)
        and eligible(c, participant, program.eligibility.get(c.key), program.challenge_holdouts.get(c.key, ()))
    ]
    periods = {c.key: p for c in shown if (p := goal_period(c, today)) is not None}
    keys = {(c.metric, period_key(c.window, today)) for b in doc.badges for g in b.grades for c in g.when}
    keys |= {(c.metric, periods[c.key]) for c in shown if c.metric and c.key in periods}
    keys |= {(s.metric, periods[c.key]) for c in shown if c.key in periods for s in c.steps or ()}
    values = _values(connection, program_id, participant_id, keys)
    held = connection.execute(
        select(t.badge_grants).where(
            t.badge_grants.c.participant_id == participant_id, t.badge_grants.c.revoked_by.is_(None)
        )
    ).all()
    badges = [
        {
            "key": r.badge,
            "grade": r.grade,
            "period": r.period,
            "awarded_at": r.awarded_at.isoformat(),
            "event": r.event_id,
        }
        for r in sorted(held, key=lambda r: (r.awarded_at, r.badge))
    ]
    held_keys = {(r.badge, r.grade, r.period) for r in held}
    badge_progress = []
    for badge in doc.badges:
        period = badge_period(badge, today)
        following = next((g for g in badge.grades if (badge.key, g.name, period) not in held_keys), None)
        if following is not None:
            badge_progress.append(
                {
                    "key": badge.key,
                    "next_grade": following.name,
                    "period": period,
                    "criteria": [
                        {
                            "metric": c.metric,
                            "window": c.window,
                            "value": values.get((c.metric, period_key(c.window, today)), 0.0),
                            "at_least": c.at_least,
                        }
                        for c in following.when
                    ],
                }
            )
    runs = {
        r.streak: (r.periods, r.best)
        for r in connection.execute(select(t.streak_runs).where(t.streak_runs.c.participant_id == participant_id))
    }
    streak_list = []
    for s in doc.streaks:
        qualifying, best = runs.get(s.key, ([], 0))
        streak_list.append(
            {
                "key": s.key,
                "current": streaks.current(qualifying, streaks.ordinal(s.period, today), s.grace),
                "best": best,
                "period": s.period,
            }
        )
    completed = {
        (r.challenge, r.period)
        for r in connection.execute(
            select(t.challenge_completions).where(t.challenge_completions.c.participant_id == participant_id)
        )
    }
    quest_rows = {
        (r.challenge, r.period): tuple((float(b), int(at)) for b, at in r.baselines)
        for r in connection.execute(select(t.quest_progress).where(t.quest_progress.c.participant_id == participant_id))
    }
    challenges = []
    for c in shown:
        current = periods.get(c.key)
        if current is None:
            continue
        item: dict[str, Any] = {"key": c.key, "kind": c.kind, "period": current}
        finished = (c.key, current) in completed
        if c.kind == "quest":
            step = current_step(
                c, quest_rows.get((c.key, current), FIRST), current, lambda m, p: values.get((m, p), 0.0)
            )
            item |= step
            partial = step["progress"] / step["target"] if "target" in step else 1.0  # of the current step
            item |= pace(step["step"] - 1 + partial, len(c.steps or ()), current, today, completed=finished)
        else:
            target = personal(connection, program_id, c, current, participant.id, participant.teams)
            item |= {"progress": values.get((c.metric or "", current), 0.0), "target": target}
            item |= pace(item["progress"], target, current, today, completed=finished)
        item["completed"] = finished
        challenges.append(item | ({"draft": True} if c.draft else {}))
    return {"badges": badges, "badge_progress": badge_progress, "streaks": streak_list, "challenges": challenges}
