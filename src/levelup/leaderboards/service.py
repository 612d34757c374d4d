"""Leaderboards: participants or teams ranked by a metric or a currency over a period.

Ties share a rank (1, 2, 2, 4); inside a tie the order is the internal id (the order in which
participants or teams first appeared), so pages are stable and an index serves the order.

Plain boards (a calendar window, no scope, no normalization; or a currency board over all
time) are answered by indexes and the bucket counts of :mod:`levelup.leaderboards.ranks`,
at any size; so are normalized boards on a calendar window, from the quotients
:mod:`levelup.leaderboards.normalised` keeps, and rolling boards and currency boards over a window, from
the sums (and, normalized, the quotients) :mod:`levelup.leaderboards.windows` keeps for today's period. A
board whose rows are not kept (a period the board-windows job has not filled) is ranked by the database (a
page, then one count: two scans of the board's rows, nothing in Python); scoped boards rank in Python over
the board's rows (O(rows) a request).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Subquery,
    Table,
    case,
    func,
    literal,
    select,
)

from levelup.engine.positions import EARNING_KINDS
from levelup.errors import FieldError, Invalid, NotFound
from levelup.leaderboards import normalised, ranks, redis_board, windows
from levelup.metrics.periods import grain_of, local_date, period_dates, period_key, rolling_days, window_dates, zone
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Leaderboard
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t
from levelup.storage.sql import exact_sum

MAX_LIMIT = 1000


class NotIndexed(Exception):
    """The board would be ranked afresh (its rows are not kept), and the caller asked for an index read only."""


@dataclass(frozen=True)
class Row:
    id: str
    name: str | None
    value: float
    order: int = 0  # the internal id: the order inside a tie (then ``id``)


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


def _values(
    program: ProgramRecord, compiled: CompiledProgram, board: Leaderboard, period: str, today: dt.date
) -> Select[Any]:
    """(subject id, value) of each subject with a value on the board in ``period``."""
    if board.metric is not None:
        return _metric_query(program, board, period, today)
    return _currency_query(program, compiled, board, period, today)


def _metric_query(program: ProgramRecord, board: Leaderboard, period: str, today: dt.date) -> Select[Any]:
    """(subject id, value) of each subject with a value on a metric board in ``period``."""
    kind = "t" if board.by == "team" else "p"
    c = t.metric_totals.c
    base = [c.program_id == program.id, c.metric == board.metric, c.subject_kind == kind]
    days = rolling_days(period)
    if days is None:
        query = select(c.subject_id, c.value).where(*base, c.period == period)
    else:
        first, last = window_dates(period, today) or (today, today)
        query = (
            select(c.subject_id, exact_sum(c.value))
            .where(*base, c.period >= first.isoformat(), c.period <= last.isoformat(), func.length(c.period) == 10)
            .group_by(c.subject_id)
        )
    return query


def _currency_query(
    program: ProgramRecord, compiled: CompiledProgram, board: Leaderboard, period: str, today: dt.date
) -> Select[Any]:
    """(participant id, amount earned) of each participant with an amount on a currency board in ``period``."""
    if period == "all":
        c = t.positions.c
        return select(c.participant_id, c.earned).where(c.program_id == program.id, c.currency == board.currency)
    dates = window_dates(period, today) if rolling_days(period) else period_dates(period)
    assert dates is not None
    tz = zone(compiled.timezone)
    start = dt.datetime.combine(dates[0], dt.time(), tz)
    end = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), tz)
    c = t.ledger_entries.c
    return (
        select(c.participant_id, func.sum(c.amount))
        .where(
            c.program_id == program.id,
            c.currency == board.currency,
            c.kind.in_(EARNING_KINDS),  # what was earned in the window (as positions.earned counts it)
            c.at >= start,
            c.at < end,
        )
        .group_by(c.participant_id)
    )


def rank(rows: Sequence[Row]) -> list[tuple[int, Row]]:
    """Competition ranking: ties share a rank and the next rank skips (1, 2, 2, 4); inside a tie,
    by ``order`` (the internal id, as the fast path's index has it), then ``id``."""
    ordered = sorted(rows, key=lambda r: (-r.value, r.order, r.id))
    ranked: list[tuple[int, Row]] = []
    for i, row in enumerate(ordered):
        same = ranked and ranked[-1][1].value == row.value
        ranked.append((ranked[-1][0] if same else i + 1, row))
    return ranked


def _board(program: ProgramRecord, compiled: CompiledProgram, key: str) -> Leaderboard:
    board = next((b for b in compiled.doc.leaderboards if b.key == key), None)
    if board is None:
        raise NotFound(f"no leaderboard {key!r} in program {program.key!r}")
    return board


def _today(compiled: CompiledProgram, now: dt.datetime | None) -> dt.date:
    return local_date(now or dt.datetime.now(dt.UTC), compiled.timezone)


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
    indexed_only: bool = False,
) -> dict[str, Any]:
    """One page of a board (``offset``/``limit``), or ``limit`` neighbours each side of ``around``. With
    ``indexed_only``, :class:`NotIndexed` instead of ranking afresh a board whose rows are not kept (a page that
    must stay fast at any size)."""
    board = _board(program, compiled, key)
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise Invalid("bad paging", errors=[FieldError("limit", f"1..{MAX_LIMIT}; offset ≥ 0")])
    today = _today(compiled, now)
    period_name = _period_for(board, period, today)
    head = {"key": board.key, "period": period_name, "by": board.by, "normalized": board.normalize}
    plain = _plain_board(connection, program, compiled, board, period_name, today) if not scope else None
    if plain is not None:
        return head | _fast(connection, program, board, plain, period_name, limit=limit, offset=offset, around=around)
    if indexed_only:
        raise NotIndexed(f"board {board.key!r} for {period_name} is ranked afresh")
    if not scope:
        values = _values(program, compiled, board, period_name, today)
        ranked = _in_sql(connection, program.id, board, values, f"board {board.key!r} for {period_name}")
        return head | ranked.page(connection, limit=limit, offset=offset, around=around)
    return head | _slow(
        connection, program, compiled, board, period_name, today, scope=scope, limit=limit, offset=offset, around=around
    )


