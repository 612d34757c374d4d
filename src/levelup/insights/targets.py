"""Personal targets: a stretch from each participant's own history, suggested (the insight) or frozen for a
``target: auto`` goal (:func:`freeze`, what the engine is handed). One computation, :func:`stretch`, for both.

The target is the median of their last N complete periods × a factor, kept between a floor and a cap, rounded
up to a whole number. Someone with fewer than ``MIN_HISTORY`` periods of history gets their team's median (of
its members' medians) × the factor, and the fallback (the challenge's own target, or ``auto.fallback``) when
no team of theirs has history.

A ``target: auto`` goal's target is frozen the first time a batch scores an event of the participant in that
period (``personal_targets``): from the history stored before that batch, it never moves mid-period (late
events of earlier periods change the history, not the target), and replay reads the stored value.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from levelup.engine.goals import goal_period
from levelup.engine.model import Event, ParticipantState
from levelup.errors import FieldError, Invalid
from levelup.insights.common import median
from levelup.metrics.periods import local_date, period_dates, period_key
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Challenge
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t
from levelup.storage.sql import insert_ignore

MIN_HISTORY = 3


class Frozen(NamedTuple):
    """A personal target computed for a batch, to store with the participant's final id."""

    participant: str
    challenge: str
    period: str
    target: float
    source: str  # own | team | fallback


FLOOR, CAP = 0.25, 2.0  # of the challenge's target, for a suggestion


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


def own_median(values: Sequence[float], periods: int) -> float | None:
    """The median of a participant's periods (a period without a row counts 0), with history enough."""
    return median([*values, *[0.0] * (periods - len(values))]) if len(values) >= MIN_HISTORY else None


def stretch(mid: float | None, *, factor: float, floor: float, cap: float | None, fallback: float) -> int:
    """The target a median gives: × factor, between floor and cap, rounded up; the fallback without one."""
    value = fallback if mid is None else max(floor, mid * factor)
    if mid is not None and cap is not None:
        value = min(cap, value)
    return math.ceil(round(value, 6))  # 3 × 1.1 is 3.3000000000000003: no float noise in a target


def _history(
    connection: Connection, program_id: int, metric: str, keys: list[str], pids: Iterable[int] | None = None
) -> dict[int, list[float]]:
    """Each participant's values of ``metric`` in the periods ``keys`` (only the periods with a row)."""
    m = t.metric_totals.c
    query = select(m.subject_id, m.value).where(
        m.program_id == program_id, m.metric == metric, m.subject_kind == "p", m.period.in_(keys)
    )
    if pids is not None:
        query = query.where(m.subject_id.in_(list(pids)))
    history: dict[int, list[float]] = defaultdict(list)
    for subject, value in connection.execute(query):
        history[int(subject)].append(float(value))
    return history


def _teams(connection: Connection, program_id: int, teams: Iterable[str] | None = None) -> dict[int, list[str]]:
    """Participant id → their teams (of these teams only, when given)."""
    query = (
        select(t.memberships.c.participant_id, t.teams.c.external_id)
        .join(t.teams, t.teams.c.id == t.memberships.c.team_id)
        .where(t.teams.c.program_id == program_id)
    )
    if teams is not None:
        query = query.where(t.teams.c.external_id.in_(list(teams)))
    found: dict[int, list[str]] = defaultdict(list)
    for participant, team in connection.execute(query):
        found[int(participant)].append(team)
    return found


def _by_team(history: Mapping[int, list[float]], teams: Mapping[int, list[str]], periods: int) -> dict[str, float]:
    """Each team's median of its members' own medians (members with history enough)."""
    medians: dict[str, list[float]] = defaultdict(list)
    for pid, member_of in teams.items():
        mid = own_median(history.get(pid, []), periods)
        if mid is not None:
            for team in member_of:
                medians[team].append(mid)
    return {team: found for team, values in medians.items() if (found := median(values)) is not None}


def _person(
    history: list[float], teams: Iterable[str], by_team: Mapping[str, float], periods: int
) -> tuple[float | None, str]:
    """The median a participant's target stretches, and whose it is: own, team, or none (the fallback)."""
    mid = own_median(history, periods)
    if mid is not None:
        return mid, "own"
    team_medians = [by_team[team] for team in teams if team in by_team]
    return (max(team_medians), "team") if team_medians else (None, "fallback")


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
    assert found.metric is not None
    keys = _recent(found.every, local_date(as_of, compiled.timezone), periods)
    p = t.participants.c
    history = _history(connection, program.id, found.metric, keys)
    people = connection.execute(select(p.id, p.external_id, p.name).where(p.program_id == program.id)).all()
    teams = _teams(connection, program.id)
    by_team = _by_team(history, teams, periods)
    reference = found.target or (found.auto.fallback if found.auto else 1.0)
    floor, cap = FLOOR * reference, CAP * reference
    rows = []
    for pid, external, name in people:
        mid, source = _person(history.get(pid, []), teams.get(pid, []), by_team, periods)
        rows.append(
            {
                "id": external,
                "name": name,
                "history": len(history.get(pid, [])),
                "median": mid,
                "target": stretch(mid, factor=factor, floor=floor, cap=cap, fallback=reference),
                "source": "challenge" if source == "fallback" else source,
            }
        )
    rows.sort(key=lambda r: (r["target"], r["id"]))
    suggested = median([r["target"] for r in rows])
    below = sum(1 for r in rows if r["target"] < reference)
    return {
        "challenge": challenge,
        "metric": found.metric,
        "target": reference,
        "periods": keys,
        "factor": factor,
        "floor": floor,
        "cap": cap,
        "total": len(rows),
        "participants": rows[:limit],
        "sentence": (
            f"the median suggested target is {suggested:g} (the challenge asks {reference:g}); {below:,} of "
            f"{len(rows):,} participants would get a lower, reachable one"
            if rows
            else "no participants yet"
        ),
    }


