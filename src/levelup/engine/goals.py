"""Individual goals: reach a target on a metric within a period; the reward is paid the moment it is reached.

The period is the calendar period of ``every`` holding the event, the one-off
range ``start``..``end``, or all time when neither is given. Team goals and
competitions are settled when their period closes, not here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence

from levelup.engine.experiments import held_out_by
from levelup.engine.model import Completion, ParticipantState
from levelup.metrics.periods import period_dates, period_key, range_key
from levelup.programs.document import Challenge, Experiment
from levelup.rules.expressions import Activation, Expression, condition_holds

MetricValue = Callable[[str, str], float]


def goal_period(challenge: Challenge, day: dt.date) -> str | None:
    """The period of ``challenge`` an event on ``day`` counts in, or None outside its dates."""
    if challenge.every:
        return period_key(challenge.every, day)
    if challenge.start and challenge.end:
        return range_key(challenge.start, challenge.end) if challenge.start <= day <= challenge.end else None
    return "all"


def eligible(
    challenge: Challenge,
    state: ParticipantState,
    condition: Expression | None = None,
    holdouts: Sequence[Experiment] = (),
    moment: dt.datetime | None = None,
) -> bool:
    """Whether a participant takes part: in one of ``teams``, among ``entrants``, ``eligible`` holds, and no
    holdout experiment holds them out (their metrics still count; the challenge just is not theirs).

    Judged on the participant as they are when it matters: at scoring time for goals,
    quests and races (their segment at the event's ``moment``), when the period closes for rankings
    and duels (the segment at the period's end).
    """
    if challenge.teams and challenge.mode == "individual" and not set(challenge.teams) & set(state.teams):
        return False
    if challenge.entrants and state.id not in challenge.entrants:
        return False
    if holdouts and held_out_by(holdouts, state.id) is not None:
        return False
    if condition is None:
        return True
    view = state.view(moment or dt.datetime.max.replace(tzinfo=dt.UTC))
    return condition_holds(condition, Activation({"participant": view}))[0]


def target_for(goal: Challenge, state: ParticipantState, period: str) -> float | None:
    """The target a participant is judged on: the goal's own, or with ``target: auto`` theirs for the
    period as the shell froze it (``state.targets``), else the document's fallback."""
    if not goal.auto_target:
        return goal.target
    frozen = state.targets.get((goal.key, period))
    return frozen if frozen is not None else goal.auto.fallback if goal.auto else None


def evaluate(
    goals: Collection[Challenge],
    conditions: Mapping[str, Expression],
    state: ParticipantState,
    completions: dict[tuple[str, str], tuple[tuple[str, int], ...]],
    day: dt.date,
    value: MetricValue,
    touched: set[str],
    *,
    may_undo: bool,
    holdouts: Mapping[str, Sequence[Experiment]] | None = None,
    moment: dt.datetime | None = None,
) -> list[Completion]:
    """Goals whose target is reached now and were not completed before in that period; and, after a
    reversal (``may_undo``), completed goals whose value fell back below the target."""
    changes: list[Completion] = []
    for goal in goals:
        if (
            goal.metric not in touched
            or goal.metric is None
            or goal.target_ is None
            or not eligible(goal, state, conditions.get(goal.key), (holdouts or {}).get(goal.key, ()), moment)
        ):
            continue
        period = goal_period(goal, day)
        target = None if period is None else target_for(goal, state, period)
        if period is None or target is None:
            continue
        reached = value(goal.metric, period)
        paid = completions.get((goal.key, period))
        if paid is None and reached >= target:
            changes.append(Completion(goal.key, period, reached, target))
        elif paid is not None and reached < target and may_undo:
            changes.append(Completion(goal.key, period, reached, target, completed=False, reward=paid))
    return changes


PACE_MARGIN = 0.1  # ahead or behind: more than a tenth of the target away from the share of time elapsed


def period_span(period: str) -> tuple[dt.date, dt.date] | None:
    """First and last local day of a calendar period or of a one-off range key (``20261001-20261031``)."""
    if len(period) == 17 and period[8] == "-":
        first, last = dt.date.fromisoformat(period[:8]), dt.date.fromisoformat(period[9:])
        return (first, last) if first <= last else None
    return period_dates(period)


def pace(
    progress: float, target: float | None, period: str, today: dt.date, *, completed: bool
) -> dict[str, float | int | str]:
    """Where a participant stands against the time elapsed in the period: ``share`` of the target done,
    ``elapsed`` share of the period's days (today counted), ``pace`` (done, ahead, on — on track — or behind,
    a tenth of the target either way) and ``days_left``. Empty without a target or an end (all time).
    One computation for the API (profile, challenges) and the participant's web page."""
    span = period_span(period)
    if span is None or not target or target <= 0:
        return {}
    start, end = span
    elapsed = min(1.0, max(0.0, ((today - start).days + 1) / ((end - start).days + 1)))
    share = min(1.0, max(0.0, progress / target))
    verdict = (
        "done"
        if completed
        else "ahead"
        if share > elapsed + PACE_MARGIN
        else "on"
        if share >= elapsed - PACE_MARGIN
        else "behind"
    )
    return {
        "share": round(share, 4),
        "elapsed": round(elapsed, 4),
        "pace": verdict,
        "days_left": max(0, (end - today).days),
    }
