"""Leaderboards: participants or teams ranked by a metric or a currency over a period.

Ties share a rank (1, 2, 2, 4); inside a tie the order is by id, so pages are stable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.errors import FieldError, Invalid, NotFound
from levelup.metrics.periods import grain_of, local_date, period_dates, period_key, rolling_days, window_dates, zone
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Leaderboard
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Row:
    id: str
    name: str | None
    value: float


def _period_for(board: Leaderboard, period: str | None, today: dt.date) -> str:
    """The period key asked for, checked against the board's window."""
    if rolling_days(board.window) is not None:
        if period not in (None, "current"):
            raise Invalid(
                "rolling boards have no past periods", errors=[FieldError("period", "not for a rolling window")]
            )
        return board.window
    if period in (None, "current"):
        return period_key(board.window, today)
    try:
        grain = grain_of(period)
    except ValueError as exc:
        raise Invalid(str(exc), errors=[FieldError("period", str(exc))]) from None
    if grain != board.window:
        raise Invalid(
            f"board {board.key} is cut by {board.window}",
            errors=[FieldError("period", f"expected a {board.window} period, got {period!r}")],
        )
    return period


def _metric_rows(
    connection: Connection, program: ProgramRecord, board: Leaderboard, period: str, today: dt.date
) -> list[tuple[int, float]]:
    kind = "t" if board.by == "team" else "p"
    c = t.metric_totals.c
    base = [c.program_id == program.id, c.metric == board.metric, c.subject_kind == kind]
    days = rolling_days(period)
    if days is None:
        query = select(c.subject_id, c.value).where(*base, c.period == period)
    else:
        first, last = window_dates(period, today) or (today, today)
        query = (
            select(c.subject_id, func.sum(c.value))
            .where(*base, c.period >= first.isoformat(), c.period <= last.isoformat(), func.length(c.period) == 10)
            .group_by(c.subject_id)
        )
    return [(int(s), float(v)) for s, v in connection.execute(query)]


def _currency_rows(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    board: Leaderboard,
    period: str,
    today: dt.date,
) -> list[tuple[int, float]]:
    if period == "all":
        c = t.positions.c
        query = select(c.participant_id, c.earned).where(c.program_id == program.id, c.currency == board.currency)
        return [(int(s), float(v)) for s, v in connection.execute(query)]
    dates = window_dates(period, today) if rolling_days(period) else period_dates(period)
    assert dates is not None
    tz = zone(compiled.timezone)
    start = dt.datetime.combine(dates[0], dt.time(), tz)
    end = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), tz)
    c = t.ledger_entries.c
    query = (
        select(c.participant_id, func.sum(c.amount))
        .where(
            c.program_id == program.id,
            c.currency == board.currency,
            c.kind.in_(("rule", "reversal", "challenge", "prize", "adjustment")),
            c.at >= start,
            c.at < end,
        )
        .group_by(c.participant_id)
    )
    return [(int(s), float(v)) for s, v in connection.execute(query)]


def rank(rows: Sequence[Row]) -> list[tuple[int, Row]]:
    """Competition ranking: ties share a rank and the next rank skips (1, 2, 2, 4)."""
    ordered = sorted(rows, key=lambda r: (-r.value, r.id))
    ranked: list[tuple[int, Row]] = []
    for i, row in enumerate(ordered):
        same = ranked and ranked[-1][1].value == row.value
        ranked.append((ranked[-1][0] if same else i + 1, row))
    return ranked


def leaderboard(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    key: str,
    *,
    period: str | None = None,
    scope: str | None = None,
    limit: int = 10,
    offset: int = 0,
    around: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    board = next((b for b in compiled.doc.leaderboards if b.key == key), None)
    if board is None:
        raise NotFound(f"no leaderboard {key!r} in program {program.key!r}")
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise Invalid("bad paging", errors=[FieldError("limit", f"1..{MAX_LIMIT}; offset ≥ 0")])
    today = local_date(now or dt.datetime.now(dt.UTC), compiled.timezone)
    period_name = _period_for(board, period, today)
    if board.metric is not None:
        raw = _metric_rows(connection, program, board, period_name, today)
    else:
        raw = _currency_rows(connection, program, compiled, board, period_name, today)
    subject_table = t.teams if board.by == "team" else t.participants
    columns = [subject_table.c.id, subject_table.c.external_id, subject_table.c.name]
    if board.by == "participant":
        columns.append(t.participants.c.attributes)
    subjects = {r.id: r for r in connection.execute(select(*columns).where(subject_table.c.program_id == program.id))}
    if scope:
        raw = _scoped(connection, program, board, scope, raw, subjects)
    rows = []
    for subject_id, value in raw:
        subject = subjects[subject_id]
        if board.normalize:
            divisor = (subject.attributes or {}).get(board.normalize.rsplit(".", 1)[1])
            if not isinstance(divisor, int | float) or isinstance(divisor, bool) or divisor <= 0:
                continue  # no handicap known: left off a normalized board rather than ranked wrongly
            value = value / divisor
        rows.append(Row(subject.external_id, subject.name, value))
    ranked = rank(rows)
    if around is not None:
        position = next((i for i, (_, r) in enumerate(ranked) if r.id == around), None)
        if position is None:
            raise NotFound(f"{around!r} is not on board {key!r} for {period_name}")
        offset = max(0, position - limit)
        page = ranked[offset : position + limit + 1]
    else:
        page = ranked[offset : offset + limit]
    return {
        "key": board.key,
        "period": period_name,
        "by": board.by,
        "normalized": board.normalize,
        "total": len(ranked),
        "entries": [{"rank": r, "id": row.id, "name": row.name, "value": _number(row.value)} for r, row in page],
    }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)


def _scoped(
    connection: Connection,
    program: ProgramRecord,
    board: Leaderboard,
    scope: str,
    raw: list[tuple[int, float]],
    subjects: dict[int, Any],
) -> list[tuple[int, float]]:
    kind, _, value = scope.partition(":")
    if board.by == "team" or not value:
        raise Invalid(
            "bad scope", errors=[FieldError("scope", "team:<id> or <attribute>:<value>, on participant boards")]
        )
    if kind == "team":
        members = set(
            connection.execute(
                select(t.memberships.c.participant_id)
                .join(t.teams, t.teams.c.id == t.memberships.c.team_id)
                .where(t.teams.c.program_id == program.id, t.teams.c.external_id == value)
            ).scalars()
        )
        return [(s, v) for s, v in raw if s in members]
    return [(s, v) for s, v in raw if str((subjects[s].attributes or {}).get(kind)) == value]
