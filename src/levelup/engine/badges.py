"""Badges: recognition when every criterion of a grade holds (metric over a window ≥ at_least).

A grade is held once (or once per period when the badge is ``repeatable``). A
reversal that makes a held grade's criteria fail again revokes it: recognition
follows the facts, so faking a deal and reversing it later earns nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping

from levelup.engine.model import BadgeChange
from levelup.metrics.periods import period_key
from levelup.programs.document import Badge

MetricValue = Callable[[str, str], float]


def badge_period(badge: Badge, day: dt.date) -> str:
    return period_key(badge.repeatable, day) if badge.repeatable else "all"


def evaluate(
    badges: Collection[Badge],
    held: set[tuple[str, str, str]],
    day: dt.date,
    value: MetricValue,
    touched: set[str],
    *,
    may_revoke: bool,
    reads: Mapping[str, frozenset[str]] | None = None,
) -> list[BadgeChange]:
    """Grades newly met on ``day`` (and, after a reversal, grades no longer met); ``reads``: each badge's
    metrics (``CompiledProgram.badge_reads``), so they are not gathered again on every event."""
    changes: list[BadgeChange] = []
    for badge in badges:
        metrics = reads[badge.key] if reads is not None else {c.metric for g in badge.grades for c in g.when}
        if touched.isdisjoint(metrics):
            continue
        period = badge_period(badge, day)
        for grade in badge.grades:
            met = all(value(c.metric, period_key(c.window, day)) >= c.at_least for c in grade.when)
            has = (badge.key, grade.name, period) in held
            if met and not has:
                changes.append(BadgeChange(badge.key, grade.name, period, True))
            elif has and not met and may_revoke:
                changes.append(BadgeChange(badge.key, grade.name, period, False))
    return changes
