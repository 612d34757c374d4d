"""Calendar periods cut in the program's time zone, and rolling windows.

A period is named by a key that sorts and reads naturally: ``2026-11-20`` (day),
``2026-W47`` (ISO week, Monday first), ``2026-11`` (month), ``2026-Q4``,
``2026`` and ``all``. Local dates come from zoneinfo, so DST days are 23 or 25
hours long and events land on the day a person there would say.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from functools import lru_cache
from zoneinfo import ZoneInfo

GRAINS = ("day", "week", "month", "quarter", "year", "all")
ROLLING = re.compile(r"^last_(\d+)_days$")
_KEY_PATTERNS = {
    "day": re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"),
    "week": re.compile(r"^(\d{4})-W(\d{2})$"),
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
    "year": re.compile(r"^(\d{4})$"),
    "all": re.compile(r"^all$"),
}


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(instant: dt.datetime, timezone: str) -> dt.date:
    return instant.astimezone(zone(timezone)).date()


@lru_cache(maxsize=8192)
def period_keys(day: dt.date) -> tuple[str, str, str, str, str, str]:
    """The keys of the day, week, month, quarter, year and all-time periods holding ``day``."""
    iso = day.isocalendar()
    return (
        day.isoformat(),
        f"{iso.year:04d}-W{iso.week:02d}",
        f"{day.year:04d}-{day.month:02d}",
        f"{day.year:04d}-Q{(day.month - 1) // 3 + 1}",
        f"{day.year:04d}",
        "all",
    )


def period_key(grain: str, day: dt.date) -> str:
    return period_keys(day)[GRAINS.index(grain)]


def grain_of(key: str) -> str:
    """Which calendar grain a period key names; ValueError if none, or if no such date exists."""
    for grain, pattern in _KEY_PATTERNS.items():
        if pattern.match(key):
            try:
                _dates(grain, key)
            except ValueError:
                break
            return grain
    raise ValueError(f"not a period: {key!r} (expected e.g. 2026-11-20, 2026-W47, 2026-11, 2026-Q4, 2026, all)")


def period_dates(key: str) -> tuple[dt.date, dt.date] | None:
    """First and last local date of a period (inclusive); None for ``all``."""
    return _dates(grain_of(key), key)


def _dates(grain: str, key: str) -> tuple[dt.date, dt.date] | None:
    if grain == "all":
        return None
    match = _KEY_PATTERNS[grain].match(key)
    assert match is not None
    year = int(match.group(1))
    if grain == "day":
        day = dt.date.fromisoformat(key)
        return day, day
    if grain == "week":
        first = dt.date.fromisocalendar(year, int(match.group(2)), 1)
        return first, first + dt.timedelta(days=min(6, (dt.date.max - first).days))  # 9999-W52 ends with 9999
    if grain == "month":
        first_month = last_month = int(match.group(2))
    elif grain == "quarter":
        first_month = (int(match.group(2)) - 1) * 3 + 1
        last_month = first_month + 2
    else:
        first_month, last_month = 1, 12
    return dt.date(year, first_month, 1), dt.date(year, last_month, calendar.monthrange(year, last_month)[1])


def period_end(key: str, timezone: str) -> dt.datetime | None:
    """The instant a period ends (exclusive), in UTC; None for ``all``. A period ending with the last
    date a ``datetime`` holds never ends (the largest instant), rather than overflowing."""
    dates = period_dates(key)
    if dates is None:
        return None
    if dates[1] >= dt.date.max - dt.timedelta(days=1):
        return dt.datetime.max.replace(tzinfo=dt.UTC)
    after = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), zone(timezone))
    return after.astimezone(dt.UTC)


def rolling_days(window: str) -> int | None:
    match = ROLLING.match(window)
    return int(match.group(1)) if match else None


def window_dates(window: str, today: dt.date) -> tuple[dt.date, dt.date] | None:
    """Local dates a window covers as of ``today``; None for ``all``."""
    days = rolling_days(window)
    if days is not None:
        return today - dt.timedelta(days=days - 1), today
    return period_dates(period_key(window, today))


def range_key(start: dt.date, end: dt.date) -> str:
    """The period key of a one-off date range (a challenge's ``start``..``end``): ``20261001-20261031``."""
    return f"{start:%Y%m%d}-{end:%Y%m%d}"
