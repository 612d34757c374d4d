"""Quests: ordered steps, each a target on a metric, in one period (``every``, ``start``..``end`` or all time).

Order is strict: a step counts only what happens after it became current. When a
step is done, the next step's *baseline* is its metric's value at that moment, so
earlier activity (including the event that finished the previous step) does not
count toward it; progress on a step is ``value - baseline``. The first step's
baseline is 0: everything in the period counts toward it.

Steps follow the order events were received (the event log's order): each step
keeps the seq of the event it began with. Reversing an event from before a step
began lowers that step's baseline with its value, so the step's progress is
untouched. A reversal of activity the step counted can reopen it: a done step whose ``value - baseline`` falls back
below its target becomes current again and the later steps' progress is dropped
(they are redone after it); if the quest was complete, its reward is taken back,
as for a goal. The reward is paid the moment the last step is done, once per period.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from levelup.engine.goals import eligible, goal_period
from levelup.engine.model import ParticipantState, QuestChange
from levelup.programs.document import Challenge, Experiment
from levelup.rules.expressions import Expression

MetricValue = Callable[[str, str], float]
Step = tuple[float, int]  # (baseline, seq of the event the step began with; 0 for the first step)
FIRST: tuple[Step, ...] = ((0.0, 0),)


def advance(quest: Challenge, started: tuple[Step, ...], period: str, value: MetricValue, seq: int) -> tuple[Step, ...]:
    """Steps done after the values changed: recheck the done ones, then move on as far as targets allow."""
    steps = quest.steps or []
    out = list(started or FIRST)
    i = 0
    while i < len(out) and i < len(steps):
        step = steps[i]
        if value(step.metric, period) - out[i][0] < step.target:
            del out[i + 1 :]  # this step is current (again): later steps start over after it
            break
        if i + 1 == len(out):
            following = steps[i + 1].metric if i + 1 < len(steps) else None
            out.append((value(following, period) if following else 0.0, seq))
        i += 1
    return tuple(out)


def _rebase(
    quest: Challenge, started: tuple[Step, ...], period: str, undone: Mapping[tuple[str, str], float], reversed_seq: int
) -> tuple[Step, ...]:
    """Reversing activity from before a step began takes nothing from the step: it was in its baseline."""
    steps = quest.steps or []
    return tuple(
        (base + undone.get((steps[i].metric, period), 0.0), begun)
        if i and i < len(steps) and reversed_seq < begun
        else (base, begun)
        for i, (base, begun) in enumerate(started)
    )


def evaluate(
    quests: tuple[Challenge, ...],
    conditions: Mapping[str, Expression],
    state: ParticipantState,
    progress: Mapping[tuple[str, str], tuple[Step, ...]],
    day: dt.date,
    value: MetricValue,
    touched: set[str],
    seq: int,
    undone: Mapping[tuple[str, str], float] | None = None,
    reversed_seq: int | None = None,
    *,
    holdouts: Mapping[str, Sequence[Experiment]] | None = None,
    moment: dt.datetime | None = None,
) -> list[QuestChange]:
    """Quests whose progress changed with event ``seq``'s metric changes (``undone``: what its reversal of
    event ``reversed_seq`` took off each metric)."""
    changes: list[QuestChange] = []
    for quest in quests:
        steps = quest.steps or []
        if not touched & {s.metric for s in steps} or not eligible(
            quest, state, conditions.get(quest.key), (holdouts or {}).get(quest.key, ()), moment
        ):
            continue
        period = goal_period(quest, day)
        if period is None:
            continue
        before = progress.get((quest.key, period), FIRST)
        rebased = before if not undone or reversed_seq is None else _rebase(quest, before, period, undone, reversed_seq)
        after = advance(quest, rebased, period, value, seq)
        if after != before:
            changes.append(QuestChange(quest.key, period, after, len(after) > len(steps)))
    return changes


def current_step(quest: Challenge, started: tuple[Step, ...], period: str, value: MetricValue) -> dict[str, Any]:
    """What a participant sees: the step they are on and their progress on it."""
    steps = quest.steps or []
    started = started or FIRST
    at = len(started) - 1
    if at >= len(steps):
        return {"step": len(steps), "of": len(steps), "completed": True}
    step = steps[at]
    return {
        "step": at + 1,
        "of": len(steps),
        "name": step.name or step.metric,
        "metric": step.metric,
        "progress": max(0.0, value(step.metric, period) - started[at][0]),
        "target": step.target,
        "completed": False,
    }
