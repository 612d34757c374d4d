"""What every analysis shares: a bounded window of event time, local periods, and the statistics."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from levelup.errors import FieldError, Invalid
from levelup.metrics.periods import local_date, period_key

MAX_WINDOW = dt.timedelta(days=3660)  # ten years: every input is bounded
DEFAULT_WINDOW = dt.timedelta(days=91)
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
AWARD_KINDS = ("rule", "challenge", "prize", "referral")  # what play pays (not adjustments, kudos or refunds)


def parse_instant(text: str, what: str) -> dt.datetime:
    """An RFC 3339 instant (a bare date is midnight UTC), for the CLI."""
    try:
        found = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"bad {what}", errors=[FieldError(what, "RFC 3339, e.g. 2026-10-01T00:00:00Z")]) from None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def instant(value: dt.datetime | None, what: str) -> dt.datetime:
    """An instant with an offset, in the years events may have (1900–2999); None: now."""
    if value is None:
        return dt.datetime.now(dt.UTC)
    if value.tzinfo is None:
        raise Invalid("times need an offset", errors=[FieldError(what, "RFC 3339 with an offset")])
    if not EARLIEST <= value < LATEST:
        raise Invalid(f"{what} out of range", errors=[FieldError(what, "between the years 1900 and 2999")])
    return value


def window(start: dt.datetime | None, end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) checked: offsets, years 1900–2999, start first, at most ten years apart; by default the
    13 weeks up to now (or up to ``end``)."""
    end = instant(end, "to")
    start = instant(start or max(EARLIEST, end - DEFAULT_WINDOW), "from")
    if not start < end <= start + MAX_WINDOW:
        raise Invalid("bad window", errors=[FieldError("to", f"after from, at most {MAX_WINDOW.days} days after it")])
    return start, end


def local_period(instant: dt.datetime, timezone: str, grain: str) -> str:
    return period_key(grain, local_date(instant, timezone))


class Bucket:
    """The local period of an instant, remembered per quarter hour of UTC: a stream of a million events
    converts a few thousand slots, not a million instants. A slot is remembered only when its first and
    last instants fall in the same period; one that a period starts inside (a zone 45 minutes off the hour,
    an old local mean time) is converted instant by instant."""

    SLOT = 900  # seconds

    def __init__(self, timezone: str, grain: str) -> None:
        self.timezone, self.grain = timezone, grain
        self._seen: dict[int, str | None] = {}

    def __call__(self, instant: dt.datetime) -> str:
        slot = math.floor(instant.timestamp() / self.SLOT)
        if slot not in self._seen:
            first = dt.datetime.fromtimestamp(slot * self.SLOT, dt.UTC)
            last = first + dt.timedelta(seconds=self.SLOT, microseconds=-1)
            period = local_period(first, self.timezone, self.grain)
            self._seen[slot] = period if period == local_period(last, self.timezone, self.grain) else None
        return self._seen[slot] or local_period(instant, self.timezone, self.grain)


def gini(values: Sequence[float]) -> float:
    """0 when everyone has the same, 1 when one has everything (negative values count as 0)."""
    ordered = sorted(max(0.0, v) for v in values)
    total = sum(ordered)
    if not ordered or total == 0:
        return 0.0
    n = len(ordered)
    return 2 * sum((i + 1) * v for i, v in enumerate(ordered)) / (n * total) - (n + 1) / n


def top_share(values: Sequence[float], fraction: float = 0.1) -> float:
    """The share of the total held by the top ``fraction`` (at least one participant)."""
    ordered = sorted((max(0.0, v) for v in values), reverse=True)
    total = sum(ordered)
    if total == 0:
        return 0.0
    return sum(ordered[: max(1, math.ceil(fraction * len(ordered)))]) / total


def median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def percent(share: float) -> str:
    return f"{100 * share:.0f}%"
