"""Fairness and over-gamification: how a metric or currency is shared in a period, who keeps the top,
who never earns, whether points inflate, how rare each badge is. Each with a plain sentence.

The population of a period (docs/insights.md) is everyone with an event in it; someone with nothing on the
metric counts as 0. Values are SQL aggregates: metric totals as stored (the period itself when the
program keeps it, else the sum of its days) or the currency earned in the period from the ledger.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.engine.positions import EARNING_KINDS
from levelup.errors import FieldError, Invalid
from levelup.insights.common import AWARD_KINDS, EARLIEST, LATEST, gini, percent, top_share
from levelup.metrics.periods import GRAINS, grain_of, period_dates, period_key, zone
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

HISTORY = 6  # periods looked back for rank churn and inflation


def instants(period: str, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a local calendar period covers: [start, end)."""
    dates = period_dates(period)
    if dates is None:
        return dt.datetime(1900, 1, 1, tzinfo=dt.UTC), dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
    tz = zone(timezone)
    start = dt.datetime.combine(dates[0], dt.time(), tz).astimezone(dt.UTC)
    return start, dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)


def _earlier(period: str, n: int) -> list[str]:
    """``period`` and up to n - 1 periods of its grain before it, oldest first."""
    grain = grain_of(period)
    if grain == "all":
        return [period]
    found = [period]
    while len(found) < n:
        dates = period_dates(found[-1])
        assert dates is not None
        found.append(period_key(grain, dates[0] - dt.timedelta(days=1)))
    return found[::-1]


class Subject:
    """What is shared: a metric (as stored) or a currency (as earned), per participant in a period."""

    def __init__(self, compiled: CompiledProgram, metric: str | None, currency: str | None) -> None:
        if (metric is None) == (currency is None):
            raise Invalid("metric or currency", errors=[FieldError("metric", "give a metric or a currency, not both")])
        if metric is not None and metric not in compiled.metrics_by_key:
            raise Invalid(
                f"no metric {metric!r}", errors=[FieldError("metric", f"one of {sorted(compiled.metrics_by_key)}")]
            )
        if currency is not None and currency not in compiled.currencies:
            raise Invalid(
                f"no currency {currency!r}", errors=[FieldError("currency", f"one of {sorted(compiled.currencies)}")]
            )
        self.compiled, self.metric, self.currency = compiled, metric, currency
        self.name = metric or compiled.currencies[currency or ""].name

    def values(self, connection: Connection, program_id: int, period: str) -> dict[int, float]:
        if self.currency is not None:
            start, end = instants(period, self.compiled.timezone)
            c = t.ledger_entries.c
            query = (
                select(c.participant_id, func.sum(c.amount))
                .where(
                    c.program_id == program_id,
                    c.currency == self.currency,
                    c.kind.in_(EARNING_KINDS),
                    c.at >= start,
                    c.at < end,
                )
                .group_by(c.participant_id)
            )
            return {int(p): float(v) for p, v in connection.execute(query)}
        assert self.metric is not None
        kept = self.compiled.kept.get(self.metric)
        m = t.metric_totals.c
        base = (m.program_id == program_id, m.metric == self.metric, m.subject_kind == "p")
        if kept is not None and kept.holds(period, "p"):
            query = select(m.subject_id, m.value).where(*base, m.period == period)
            return {int(p): float(v) for p, v in connection.execute(query)}
        dates = period_dates(period)
        parts = _parts(period, kept.person if kept else ())
        if dates is None or parts is None:
            grains = [g for i, g in enumerate(GRAINS) if kept and i in kept.person]
            raise Invalid(
                f"metric {self.metric!r} is not kept by {grain_of(period)}",
                errors=[FieldError("period", f"the program keeps {self.metric} by {grains or 'nothing'}")],
            )
        query = select(m.subject_id, func.sum(m.value)).where(*base).group_by(m.subject_id)
        if parts == "day":
            days = (func.length(m.period) == 10, m.period >= dates[0].isoformat(), m.period <= dates[1].isoformat())
            query = query.where(*days)
        else:
            query = query.where(m.period.in_(sorted(parts)))
        return {int(p): float(v) for p, v in connection.execute(query)}


