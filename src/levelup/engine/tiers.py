"""The tier decision, pure: qualifying value and the tier held → the tier to hold now.

The engine reviews a participant's tier after every event that moves the tier
metric, inside the stream, so the next event of the same batch earns with the
new multiplier exactly as if it had been sent alone; the tiers job reviews the
rest (activity leaving the window). Promotion is immediate. Demotion follows the program's policy: ``rerate`` (the
tier always follows the window) or ``one_step`` (drop at most one tier per
review period, so one slow month does not cost a customer two levels of status).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import NamedTuple

from levelup.engine.model import TierChange, TierStanding
from levelup.metrics.periods import period_dates, period_key, rolling_days, window_dates
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


def counts_in_window(tiers: Tiers, period: str, today: dt.date) -> bool:
    """Whether a metric period's value is part of the tier window as of ``today`` (a rolling window
    sums its days, a calendar one is one period)."""
    days = rolling_days(tiers.window)
    if days is None:
        return period == period_key(tiers.window, today)
    dates = window_dates(tiers.window, today)
    assert dates is not None
    return len(period) == 10 and dates[0].isoformat() <= period <= dates[1].isoformat()


def rerate(
    tiers: Tiers, value: float, standing: TierStanding, today: dt.date
) -> tuple[TierStanding, TierChange | None]:
    """Review one participant: the standing the value gives, and the change of the tier in force (if any)."""
    decision = decide(tiers, value, standing.earned or standing.tier, standing.dropped_in, today)
    in_force = standing.override or decision.tier
    after = TierStanding(in_force, decision.tier, decision.dropped_in or standing.dropped_in, standing.override)
    if in_force == standing.tier:
        return after, None
    before, now = index_of(tiers, standing.tier), index_of(tiers, in_force)
    up = before is None or (now is not None and now > before)
    reason = "override" if standing.override else f"{tiers.metric} over {tiers.window}"
    return after, TierChange(standing.tier, in_force, up, reason)


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
