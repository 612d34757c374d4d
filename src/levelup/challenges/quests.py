"""Quests: ordered steps, each a target on a metric, in one period (``every``, ``start``..``end`` or all time).

Order is strict: a step counts only what happens after it became current. When a
step is done, the next step's *baseline* is its metric's value at that moment, so
earlier activity (including the event that finished the previous step) does not
count toward it; progress on a step is ``value - baseline``. The first step's
baseline is 0: everything in the period counts toward it.

A reversal can reopen a step: a done step whose ``value - baseline`` falls back
below its target becomes current again and the later steps' progress is dropped
(they are redone after it); if the quest was complete, its reward is taken back,
as for a goal. The reward is paid the moment the last step is done, once per period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping

from levelup.challenges.goals import eligible, goal_period
from levelup.engine.model import ParticipantState, QuestChange
from levelup.programs.document import Challenge
from levelup.rules.expressions import Expression

MetricValue = Callable[[str, str], float]


def advance(quest: Challenge, baselines: tuple[float, ...], period: str, value: MetricValue) -> tuple[float, ...]:
    """Steps done after the values changed: recheck the done ones, then move on as far as targets allow."""
    steps = quest.steps or []
    out = list(baselines or (0.0,))
    i = 0
    while i < len(out) and i < len(steps):
        step = steps[i]
        if value(step.metric, period) - out[i] < step.target:
            del out[i + 1 :]  # this step is current (again): later steps start over after it
            break
        if i + 1 == len(out):
            following = steps[i + 1].metric if i + 1 < len(steps) else None
            out.append(value(following, period) if following else 0.0)
        i += 1
    return tuple(out)


def evaluate(
    quests: tuple[Challenge, ...],
    conditions: Mapping[str, Expression],
    state: ParticipantState,
    progress: Mapping[tuple[str, str], tuple[float, ...]],
    day: dt.date,
    value: MetricValue,
    touched: set[str],
) -> list[QuestChange]:
    """Quests whose progress changed with this event's metric changes."""
    changes: list[QuestChange] = []
    for quest in quests:
        steps = quest.steps or []
        if not touched & {s.metric for s in steps} or not eligible(quest, state, conditions.get(quest.key)):
            continue
        period = goal_period(quest, day)
        if period is None:
            continue
        before = progress.get((quest.key, period), (0.0,))
        after = advance(quest, before, period, value)
        if after != before:
            changes.append(QuestChange(quest.key, period, after, len(after) > len(steps)))
    return changes


def current_step(quest: Challenge, baselines: tuple[float, ...], period: str, value: MetricValue) -> dict[str, object]:
    """What a participant sees: the step they are on and their progress on it."""
    steps = quest.steps or []
    at = len(baselines or (0.0,)) - 1
    if at >= len(steps):
        return {"step": len(steps), "of": len(steps), "completed": True}
    step = steps[at]
    base = (baselines or (0.0,))[at]
    return {
        "step": at + 1,
        "of": len(steps),
        "name": step.name or step.metric,
        "metric": step.metric,
        "progress": max(0.0, value(step.metric, period) - base),
        "target": step.target,
        "completed": False,
    }