def parts(compiled: CompiledProgram, times: Iterable[dt.datetime]) -> list[slice]:
    """Where a batch (its events' times, in order) is cut so that it freezes the targets one event at a time
    would: a new part wherever the events' ``target: auto`` periods change, each part scored once the parts
    before it are stored (a week's targets come from the weeks before it, which the same batch may hold).
    One part, the whole batch, for a document without such goals."""
    autos = [c for c in compiled.goals if c.auto_target and c.every]
    if not autos:
        return [slice(None)]
    keys = [tuple(goal_period(c, local_date(when, compiled.timezone)) for c in autos) for when in times]
    cuts = [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]]
    return [slice(a, b) for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True)]


def freeze(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    states: Mapping[str, ParticipantState],
    ids: Mapping[str, int],
    events: Iterable[Event],
) -> list[Frozen]:
    """Hand the engine each participant's target of every ``target: auto`` goal period the batch's events fall
    in (``state.targets``): the one stored, or computed now from the history stored so far; the new ones are
    returned for :func:`store` (once the batch's new participants have their final ids), so a target never
    moves mid-period and replay reads it. Nothing to do for a document without such goals."""
    autos = [c for c in compiled.goals if c.auto_target and c.auto is not None and c.every and c.metric]
    if not autos or not states:
        return []
    wanted: set[tuple[str, str, str]] = set()
    for event in events:
        if event.participant in states:
            day = local_date(event.occurred_at, compiled.timezone)
            wanted.update((c.key, p, event.participant) for c in autos if (p := goal_period(c, day)) is not None)
    if not wanted:
        return []
    by_id = {ids[external]: external for external in {w[2] for w in wanted}}
    f = t.personal_targets.c
    stored = {
        (challenge, period, by_id[int(pid)]): float(target)
        for pid, challenge, period, target in connection.execute(
            select(f.participant_id, f.challenge, f.period, f.target).where(
                f.participant_id.in_(list(by_id)), f.challenge.in_([c.key for c in autos])
            )
        )
    }
    fresh: list[Frozen] = []
    for goal in autos:
        for period in sorted({w[1] for w in wanted if w[0] == goal.key}):
            missing = sorted(w[2] for w in wanted if w[:2] == (goal.key, period) and w not in stored)
            for external, (target, source) in _compute(connection, program_id, goal, period, missing, states).items():
                stored[(goal.key, period, external)] = target
                fresh.append(Frozen(external, goal.key, period, target, source))
    for (challenge, period, external), target in stored.items():
        states[external].targets[(challenge, period)] = target
    return fresh


def store(
    connection: Connection,
    program_id: int,
    frozen: Iterable[Frozen],
    ids: Mapping[str, int],
    seen: Iterable[str],
    now: dt.datetime,
) -> None:
    """Store the targets :func:`freeze` computed, of the participants the batch's accepted events named (the
    others are not kept); the batch holds its participants' locks, so no other writer races these rows."""
    kept = set(seen)
    rows = [
        {
            "participant_id": ids[f.participant],
            "challenge": f.challenge,
            "period": f.period,
            "program_id": program_id,
            "target": f.target,
            "source": f.source,
            "created_at": now,
        }
        for f in frozen
        if f.participant in kept
    ]
    insert_ignore(connection, t.personal_targets, rows)


def _compute(
    connection: Connection,
    program_id: int,
    goal: Challenge,
    period: str,
    externals: list[str],
    states: Mapping[str, ParticipantState],
) -> dict[str, tuple[float, str]]:
    """Targets of these participants for one period of an auto goal, from the periods before it."""
    if not externals:
        return {}
    assert goal.auto is not None and goal.every is not None and goal.metric is not None
    auto = goal.auto
    dates = period_dates(period)
    assert dates is not None
    keys = _recent(goal.every, dates[0], auto.periods)
    p = t.participants.c
    pids = dict(
        connection.execute(
            select(p.external_id, p.id).where(p.program_id == program_id, p.external_id.in_(externals))
        ).all()
    )
    history = _history(connection, program_id, goal.metric, keys, pids.values())
    short = {e for e in externals if own_median(history.get(pids[e], []), auto.periods) is None}
    team_names = {team for e in short for team in states[e].teams}
    by_team: dict[str, float] = {}
    if team_names:
        members = _teams(connection, program_id, team_names)
        by_team = _by_team(_history(connection, program_id, goal.metric, keys, members), members, auto.periods)
    out = {}
    for external in externals:
        mid, source = _person(history.get(pids[external], []), states[external].teams, by_team, auto.periods)
        target = stretch(mid, factor=auto.factor, floor=auto.floor, cap=auto.cap, fallback=auto.fallback)
        out[external] = (float(target), source)
    return out


def personal(
    connection: Connection, program_id: int, goal: Challenge, period: str, participant: str, teams: Sequence[str]
) -> float | None:
    """The target a participant sees on a ``target: auto`` goal: the frozen one, or (before their first event of
    the period) the one freezing would give now. Writes nothing; None for a goal with one shared target."""
    if not goal.auto_target:
        return goal.target
    f, p = t.personal_targets.c, t.participants.c
    found = connection.execute(
        select(f.target)
        .join(t.participants, p.id == f.participant_id)
        .where(f.program_id == program_id, p.external_id == participant, f.challenge == goal.key, f.period == period)
    ).scalar_one_or_none()
    if found is not None:
        return float(found)
    state = ParticipantState(participant, teams=tuple(teams))
    return _compute(connection, program_id, goal, period, [participant], {participant: state})[participant][0]
