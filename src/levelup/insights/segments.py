"""Customers: RFM segments and churn risk, from SQL aggregates per participant.

Recency and frequency come from the events of the metric's type (last one, how many); monetary is
the metric's all-time value as stored (the sum of one grain it is kept by). Each of the three is
scored 1–5 by quintile of the population (ties share the lower score), and the scores name exactly
one segment. Churn risk compares the days since a participant's last event with their own usual
gap between events: ``1 - exp(-days / usual)`` (an exponential wait: at the usual gap 0.63, at three
times it 0.95); someone with a single event is measured against the population's median gap.

Both lists page: ``offset`` and ``limit`` cut a stable order (segment members biggest first, churn riskiest
first, ties by participant id), and ``total`` says how many there are; ``limit=None`` lists everyone (the CLI's
export). Pages of one ``as_of`` over the same events cover everyone exactly once.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, and_, func, not_, select

from levelup.errors import FieldError, Invalid
from levelup.insights.common import median, percent
from levelup.metrics.periods import GRAINS, local_date
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import claim

SEGMENTS = ("Champions", "Loyal", "New", "Potential", "At risk", "Lost", "Hibernating")
MAX_LIST = 1000
DAY = 86400.0
HIGH_RISK = 0.9
REFRESH_CLAIM = "segments:refresh"  # the closed_periods row a day's refresh claims (no challenge key has a colon)

T = TypeVar("T")


def segment_of(r: int, f: int, m: int) -> str:
    """The one segment of recency, frequency and monetary scores (1–5, 5 best)."""
    if r >= 4 and f >= 4 and m >= 4:
        return "Champions"
    if r >= 3 and f >= 4:
        return "Loyal"
    if r >= 4 and f <= 1:
        return "New"
    if r >= 3:
        return "Potential"
    if f >= 3:
        return "At risk"
    return "Lost" if r == 1 else "Hibernating"


def quintiles(values: Sequence[float]) -> list[int]:
    """Each value's score 1–5 by its rank in the population (ties share the lower score)."""
    ordered = sorted(values)
    n = len(ordered)
    return [1 + (5 * bisect.bisect_left(ordered, v)) // n for v in values]


def grain_rows(period: ColumnElement[str], grain: str) -> ColumnElement[bool]:
    """The metric rows of one calendar grain, told apart by the shape of their period key (portable SQL)."""
    shapes = {
        "day": func.length(period) == 10,
        "week": period.like("____-W__"),
        "month": and_(func.length(period) == 7, not_(period.like("%Q%"))),
        "quarter": period.like("____-Q_"),
        "year": func.length(period) == 4,
        "all": period == "all",
    }
    return shapes[grain]


def default_metric(compiled: CompiledProgram) -> str:
    found = next((m.key for m in compiled.doc.metrics if m.aggregate == "sum"), None)
    if found is None:
        raise Invalid("no sum metric", errors=[FieldError("metric", "the program has no sum metric: name one")])
    return found


def _monetary(connection: Connection, program_id: int, compiled: CompiledProgram, metric: str) -> dict[int, float]:
    kept = compiled.kept.get(metric)
    if kept is None or not kept.person:
        raise Invalid(
            f"metric {metric!r} is not stored",
            errors=[FieldError("metric", "choose a metric the program reads (a board, badge, challenge, level)")],
        )
    grain = GRAINS[max(kept.person)]  # the coarsest kept: the fewest rows to add up
    m = t.metric_totals.c
    query = (
        select(m.subject_id, func.sum(m.value))
        .where(m.program_id == program_id, m.metric == metric, m.subject_kind == "p", grain_rows(m.period, grain))
        .group_by(m.subject_id)
    )
    return {int(s): float(v) for s, v in connection.execute(query)}


def _names(connection: Connection, program_id: int) -> dict[int, tuple[str, str | None]]:
    p = t.participants.c
    query = select(p.id, p.external_id, p.name).where(p.program_id == program_id)
    return {int(i): (e, n) for i, e, n in connection.execute(query)}


def _scored(
    connection: Connection, program_id: int, compiled: CompiledProgram, metric: str, as_of: dt.datetime
) -> tuple[list[int], list[float], list[float], list[float], list[str]]:
    """Everyone with an event of the metric's type before ``as_of``: ids, recency (days), frequency,
    monetary, and the segment their quintiles name."""
    e = t.events.c
    rows = connection.execute(
        select(e.participant_id, func.max(e.occurred_at), func.count())
        .where(e.program_id == program_id, e.type == compiled.metrics_by_key[metric].event, e.occurred_at < as_of)
        .group_by(e.participant_id)
    ).all()
    money = _monetary(connection, program_id, compiled, metric)
    ids = [int(r[0]) for r in rows]
    recency = [(as_of - r[1]).total_seconds() / DAY for r in rows]
    frequency = [float(r[2]) for r in rows]
    monetary = [money.get(i, 0.0) for i in ids]
    scores = zip(
        quintiles([-d for d in recency]), quintiles(frequency), quintiles(monetary), strict=True
    )  # recent is better: score the negated days
    return ids, recency, frequency, monetary, [segment_of(r, f, m) for r, f, m in scores]


def rfm(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    metric: str | None = None,
    as_of: dt.datetime,
    segment: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """The segments of everyone with an event of the metric's type before ``as_of``; with ``segment``, its
    members (``total``) biggest monetary first, ties by id, ``limit`` of them from ``offset`` (None: all)."""
    _check_page(limit, offset)
    metric = metric or default_metric(compiled)
    if metric not in compiled.metrics_by_key:
        raise Invalid(f"no metric {metric!r}", errors=[FieldError("metric", "not a metric of the program")])
    if segment is not None and segment not in SEGMENTS:
        raise Invalid("no such segment", errors=[FieldError("segment", f"one of {', '.join(SEGMENTS)}")])
    ids, recency, frequency, monetary, named = _scored(connection, program.id, compiled, metric, as_of)
    out: dict[str, Any] = {
        "metric": metric,
        "as_of": as_of.isoformat(),
        "participants": len(ids),
        "segments": [
            {
                "name": name,
                "participants": sum(1 for s in named if s == name),
                "share": round(sum(1 for s in named if s == name) / len(ids), 4) if ids else 0.0,
                "recency_days": _median_of(recency, named, name),
                "frequency": _median_of(frequency, named, name),
                "monetary": _median_of(monetary, named, name),
            }
            for name in SEGMENTS
        ],
    }
    if segment is not None:
        names = _names(connection, program.id)
        members = sorted(
            (i for i, s in enumerate(named) if s == segment), key=lambda i: (-monetary[i], names[ids[i]][0])
        )
        out["total"] = len(members)
        out["members"] = [
            {
                "id": names[ids[i]][0],
                "name": names[ids[i]][1],
                "recency_days": round(recency[i], 2),
                "frequency": int(frequency[i]),
                "monetary": monetary[i],
            }
            for i in _page(members, limit, offset)
        ]
    biggest = max(out["segments"], key=lambda s: s["participants"])
    out["sentence"] = (
        f"of {len(ids):,} participants with {metric}, {biggest['name']} is the largest segment "
        f"({percent(biggest['share'])})"
        if ids
        else f"nobody has {metric} yet"
    )
    return out


def _median_of(values: list[float], named: list[str], name: str) -> float | None:
    found = median([v for v, s in zip(values, named, strict=True) if s == name])
    return None if found is None else round(found, 2)


def _check_page(limit: int | None, offset: int) -> None:
    if limit is not None and limit < 1:
        raise Invalid("limit below 1", errors=[FieldError("limit", "at least 1")])
    if offset < 0:
        raise Invalid("negative offset", errors=[FieldError("offset", "0 or more")])


def _page(rows: list[T], limit: int | None, offset: int) -> list[T]:
    """``limit`` rows from ``offset`` (None: all the rest)."""
    return rows[offset:] if limit is None else rows[offset : offset + limit]


def churn(
    connection: Connection, program: ProgramRecord, *, as_of: dt.datetime, limit: int | None = 100, offset: int = 0
) -> dict[str, Any]:
    """Everyone who played before ``as_of`` (``total``), riskiest first, ties by id: ``limit`` of them from
    ``offset`` (None: all)."""
    _check_page(limit, offset)
    e = t.events.c
    rows = connection.execute(
        select(e.participant_id, func.min(e.occurred_at), func.max(e.occurred_at), func.count())
        .where(e.program_id == program.id, e.occurred_at < as_of)
        .group_by(e.participant_id)
    ).all()
    gaps = {int(p): (last - first).total_seconds() / DAY / (n - 1) for p, first, last, n in rows if n > 1}
    usual_default = median(list(gaps.values())) or 1.0
    names = _names(connection, program.id)
    found = []
    for p, _first, last, n in rows:
        usual = max(gaps.get(int(p), usual_default), 1 / 24)  # an hour at least: bursts are not a rhythm
        days = (as_of - last).total_seconds() / DAY
        found.append(
            {
                "id": names[int(p)][0],
                "name": names[int(p)][1],
                "risk": round(1 - math.exp(-days / usual), 4),
                "days_since_last": round(days, 2),
                "usual_gap_days": round(usual, 2),
                "events": int(n),
            }
        )
    found.sort(key=lambda r: (-r["risk"], r["id"]))
    high = sum(1 for r in found if r["risk"] >= HIGH_RISK)
    return {
        "as_of": as_of.isoformat(),
        "total": len(found),
        "participants": _page(found, limit, offset),
        "sentence": f"{high:,} of {len(found):,} participants ({percent(high / len(found) if found else 0)}) are at "
        "high risk (0.9 or more: silent for 2.3 times their usual gap or longer)",
    }


def slug(name: str) -> str:
    """A segment as rules read it: ``participant.segment == "at-risk"``."""
    return name.lower().replace(" ", "-")


SEGMENT_KEYS = tuple(slug(name) for name in SEGMENTS)


def in_force(connection: Connection, program_id: int, as_of: dt.datetime) -> dict[int, str]:
    """Each participant's segment in force at ``as_of`` (the latest assignment effective by then)."""
    s = t.segment_assignments.c
    latest = (
        select(s.participant_id, func.max(s.effective_at).label("at"))
        .where(s.program_id == program_id, s.effective_at <= as_of)
        .group_by(s.participant_id)
        .subquery()
    )
    query = select(s.participant_id, s.segment).join(
        latest, (latest.c.participant_id == s.participant_id) & (latest.c.at == s.effective_at)
    )
    return {int(p): segment for p, segment in connection.execute(query)}


def assign(
    connection: Connection, program: ProgramRecord, compiled: CompiledProgram, *, now: dt.datetime, metric: str | None
) -> dict[str, Any]:
    """Write everyone's RFM segment as of ``now`` where it changed: a row effective from ``now``, or just after the
    latest event already stored if that is later (an event dated ahead), so no event scored before this
    assignment falls after its effective time: replay reads for every event the segment live scoring read.
    Takes the program's scoring lock exclusively (PostgreSQL): batches in flight finish first, later ones
    see the new rows."""
    metric = metric or default_metric(compiled)
    programs._scoring_lock(connection, program.key, shared=False)  # as apply does: batches in flight finish first
    e = t.events.c
    latest = connection.execute(select(func.max(e.occurred_at)).where(e.program_id == program.id)).scalar()
    effective = max(now, latest + dt.timedelta(microseconds=1)) if latest is not None else now
    ids, _recency, _frequency, _monetary, named = _scored(connection, program.id, compiled, metric, now)
    before = in_force(connection, program.id, effective)
    changed = [
        {"participant_id": pid, "effective_at": effective, "program_id": program.id, "segment": slug(name)}
        for pid, name in zip(ids, named, strict=True)
        if before.get(pid) != slug(name)
    ]
    if changed:
        connection.execute(t.segment_assignments.insert(), changed)
    counts = {key: 0 for key in SEGMENT_KEYS}
    for name in named:
        counts[slug(name)] += 1
    return {
        "metric": metric,
        "effective_at": effective.isoformat(),
        "participants": len(ids),
        "changed": len(changed),
        "segments": counts,
        "sentence": f"{len(changed):,} of {len(ids):,} participants changed segment, effective "
        f"{effective:%Y-%m-%d %H:%M} UTC",
    }


def refresh(runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None) -> int:
    """The segments job: once a local day (claimed like a closed period: idempotent across workers), for each
    program whose document reads ``participant.segment``, assign segments as of now. Returns the changes."""
    now = now or dt.datetime.now(dt.UTC)
    changed = 0
    with runtime.db.read() as connection:
        chosen = programs.selected(connection, program_keys)
    for record in chosen:
        with runtime.db.write() as connection:
            compiled = runtime.programs.compiled(connection, record)
            if not compiled.reads_segment or default_metric_or_none(compiled) is None:
                continue
            programs._scoring_lock(connection, record.key, shared=False)  # before the claim, as apply takes it
            day = local_date(now, compiled.timezone).isoformat()
            row = {"program_id": record.id, "challenge": REFRESH_CLAIM, "period": day, "closed_at": now, "result": {}}
            if claim(connection, t.closed_periods, row):
                changed += assign(connection, record, compiled, now=now, metric=None)["changed"]
    return changed


def default_metric_or_none(compiled: CompiledProgram) -> str | None:
    return next((m.key for m in compiled.doc.metrics if m.aggregate == "sum"), None)
