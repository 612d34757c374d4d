"""The tier decision, pure: qualifying value and the tier held → the tier to hold now.

Promotion is immediate. Demotion follows the program's policy: ``rerate`` (the
tier always follows the window) or ``one_step`` (drop at most one tier per
review period, so one slow month does not cost a customer two levels of status).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import NamedTuple

from levelup.metrics.periods import period_dates, period_key, rolling_days
from levelup.programs.document import Tiers


class Decision(NamedTuple):
    tier: str
    earned: str  # what the value alone gives
    dropped_in: str | None  # the review period of a one-step drop made now (None: no drop now)


def earned_index(tiers: Tiers, value: float) -> int:
    """The highest step whose threshold the value reaches (the first step when none)."""
    index = 0
    for i, step in enumerate(tiers.steps):
        if value >= step.at:
            index = i
    return index


def index_of(tiers: Tiers, name: str | None) -> int | None:
    return next((i for i, s in enumerate(tiers.steps) if s.name == name), None)


def decide(tiers: Tiers, value: float, held: str | None, last_drop: str | None, today: dt.date) -> Decision:
    """The tier to hold on ``today``; ``last_drop`` is the review period of the last one-step drop."""
    earned = earned_index(tiers, value)
    current = index_of(tiers, held)
    name = tiers.steps[earned].name
    if current is None or earned >= current or tiers.demotion == "rerate":
        return Decision(name, name, None)
    review = period_key(tiers.review, today)
    if last_drop == review:
        return Decision(tiers.steps[current].name, name, None)
    return Decision(tiers.steps[current - 1].name, name, review)


def lost_on(tiers: Tiers, held: str | None, daily: Mapping[dt.date, float], today: dt.date) -> dt.date | None:
    """With no new activity, the first day the window falls below the held tier's threshold: for a rolling
    window, when enough old activity has left it; for a calendar one, the first day of the next period.

    None when the tier cannot be lost that way (the first tier, a lifetime window) or when it
    is already below (the next review demotes it).
    """
    days = rolling_days(tiers.window)
    current = index_of(tiers, held)
    if not current or tiers.window == "all":
        return None
    if days is None:
        dates = period_dates(period_key(tiers.window, today))
        return dates[1] + dt.timedelta(days=1) if dates and tiers.steps[current].at > 0 else None
    threshold = tiers.steps[current].at
    first = today - dt.timedelta(days=days - 1)
    value = sum(v for d, v in daily.items() if first <= d <= today)
    if value < threshold:
        return None
    for day in sorted(d for d in daily if first <= d <= today):
        value -= daily[day]  # ``day`` leaves the window on day + N
        if value < threshold:
            return day + dt.timedelta(days=days)
    return None
