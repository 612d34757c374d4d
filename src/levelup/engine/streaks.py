"""Streaks: consecutive periods (days, weeks, months) with qualifying activity.

A streak keeps the set of its qualifying periods (as ordinals, the newest
``MAX_PERIODS``). Runs are read off that set: a run tolerates up to ``grace``
missed periods between two qualifying ones (a freeze) — forgiven, not counted.
A late event adds its period wherever it falls, so it repairs a streak; a reversal
that leaves a period without qualifying activity removes it, so it can break one.
"""

from __future__ import annotations

import datetime as dt

MAX_PERIODS = 1000  # about 2.7 years of days; older periods are forgotten

Run = tuple[int, int, int]  # first ordinal, last ordinal, qualifying periods


def ordinal(period: str, day: dt.date) -> int:
    """A number per period such that consecutive periods differ by one."""
    if period == "day":
        return day.toordinal()
    if period == "week":
        return (day - dt.timedelta(days=day.weekday())).toordinal() // 7
    return day.year * 12 + day.month - 1


def runs(periods: list[int], grace: int) -> list[Run]:
    """Runs of qualifying periods, oldest first."""
    out: list[Run] = []
    for point in sorted(periods):
        if out and point - out[-1][1] <= grace + 1:
            first, _, count = out[-1]
            out[-1] = (first, point, count + 1)
        else:
            out.append((point, point, 1))
    return out


def with_period(periods: list[int], point: int, qualifies: bool) -> list[int]:
    """The qualifying periods after ``point`` starts or stops qualifying."""
    found = set(periods)
    (found.add if qualifies else found.discard)(point)
    return sorted(found)[-MAX_PERIODS:]


def best(found: list[Run]) -> int:
    """The longest of the runs (``runs``), in qualifying periods."""
    return max((r[2] for r in found), default=0)


def current(periods: list[int], now: int, grace: int) -> int:
    """The length of the run still alive at ``now`` (its last period within grace of now), else 0."""
    found = runs(periods, grace)
    if not found:
        return 0
    last = found[-1]
    return last[2] if now - last[1] <= grace + 1 else 0
