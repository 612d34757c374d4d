"""Individual goals: reach a target on a metric within a period; the reward is paid the moment it is reached.

The period is the calendar period of ``every`` holding the event, the one-off
range ``start``..``end``, or all time when neither is given. Team goals and
competitions are settled when their period closes, not here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection

from levelup.engine.model import Completion, ParticipantState
from levelup.metrics.periods import period_key, range_key
from levelup.programs.document import Challenge

MetricValue = Callable[[str, str], float]


def goal_period(challenge: Challenge, day: dt.date) -> str | None:
    """The period of ``challenge`` an event on ``day`` counts in, or None outside its dates."""
    if challenge.every:
        return period_key(challenge.every, day)
    if challenge.start and challenge.end:
        return range_key(challenge.start, challenge.end) if challenge.start <= day <= challenge.end else None
    return "all"


def eligible(challenge: Challenge, state: ParticipantState) -> bool:
    return not challenge.teams or bool(set(challenge.teams) & set(state.teams))


def evaluate(
    goals: Collection[Challenge],
    state: ParticipantState,
    completions: dict[tuple[str, str], tuple[tuple[str, int], ...]],
    day: dt.date,
    value: MetricValue,
    touched: set[str],
    *,
    may_undo: bool,
) -> list[Completion]:
    """Goals whose target is reached now and were not completed before in that period; and, after a
    reversal (``may_undo``), completed goals whose value fell back below the target."""
    changes: list[Completion] = []
    for goal in goals:
        if goal.metric not in touched or goal.metric is None or goal.target is None or not eligible(goal, state):
            continue
        period = goal_period(goal, day)
        if period is None:
            continue
        reached = value(goal.metric, period)
        paid = completions.get((goal.key, period))
        if paid is None and reached >= goal.target:
            changes.append(Completion(goal.key, period, reached, goal.target))
        elif paid is not None and reached < goal.target and may_undo:
            changes.append(Completion(goal.key, period, reached, goal.target, completed=False, reward=paid))
    return changes