def _parts(period: str, kept: tuple[int, ...]) -> set[str] | str | None:
    """The stored rows that add up to a period the metric is not kept by: the keys of the coarsest kept
    grain that tiles it (months of a quarter, quarters of a year), or "day" for its days; None if none does."""
    dates = period_dates(period)
    grain = grain_of(period)
    tiling = {"week": ("day",), "month": ("day",), "quarter": ("day", "month"), "year": ("day", "month", "quarter")}
    usable = [g for g in tiling.get(grain, ()) if GRAINS.index(g) in kept]
    if dates is None or not usable:
        return None
    if usable[-1] == "day":
        return "day"
    days = (dates[0] + dt.timedelta(days=i) for i in range((dates[1] - dates[0]).days + 1))
    return {period_key(usable[-1], day) for day in days}


def _active(connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime) -> set[int]:
    e = t.events.c
    query = select(e.participant_id).where(e.program_id == program_id, e.occurred_at >= start, e.occurred_at < end)
    return set(connection.execute(query.distinct()).scalars())


def _names(connection: Connection, program_id: int) -> dict[int, str]:
    p = t.participants.c
    return dict(connection.execute(select(p.id, p.external_id).where(p.program_id == program_id)).all())


def _teams(connection: Connection, program_id: int) -> dict[str, set[int]]:
    members: dict[str, set[int]] = defaultdict(set)
    query = (
        select(t.teams.c.external_id, t.memberships.c.participant_id)
        .join(t.memberships, t.memberships.c.team_id == t.teams.c.id)
        .where(t.teams.c.program_id == program_id)
    )
    for team, participant in connection.execute(query):
        members[team].add(participant)
    return members


def _shared(values: list[float]) -> dict[str, Any]:
    return {"participants": len(values), "gini": round(gini(values), 4), "top10_share": round(top_share(values), 4)}


def _churn(connection: Connection, program_id: int, subject: Subject, period: str) -> dict[str, Any]:
    """The top 3 of each period up to this one, and how many of those seats were held the period before."""
    names = _names(connection, program_id)
    tops = []
    for p in _earlier(period, HISTORY):
        values = subject.values(connection, program_id, p)
        ranked = sorted((v, names.get(s, str(s))) for s, v in values.items() if v > 0)[::-1][:3]
        tops.append({"period": p, "top": [name for _, name in ranked]})
    seats = kept = 0
    for before, now in itertools.pairwise(tops):
        seats += len(now["top"])
        kept += len(set(now["top"]) & set(before["top"]))
    share = kept / seats if seats else 0.0
    return {
        "periods": tops,
        "repeat_share": round(share, 4),
        "sentence": f"{percent(share)} of the top-3 places were held by someone already in the top 3 the period before",
    }


def _inflation(connection: Connection, program_id: int, compiled: CompiledProgram, period: str) -> dict[str, Any]:
    """Points awarded per event, month by month up to the period's end: does the same play pay more over time?"""
    last = instants(period, compiled.timezone)[1] - dt.timedelta(microseconds=1)
    month = period_key("month", last.astimezone(zone(compiled.timezone)).date())
    rows: list[dict[str, Any]] = []
    e, c = t.events.c, t.ledger_entries.c
    for m in _earlier(month, HISTORY):
        start, end = instants(m, compiled.timezone)
        events = connection.execute(
            select(func.count()).where(e.program_id == program_id, e.occurred_at >= start, e.occurred_at < end)
        ).scalar_one()
        awarded = dict(
            connection.execute(
                select(c.currency, func.sum(c.amount))
                .where(c.program_id == program_id, c.kind.in_(AWARD_KINDS), c.at >= start, c.at < end)
                .group_by(c.currency)
            ).all()
        )
        per = {k: round(int(awarded.get(k, 0)) / events, 4) if events else 0.0 for k in compiled.currencies}
        rows.append({"month": m, "events": int(events), "per_event": per})
    first = next((r for r in rows if r["events"]), None)
    sentence = "no events in these months"
    if first is not None and rows[-1]["events"]:
        parts = []
        for k, cur in compiled.currencies.items():
            a, b = first["per_event"][k], rows[-1]["per_event"][k]
            if a:
                change = f"{(b - a) / a:+.0%}"
                parts.append(
                    f"{cur.name} per event {a:.1f} in {first['month']} → {b:.1f} in {rows[-1]['month']} ({change})"
                )
        sentence = "; ".join(parts) or "nothing was awarded"
    return {"months": rows, "sentence": sentence}


