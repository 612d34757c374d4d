"""Charts drawn on the server as inline SVG by leather (a registry package without dependencies): no
script, nothing fetched, and a text alternative beside each one."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import leather
from markupsafe import Markup

COLORS = ("#1f5fbf", "#17663a", "#8a4b00", "#a3202b")
TEN = (*COLORS, "#6a3d9a", "#00838f", "#c2185b", "#5d4037", "#455a64", "#9e7c00")  # a board's top 10, apart
WIDTH, HEIGHT = 640, 280


def _svg(chart: Any, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    """The chart as inline SVG, hidden from screen readers (the figure's caption says it in words); drawn at
    ``width`` × ``height`` and scaled to its box, so a smaller drawing reads larger."""
    svg: str = chart.to_svg(width=width, height=height)
    return Markup(svg.replace("<svg ", f'<svg aria-hidden="true" focusable="false" viewBox="0 0 {width} {height}" ', 1))


def _lines(title: str, series: Mapping[str, Sequence[tuple[dt.datetime, float]]], label: str) -> Markup:
    """Lines over dates, their ticks written with ``label`` (a strftime format)."""
    chart = leather.Chart(title)
    chart.add_x_axis(tick_formatter=lambda day, _i, _n: day.strftime(label))
    for (name, points), color in zip(series.items(), COLORS * 4, strict=False):
        chart.add_line(list(points), name=name, stroke_color=color)
    return _svg(chart)


def balances_over_time(
    entries: Sequence[Mapping[str, Any]], totals: Mapping[str, int], names: Mapping[str, str]
) -> Markup | None:
    """Each currency's total (available − arrears) at the end of each day the newest ``entries`` cover,
    counted back from ``totals`` (what it is now); None with fewer than two days to draw."""
    by_day: dict[dt.datetime, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry in entries:  # leather's time scale wants datetimes: each day's midnight
        by_day[dt.datetime.fromisoformat(entry["at"][:10])][entry["currency"]] += entry["amount"]
    days = sorted(by_day)
    if len(days) < 2:
        return None
    series = {}
    for currency, now in totals.items():
        points, running = [], now
        for day in reversed(days):  # the total at the end of a day is now less what came after it
            points.append((day, running))
            running -= by_day[day][currency]
        series[names.get(currency, currency)] = list(reversed(points))
    return _lines("Points over time", series, "%d %b")


def liability_by_month(report: Mapping[str, Any]) -> Markup | None:
    """Redeemed and expired points per month, per spendable currency; None with fewer than two months."""
    months = sorted({m for c in report["currencies"] for m in (*c["redeemed_by_month"], *c["expired_by_month"])})
    if len(months) < 2:
        return None
    first = {m: dt.datetime.fromisoformat(f"{m}-01") for m in months}
    series = {
        f"{c['currency']} {what}": [(first[m], c[f"{what}_by_month"].get(m, 0)) for m in months]
        for c in report["currencies"]
        for what in ("redeemed", "expired")
    }
    return _lines("Redeemed and expired by month", series, "%b %Y")


class _Exact(leather.Linear):  # type: ignore[misc]  # leather has no type hints
    """A linear scale over exactly ``low``..``high`` with the ticks given: leather's own searches for "nice"
    bounds and ticks, which costs more than drawing the whole chart."""

    def __init__(self, low: float, high: float, ticks: list[int]) -> None:
        self._data_min, self._data_max = Decimal(low), Decimal(high)
        self._ticker = SimpleNamespace(min=self._data_min, max=self._data_max, ticks=ticks)


class _Marks(leather.Dots):  # type: ignore[misc]  # leather has no type hints
    """A dot on each day's rank, with no legend entry of its own: the line beside it names it."""

    def legend_to_svg(self, series: Any, palette: Any) -> list[Any]:
        return []


def board_movement(ranks: Mapping[str, Mapping[dt.date, int]], days: Sequence[dt.date], deepest: int) -> Markup | None:
    """A bump chart: each name's rank at the end of each of ``days`` (rank 1 on top, ranks below ``deepest``
    left off, so a line breaks where someone was off the board's top); None with fewer than two days."""
    if len(days) < 2 or not ranks:
        return None
    held = tuple((name, tuple(sorted(by_day.items()))) for name, by_day in ranks.items())
    return _bump(held, tuple(days), deepest)


Held = tuple[tuple[str, tuple[tuple[dt.date, int], ...]], ...]  # (name, ((day, rank), …)), in the legend's order


@lru_cache(maxsize=128)
def _bump(ranks: Held, days: tuple[dt.date, ...], deepest: int) -> Markup:
    """:func:`board_movement`'s drawing, once per distinct picture: drawing costs ~15 ms, and a TV redraws
    every board it shows at each event, most of whose tops have not moved (the picture is a function of
    the ranks alone)."""
    chart = leather.Chart()
    x_ticks, y_ticks = list(range(len(days))), [-r for r in range(1, deepest + 1)]
    chart.set_x_scale(_Exact(-0.3, len(days) - 0.7, x_ticks))  # one tick a kept day, under its dots
    chart.add_x_axis(ticks=x_ticks, tick_formatter=lambda i, _i, _n: days[int(i)].strftime("%-d %b"))
    chart.set_y_scale(_Exact(-deepest - 0.4, -0.6, y_ticks))  # upside down: the leader's line at the top
    chart.add_y_axis(ticks=y_ticks, tick_formatter=lambda rank, _i, _n: f"#{-rank}")
    for (name, pairs), color in zip(ranks, TEN * 5, strict=False):
        held = dict(pairs)
        points = [(i, -held[day] if held.get(day, deepest + 1) <= deepest else None) for i, day in enumerate(days)]
        chart.add_line(points, name=name, stroke_color=color, width=3)
        chart.add_series(leather.Series(points), _Marks(fill_color=color, radius=4))
    return _svg(chart, 420, 260)


def engagement_by_period(periods: Sequence[Mapping[str, Any]], starts: Mapping[str, dt.date]) -> Markup | None:
    """Active participants and those paid nothing, per period of the engagement insight; None with fewer
    than two periods. ``starts``: each period's first local day (leather's time scale wants datetimes)."""
    if len(periods) < 2:
        return None
    at = {p["period"]: dt.datetime.combine(starts[p["period"]], dt.time()) for p in periods}
    series = {
        "active": [(at[p["period"]], p["active"]) for p in periods],
        "paid nothing": [(at[p["period"]], round(p["active"] * p["earned_nothing"])) for p in periods],
    }
    return _lines("Active participants", series, "%d %b %Y")