def standing(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    key: str,
    subject: str,
    *,
    period: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Where one participant (or team) stands on a board: rank, value and the board's total. On a
    plain board that is three short reads, whatever the board's size; on others, a ranking of all."""
    board = _board(program, compiled, key)
    today = _today(compiled, now)
    period_name = _period_for(board, period, today)
    plain = _plain_board(connection, program, compiled, board, period_name, today)
    if plain is None:
        body = leaderboard(connection, program, compiled, key, period=period, around=subject, limit=1, now=now)
        entry = next(e for e in body["entries"] if e["id"] == subject)
        rank_, value, total = entry["rank"], entry["value"], body["total"]
        return {"key": key, "period": period_name, "id": subject, "rank": rank_, "value": value, "total": total}
    subjects = t.teams if board.by == "team" else t.participants
    copy = _copy(connection, plain)
    if copy is not None:  # Redis answers when it can; else (down, being rebuilt) the database, just as right
        internal = _internal_id(connection, program, subjects, subject)
        there = copy.standing(plain, program.version, internal) if internal is not None else None
        if there is None:
            raise NotFound(f"{subject!r} is not on board {key!r} for {period_name}")
        if there is not False:
            assert isinstance(there, redis_board.Standing)
            return {
                "key": key,
                "period": period_name,
                "id": subject,
                "rank": there.rank,
                "value": _number(there.value),
                "total": there.total,
            }
    found = ranks.locate(connection, plain, subjects, subject)
    if found is None:
        raise NotFound(f"{subject!r} is not on board {key!r} for {period_name}")
    [rank_], total = ranks.ranks_and_total(connection, plain, [found[1]])
    return {"key": key, "period": period_name, "id": subject, "rank": rank_, "value": _number(found[1]), "total": total}


def _internal_id(connection: Connection, program: ProgramRecord, subjects: Table, external_id: str) -> int | None:
    c = subjects.c
    found = connection.execute(select(c.id).where(c.program_id == program.id, c.external_id == external_id)).scalar()
    return None if found is None else int(found)


def _plain_board(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    board: Leaderboard,
    period: str,
    today: dt.date,
) -> ranks.Board | None:
    """The board's rows in ``rank_rows`` when it is a plain board the triggers keep, a normalised board whose
    quotients are kept (:mod:`levelup.leaderboards.normalised`) or a windowed board whose period is kept
    (:mod:`levelup.leaderboards.windows`), else None."""
    kept = windows.kept_board(connection, program.id, compiled, board, today, period)
    if kept is not None:
        return ranks.Board(program.id, windows.SOURCE, *kept)
    if board.normalize:
        projection = normalised.of_board(board)
        if projection is None or not ranks.registered(
            connection, program.id, normalised.SOURCE, projection.key, projection.grain
        ):
            return None
        return ranks.Board(program.id, normalised.SOURCE, projection.key, period)
    if board.metric is not None and rolling_days(period) is None:
        source, key, grain = ("t" if board.by == "team" else "p"), board.metric, board.window
    elif board.currency is not None and period == "all" and board.by == "participant":
        source, key, grain = "e", board.currency, "all"
    else:
        return None
    if not ranks.registered(connection, program.id, source, key, grain):
        return None  # every plain board of a stored version is kept; were one not, the slow path is still right
    return ranks.Board(program.id, source, key, period)


def _fast(
    connection: Connection,
    program: ProgramRecord,
    board: Leaderboard,
    plain: ranks.Board,
    period_name: str,
    *,
    limit: int,
    offset: int,
    around: str | None,
) -> dict[str, Any]:
    """A page (or a neighbourhood) from Redis when it can answer, else by index seeks, with ranks and
    total from the bucket counts."""
    subject_table = t.teams if board.by == "team" else t.participants
    copy = _copy(connection, plain)
    there = (
        False if copy is None else _from_redis(connection, copy, program, subject_table, plain, around, offset, limit)
    )
    if there is None:
        raise NotFound(f"{around!r} is not on board {board.key!r} for {period_name}")
    if there is not False:
        assert isinstance(there, tuple)
        entries, known, total = there
        placed = ranks.ranks(entries, known, offset=None if around else offset)
    elif around is not None:
        found = ranks.locate(connection, plain, subject_table, around)
        if found is None:
            raise NotFound(f"{around!r} is not on board {board.key!r} for {period_name}")
        entries = ranks.around(connection, plain, *found, limit)
        wanted = ranks.needed(entries)
        counted, total = ranks.ranks_and_total(connection, plain, wanted)
        placed = ranks.ranks(entries, dict(zip(wanted, counted, strict=True)), offset=None)
    else:
        entries = ranks.page(connection, plain, offset, limit)
        wanted = ranks.needed(entries, offset=offset)
        counted, total = ranks.ranks_and_total(connection, plain, wanted)
        placed = ranks.ranks(entries, dict(zip(wanted, counted, strict=True)), offset=offset)
    c = subject_table.c
    names = {
        r.id: (r.external_id, r.name)
        for r in connection.execute(select(c.id, c.external_id, c.name).where(c.id.in_([s for s, _ in entries])))
    }
    return {
        "total": total,
        "entries": [
            {"rank": r, "id": names[s][0], "name": names[s][1], "value": _number(v)}
            for r, (s, v) in zip(placed, entries, strict=True)
        ],
    }


def _copy(connection: Connection, plain: ranks.Board) -> redis_board.Boards | None:
    """The Redis copy, for the boards it holds (not normalised nor windowed ones: their rows are rewritten in
    SQL)."""
    return None if plain.source in (normalised.SOURCE, windows.SOURCE) else redis_board.of(connection)


def _from_redis(
    connection: Connection,
    copy: redis_board.Boards,
    program: ProgramRecord,
    subjects: Table,
    plain: ranks.Board,
    around: str | None,
    offset: int,
    limit: int,
) -> tuple[list[ranks.Entry], dict[float, int], int] | bool | None:
    """What :meth:`redis_board.Boards.entries` answers for a page or a neighbourhood."""
    if around is None:
        return copy.entries(plain, program.version, offset=offset, limit=limit)
    internal = _internal_id(connection, program, subjects, around)
    return None if internal is None else copy.entries(plain, program.version, limit=limit, around=internal)


def _divisors(connection: Connection, program_id: int, name: str) -> Subquery:
    """(participant id, divisor): a participant attribute as a number when it is a JSON number (not a boolean
    nor text), else NULL — a normalised board's handicap, in SQL, read where it is used. ``name`` is a plain
    identifier (the document's pattern says so). (Parsing each participant's attributes once, behind an
    OFFSET 0 fence, made PostgreSQL join the fenced rows by a nested loop: minutes at 100,000.)"""
    p = t.participants.c
    divisor = normalised.divisor(connection, name)
    return select(p.id.label("participant_id"), divisor.label("divisor")).where(p.program_id == program_id).subquery()


def _in_sql(connection: Connection, program_id: int, board: Leaderboard, values: Select[Any], called: str) -> _Ranked:
    """The board's rows (subject id, external id, name, value) as one query over its ``values``, divided by
    the participant's handicap on a normalised board (a participant without a positive number there is left
    off, as :func:`_slow` leaves them)."""
    raw = values.subquery()
    subject_id, amount = raw.c[0], raw.c[1]
    subjects = t.teams if board.by == "team" else t.participants
    value: ColumnElement[Any] = amount
    query = select(subject_id.label("subject_id"), subjects.c.external_id, subjects.c.name).join(
        subjects, subjects.c.id == subject_id
    )
    if board.normalize:
        divisors = _divisors(connection, program_id, board.normalize.rsplit(".", 1)[1])
        value = amount / divisors.c.divisor
        query = query.join(divisors, divisors.c.participant_id == subject_id).where(divisors.c.divisor > 0)
    return _Ranked(query.add_columns(value.label("value")).subquery(), called)


@dataclass(frozen=True)
class _Ranked:
    """A board ranked by the database (a board without a scope whose rows are not kept: a windowed board
    whose period the job has not filled): a page is the page's rows, then one count
    of the board and of the rows ahead of the page, instead of every row of the board in Python."""

    rows: Subquery
    called: str  # "board 'quota-month' for 2026-12", for a refusal

    def page(self, connection: Connection, *, limit: int, offset: int, around: str | None) -> dict[str, Any]:
        r = self.rows.c
        if around is not None:
            mine = connection.execute(select(r.value, r.subject_id).where(r.external_id == around)).first()
            if mine is None:
                raise NotFound(f"{around!r} is not on {self.called}")
            ahead = (r.value > mine.value) | ((r.value == mine.value) & (r.subject_id < mine.subject_id))
            position = connection.execute(select(func.count()).select_from(self.rows).where(ahead)).scalar_one()
            offset, limit = max(0, position - limit), position + limit + 1 - max(0, position - limit)
        found = connection.execute(
            select(r.subject_id, r.external_id, r.name, r.value)
            .order_by(r.value.desc(), r.subject_id)
            .offset(offset)
            .limit(limit)
        ).all()
        ahead_of_page = case((r.value > found[0].value, 1), else_=0) if found else literal(0)
        counted = select(func.count(), func.coalesce(func.sum(ahead_of_page), 0)).select_from(self.rows)
        total, above = connection.execute(counted).one()
        entries, rank = [], above + 1
        for i, row in enumerate(found):
            if i and row.value != found[i - 1].value:
                rank = offset + i + 1  # a tie's first row is ranked by its place; the rest share it
            entries.append({"rank": rank, "id": row.external_id, "name": row.name, "value": _number(float(row.value))})
        return {"total": total, "entries": entries}


def _slow(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    board: Leaderboard,
    period_name: str,
    today: dt.date,
    *,
    scope: str | None,
    limit: int,
    offset: int,
    around: str | None,
) -> dict[str, Any]:
    """Every row of the board, ranked in Python: for scoped boards (a team's members, an attribute's value),
    whose rows are not one query's."""
    query = _values(program, compiled, board, period_name, today)
    raw = [(int(s), float(v)) for s, v in connection.execute(query)]
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
        rows.append(Row(subject.external_id, subject.name, value, subject_id))
    ranked = rank(rows)
    if around is not None:
        position = next((i for i, (_, r) in enumerate(ranked) if r.id == around), None)
        if position is None:
            raise NotFound(f"{around!r} is not on board {board.key!r} for {period_name}")
        offset = max(0, position - limit)
        page = ranked[offset : position + limit + 1]
    else:
        page = ranked[offset : offset + limit]
    return {
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
