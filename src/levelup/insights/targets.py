"""Suggested personal targets for a recurring individual goal: a stretch from each participant's own history.

The target is the median of their last N complete periods × a factor, kept between a floor and a cap
(shares of the challenge's own target), rounded up to a whole number. Someone with fewer than
``MIN_HISTORY`` periods of history gets their team's median (of its members' medians) × the factor, and
the challenge's own target when no team of theirs has history. A suggestion only: the engine still judges
the challenge's target (``target: auto`` in the engine is future work).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, select

from levelup.errors import FieldError, Invalid
from levelup.insights.common import median
from levelup.metrics.periods import local_date, period_dates, period_key
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

MIN_HISTORY = 3
FLOOR, CAP = 0.25, 2.0  # of the challenge's target


def _recent(grain: str, today: dt.date, n: int) -> list[str]:
    """The n complete periods of ``grain`` before the one holding ``today``, oldest first."""
    keys: list[str] = []
    day = today
    while len(keys) < n:
        dates = period_dates(period_key(grain, day))
        assert dates is not None
        day = dates[0] - dt.timedelta(days=1)
        keys.append(period_key(grain, day))
    return keys[::-1]


def targets(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    challenge: str,
    as_of: dt.datetime,
    periods: int = 8,
    factor: float = 1.1,
    limit: int = 100,
) -> dict[str, Any]:
    found = compiled.challenges.get(challenge)
    if found is None or found.kind != "goal" or found.mode != "individual" or not found.every:
        raise Invalid(
            "not a recurring individual goal",
            errors=[FieldError("challenge", "an individual goal with `every` (e.g. five-a-week)")],
        )
    assert found.metric is not None and found.target is not None
    keys = _recent(found.every, local_date(as_of, compiled.timezone), periods)
    m, p = t.metric_totals.c, t.participants.c
    history: dict[int, list[float]] = defaultdict(list)
    query = select(m.subject_id, m.value).where(
        m.program_id == program.id, m.metric == found.metric, m.subject_kind == "p", m.period.in_(keys)
    )
    for subject, value in connection.execute(query):
        history[int(subject)].append(float(value))
    people = connection.execute(select(p.id, p.external_id, p.name).where(p.program_id == program.id)).all()
    teams: dict[int, list[str]] = defaultdict(list)
    for participant, team in connection.execute(
        select(t.memberships.c.participant_id, t.teams.c.external_id)
        .join(t.teams, t.teams.c.id == t.memberships.c.team_id)
        .where(t.teams.c.program_id == program.id)
    ):
        teams[int(participant)].append(team)

    def own(pid: int) -> float | None:
        """The median of a participant's periods (a period without a row counts 0), if history enough."""
        values = history.get(pid, [])
        return median(values + [0.0] * (periods - len(values))) if len(values) >= MIN_HISTORY else None

    by_team: dict[str, list[float]] = defaultdict(list)
    for pid, *_ in people:
        mid = own(pid)
        if mid is not None:
            for team in teams.get(pid, []):
                by_team[team].append(mid)
    floor, cap = FLOOR * found.target, CAP * found.target
    rows = []
    for pid, external, name in people:
        mid, source = own(pid), "own"
        if mid is None:
            team_medians = [x for team in teams.get(pid, []) if (x := median(by_team.get(team, []))) is not None]
            mid, source = (max(team_medians), "team") if team_medians else (None, "challenge")
        stretch = found.target if mid is None else min(cap, max(floor, mid * factor))
        target = math.ceil(round(stretch, 6))  # 3 × 1.1 is 3.3000000000000003: no float noise in a target
        rows.append(
            {
                "id": external,
                "name": name,
                "history": len(history.get(pid, [])),
                "median": mid,
                "target": target,
                "source": source,
            }
        )
    rows.sort(key=lambda r: (r["target"], r["id"]))
    suggested = median([r["target"] for r in rows])
    below = sum(1 for r in rows if r["target"] < found.target)
    return {
        "challenge": challenge,
        "metric": found.metric,
        "target": found.target,
        "periods": keys,
        "factor": factor,
        "floor": floor,
        "cap": cap,
        "total": len(rows),
        "participants": rows[:limit],
        "sentence": (
            f"the median suggested target is {suggested:g} (the challenge asks {found.target:g}); {below:,} of "
            f"{len(rows):,} participants would get a lower, reachable one"
            if rows
            else "no participants yet"
        ),
    }
