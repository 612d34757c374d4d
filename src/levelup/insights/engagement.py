"""Engagement: who is active, what they earn, who comes back, and how soon play first pays.

Counts, firsts and completions are SQL aggregates. Cutting activity into the program's local days,
weeks and months is done here over a streamed two-column read (participant, time), because SQLite has
no time zones: memory is bounded by participants × periods, never by events.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.insights.common import AWARD_KINDS, Bucket, local_period, median, percent
from levelup.metrics.periods import period_dates, period_key
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

CHUNK = 10_000
RETENTION_WEEKS = 12
GRAINS = ("day", "week", "month")


def _activity(
    connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime, timezone: str, grain: str
) -> tuple[dict[str, set[int]], dict[str, int], dict[str, set[int]]]:
    """Per local period: the participants with an event, the events, and the week's actives (retention)."""
    e = t.events.c
    active: dict[str, set[int]] = defaultdict(set)
    events: dict[str, int] = defaultdict(int)
    weekly: dict[str, set[int]] = defaultdict(set)
    query = select(e.participant_id, e.occurred_at).where(
        e.program_id == program_id, e.occurred_at >= start, e.occurred_at < end
    )
    bucket, week = Bucket(timezone, grain), Bucket(timezone, "week")
    for participant, at in connection.execute(query, execution_options={"yield_per": CHUNK}):
        period = bucket(at)
        active[period].add(participant)
        events[period] += 1
        weekly[week(at)].add(participant)
    return active, events, weekly


def _awarded(
    connection: Connection, program_id: int, start: dt.datetime, end: dt.datetime, timezone: str, grain: str
) -> tuple[dict[str, set[int]], dict[str, int]]:
    """Per local period: who was paid by play, and how many awards (positive entries) were paid."""
    c = t.ledger_entries.c
    paid: dict[str, set[int]] = defaultdict(set)
    awards: dict[str, int] = defaultdict(int)
    query = select(c.participant_id, c.at).where(
        c.program_id == program_id, c.kind.in_(AWARD_KINDS), c.amount > 0, c.at >= start, c.at < end
    )
    bucket = Bucket(timezone, grain)
    for participant, at in connection.execute(query, execution_options={"yield_per": CHUNK}):
        period = bucket(at)
        paid[period].add(participant)
        awards[period] += 1
    return paid, awards


def _firsts(connection: Connection, program_id: int) -> tuple[dict[int, dt.datetime], dict[int, dt.datetime]]:
    """Each participant's first event and first award, ever."""
    e, c = t.events.c, t.ledger_entries.c
    first_event = dict(
        connection.execute(
            select(e.participant_id, func.min(e.occurred_at))
            .where(e.program_id == program_id)
            .group_by(e.participant_id)
        ).all()
    )
    first_award = dict(
        connection.execute(
            select(c.participant_id, func.min(c.at))
            .where(c.program_id == program_id, c.kind.in_(AWARD_KINDS), c.amount > 0)
            .group_by(c.participant_id)
        ).all()
    )
    return first_event, first_award


def _retention(
    first_event: dict[int, dt.datetime],
    weekly: dict[str, set[int]],
    timezone: str,
    start: dt.datetime,
    end: dt.datetime,
) -> list[dict[str, Any]]:
    """Cohorts by the week of their first event (inside the window): the share active each week after."""
    cohorts: dict[str, set[int]] = defaultdict(set)
    last = max(weekly, default="")
    for participant, at in first_event.items():
        if start <= at < end:
            cohorts[local_period(at, timezone, "week")].add(participant)
    out = []
    for cohort in sorted(cohorts):
        members = cohorts[cohort]
        dates = period_dates(cohort)
        assert dates is not None
        shares = []
        for k in range(RETENTION_WEEKS + 1):
            week = period_key("week", dates[0] + dt.timedelta(weeks=k))
            if week > last:  # weeks after the window are unknown, not lost
                break
            shares.append(round(len(members & weekly.get(week, set())) / len(members), 4))
        out.append({"cohort": cohort, "participants": len(members), "active_share": shares})
    return out


def _completions(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    start: dt.datetime,
    end: dt.datetime,
    active: int,
) -> list[dict[str, Any]]:
    """Per challenge: who completed it in the window, as a share of the window's active participants."""
    c = t.challenge_completions.c
    done: dict[str, int] = dict(
        connection.execute(
            select(c.challenge, func.count(func.distinct(c.participant_id)))
            .where(c.program_id == program_id, c.completed_at >= start, c.completed_at < end)
            .group_by(c.challenge)
        ).all()
    )
    closed = t.closed_periods.c
    settled: dict[str, int] = dict(
        connection.execute(
            select(closed.challenge, func.count())
            .where(closed.program_id == program_id, closed.closed_at >= start, closed.closed_at < end)
            .group_by(closed.challenge)
        ).all()
    )
    return [
        {
            "challenge": ch.key,
            "kind": ch.kind,
            "completed_by": int(done.get(ch.key, 0)),
            "rate": round(int(done.get(ch.key, 0)) / active, 4) if active else 0.0,
            "periods_closed": int(settled.get(ch.key, 0)),
        }
        for ch in compiled.doc.challenges
    ]


def engagement(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    start: dt.datetime,
    end: dt.datetime,
    grain: str = "week",
) -> dict[str, Any]:
    tz = compiled.timezone
    active, events, weekly = _activity(connection, program.id, start, end, tz, grain)
    paid, awards = _awarded(connection, program.id, start, end, tz, grain)
    periods = [
        {
            "period": period,
            "active": len(active[period]),
            "events": events[period],
            "awards": awards.get(period, 0),
            "awards_per_active": round(awards.get(period, 0) / len(active[period]), 4),
            "earned_nothing": round(len(active[period] - paid.get(period, set())) / len(active[period]), 4),
        }
        for period in sorted(active)
    ]
    everyone = set().union(*active.values()) if active else set()
    rewarded = set().union(*paid.values()) if paid else set()
    nothing = round(len(everyone - rewarded) / len(everyone), 4) if everyone else 0.0
    first_event, first_award = _firsts(connection, program.id)
    newcomers = [p for p, at in first_event.items() if start <= at < end]
    days = [(first_award[p] - first_event[p]).total_seconds() / 86400 for p in newcomers if p in first_award]
    waited = median(days)
    return {
        "window": {"from": start.isoformat(), "to": end.isoformat()},
        "grain": grain,
        "active": len(everyone),
        "earned_nothing": nothing,
        "periods": periods,
        "retention": _retention(first_event, weekly, tz, start, end),
        "first_award": {
            "newcomers": len(newcomers),
            "awarded": len(days),
            "median_days": None if waited is None else round(waited, 2),
        },
        "challenges": _completions(connection, program.id, compiled, start, end, len(everyone)),
        "sentence": (
            f"{len(everyone):,} participants were active; {percent(nothing)} of them earned nothing"
            + (f"; a newcomer's first award came after {waited:.1f} days (median)" if waited is not None else "")
            + "."
        ),
    }
