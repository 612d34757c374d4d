"""Streaks: consecutive periods (days, weeks, months) with qualifying activity.

A streak is kept as runs of qualifying periods, each ``[first, last, count]`` in
period ordinals. A run tolerates up to ``grace`` missed periods between two
qualifying ones (a freeze): the missed periods are forgiven but not counted.
Because runs are merged whichever order periods qualify in, a late event that
fills a gap repairs the streak.
"""

from __future__ import annotations

import datetime as dt

MAX_RUNS = 20  # the oldest short runs beyond this are forgotten; best is kept apart

Run = list[int]  # [first ordinal, last ordinal, qualifying periods]


def ordinal(period: str, day: dt.date) -> int:
    """A number per period such that consecutive periods differ by one."""
    if period == "day":
        return day.toordinal()
    if period == "week":
        return (day - dt.timedelta(days=day.weekday())).toordinal() // 7
    return day.year * 12 + day.month - 1


def add_period(runs: list[Run], best: int, point: int, grace: int) -> tuple[list[Run], int]:
    """Runs and best after ``point`` qualifies (it must not qualify already)."""
    merged = [point, point, 1]
    kept: list[Run] = []
    for run in runs:
        if run[0] - grace - 1 <= merged[1] and merged[0] <= run[1] + grace + 1:
            merged = [min(merged[0], run[0]), max(merged[1], run[1]), merged[2] + run[2]]
        else:
            kept.append(run)
    kept.append(merged)
    kept.sort(key=lambda r: r[1])
    return kept[-MAX_RUNS:], max(best, merged[2])


def current(runs: list[Run], now: int, grace: int) -> int:
    """The length of the streak still alive at ``now`` (its last period within grace of now), else 0."""
    if not runs:
        return 0
    last = runs[-1]
    return last[2] if now - last[1] <= grace + 1 else 0