def _never(connection: Connection, program_id: int, end: dt.datetime) -> dict[str, Any]:
    """Of everyone who ever played (up to the period's end), who never got any award."""
    e, c = t.events.c, t.ledger_entries.c
    players = select(e.participant_id).where(e.program_id == program_id, e.occurred_at < end).distinct().subquery()
    rewarded = select(c.participant_id).where(
        c.program_id == program_id, c.kind.in_(AWARD_KINDS), c.amount > 0, c.at < end
    )
    total = connection.execute(select(func.count()).select_from(players)).scalar_one()
    never = connection.execute(
        select(func.count()).select_from(players).where(players.c.participant_id.not_in(rewarded))
    ).scalar_one()
    share = never / total if total else 0.0
    return {
        "participants": int(total),
        "never_rewarded": int(never),
        "share": round(share, 4),
        "sentence": f"{percent(share)} of participants ({never:,} of {total:,}) never reached any reward",
    }


def _rarity(
    connection: Connection, program_id: int, compiled: CompiledProgram, players: int, end: dt.datetime
) -> list[dict[str, Any]]:
    """Each grade's holders as the period ends (awarded before its end, not revoked by an event before it),
    over the ``players`` up to then: an earlier period is read as it stood, not as it stands now."""
    b, e = t.badge_grants.c, t.events.c
    revoked_before = (
        select(e.seq).where(e.program_id == program_id, e.event_id == b.revoked_by, e.occurred_at < end).exists()
    )
    held = {
        (badge, grade): int(n)
        for badge, grade, n in connection.execute(
            select(b.badge, b.grade, func.count(func.distinct(b.participant_id)))
            .where(b.program_id == program_id, b.awarded_at < end, ~revoked_before)
            .group_by(b.badge, b.grade)
        )
    }
    out = []
    for badge in compiled.doc.badges:
        for grade in badge.grades:
            n = held.get((badge.key, grade.name), 0)
            share = n / players if players else 0.0
            out.append(
                {
                    "badge": badge.key,
                    "grade": grade.name,
                    "holders": n,
                    "share": round(share, 4),
                    "sentence": f"{percent(share)} hold {badge.name} {grade.name}",
                }
            )
    return out


def fairness(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    period: str,
    metric: str | None = None,
    currency: str | None = None,
) -> dict[str, Any]:
    try:
        dates = period_dates(period)
    except ValueError as exc:
        raise Invalid(str(exc), errors=[FieldError("period", str(exc))]) from None
    if dates is not None and not EARLIEST.year <= dates[0].year <= LATEST.year - 1:
        raise Invalid("period out of range", errors=[FieldError("period", "in the years 1900 to 2999")])
    subject = Subject(compiled, metric, currency)
    start, end = instants(period, compiled.timezone)
    active = _active(connection, program.id, start, end)
    values = subject.values(connection, program.id, period)
    everyone = [values.get(p, 0.0) for p in active]
    shared = _shared(everyone)
    teams = [
        {"team": team} | _shared([values.get(p, 0.0) for p in members & active])
        for team, members in sorted(_teams(connection, program.id).items())
        if members & active
    ]
    never = _never(connection, program.id, end)
    top = max(1, -(-len(everyone) // 10)) if everyone else 0
    return {
        "metric": metric,
        "currency": currency,
        "period": period,
        **shared,
        "sentence": (
            f"the top 10% ({top:,} of {len(everyone):,} active) earned {percent(shared['top10_share'])} "
            f"of the {subject.name} in {period}; Gini {shared['gini']:.2f} (0: equal shares, 1: one takes all)"
        ),
        "teams": teams,
        "top3": _churn(connection, program.id, subject, period),
        "never_rewarded": never,
        "inflation": _inflation(connection, program.id, compiled, period),
        "badges": _rarity(connection, program.id, compiled, never["participants"], end),
    }
