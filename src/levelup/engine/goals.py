"""Individual goals: reach a target on a metric within a period; the reward is paid the moment it is reached.

The period is the calendar period of ``every`` holding the event, the one-off
range ``start``..``end``, or all time when neither is given. Team goals and
competitions are settled when their period closes, not here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping

from levelup.engine.model import Completion, ParticipantState
from levelup.metrics.periods import period_key, range_key
from levelup.programs.document import Challenge
from levelup.rules.expressions import Activation, Expression, condition_holds

MetricValue = Callable[[str, str], float]


def goal_period(challenge: Challenge, day: dt.date) -> str | None:
    """The period of ``challenge`` an event on ``day`` counts in, or None outside its dates."""
    if challenge.every:
        return period_key(challenge.every, day)
    if challenge.start and challenge.end:
        return range_key(challenge.start, challenge.end) if challenge.start <= day <= challenge.end else None
    return "all"


def eligible(challenge: Challenge, state: ParticipantState, condition: Expression | None = None) -> bool:
    """Whether a participant takes part: in one of ``teams``, among ``entrants``, and ``eligible`` holds.

    Judged on the participant as they are when it matters: at scoring time for goals,
    quests and races, when the period closes for rankings and duels.
    """
    if challenge.teams and challenge.mode == "individual" and not set(challenge.teams) & set(state.teams):
        return False
    if challenge.entrants and state.id not in challenge.entrants:
        return False
    if condition is None:
        return True
    view = {"id": state.id, "name": state.name or "", "teams": list(state.teams), "attributes": dict(state.attributes)}
    return condition_holds(condition, Activation({"participant": view}))[0]


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
) -> list[Completion]:
    """Goals whose target is reached now and were not completed before in that period; and, after a
    reversal (``may_undo``), completed goals whose value fell back below the target."""
    changes: list[Completion] = []
    for goal in goals:
        if (
            goal.metric not in touched
            or goal.metric is None
            or goal.target is None
            or not eligible(goal, state, conditions.get(goal.key))
        ):
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
