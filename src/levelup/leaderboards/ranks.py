"""Ranks answered by indexes, for plain boards of any size (docs/program-document.md, docs/api.md).

A plain board has a calendar window and no normalization (a metric per participant or team),
or ranks what participants earned of a currency over all time. Migration 0004 registers the
plain boards of every stored program version in ``rank_boards``, and its triggers keep a copy
of their rows in ``rank_rows``, indexed in board order: value descending, then internal id
(the order of first appearance). A page is an index range.

The rank of a value (ties share a rank: 1, 2, 2, 4) is 1 + the rows above it. Counting them
over the index walks every one (tens of ms at rank 999,000 of 1,000,000), so the triggers
also keep ``rank_buckets``: how many rows of each board fall in each logarithmic value
bucket. Then

    rank(x) = 1 + Σ n of the buckets above x's bucket + the rows of x's bucket above x,

the last an index range of at most one bucket (0.39% of the value range). Deep pages use
the same counts to find the bucket that holds their first row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Connection,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    func,
    literal,
    literal_column,
    select,
    text,
    union_all,
)

from levelup.storage import tables as t

# The bucket function of migration 0004, which the triggers use (a migration is frozen history, so
# it keeps its own copy; a test compares what the triggers keep with a count done with this one).
# 256 buckets per factor e of value: each is 0.39% wide, and every integer below 256 has its own.
PER_E = 256
OFFSET = 1_000_000
# Relative margin between a bucket's computed bound and any value the database's ln() puts in it
# (ln is within an ulp, ~1e-16 relative; the margin only widens a range scan by a hair).
SLACK = 1e-9
# Pages starting this deep find their bucket from the counts instead of skipping rows one by one.
DEEP_OFFSET = 2_000


def bucket_sql(v: str) -> str:
    """The bucket of the value expression ``v``, as SQL both dialects evaluate alike."""
    return (
        f"(CASE WHEN {v} > 0 THEN {OFFSET} + CAST(floor(ln({v}) * {PER_E}) AS INTEGER) "
        f"WHEN {v} < 0 THEN -{OFFSET} - CAST(floor(ln(-({v})) * {PER_E}) AS INTEGER) ELSE 0 END)"
    )


def bucket_at_or_above(value: float) -> int:
    """A bucket no lower than the one the database gives ``value`` (nudged up, against ln rounding)."""
    if value > 0:  # ln is at most ~710 in size: 1e-12 is some ten ulps of it
        return OFFSET + math.floor((math.log(value) + 1e-12) * PER_E)
    if value < 0:
        return -OFFSET - math.floor((math.log(-value) - 1e-12) * PER_E)
    return 0


def bucket_ceiling(bucket: int) -> float:
    """A value no lower than any value the database puts in ``bucket`` or below."""
    if bucket > 0:
        exponent = (bucket - OFFSET + 1) / PER_E
        return math.exp(exponent) * (1 + SLACK) if exponent < 709 else math.inf
    if bucket < 0:
        return -math.exp((-bucket - OFFSET) / PER_E) * (1 - SLACK)
    return 0.0


R = t.rank_rows.c
# The reads below are statements built once, with the board and the values as parameters: building one
# (SQLAlchemy expressions, then its cache key) took about a millisecond, more than the index seeks it sends,
# and a participant's home reads five boards (bench/web.py).
_BOARD = ("program_id", "source", "key", "period")


def _the_board(columns: Any) -> tuple[ColumnElement[bool], ...]:
    """The rows of one board (its :attr:`Board.params`) in ``rank_rows`` or ``rank_buckets``."""
    return tuple(columns[name] == bindparam(name, type_=R[name].type) for name in _BOARD)


_ROWS, _COUNTS = _the_board(R), _the_board(t.rank_buckets.c)


def _row_bucket() -> ColumnElement[Any]:
    """The bucket of a rank_rows row, computed as the triggers compute it."""
    return literal_column(bucket_sql("rank_rows.value"))


def _value(name: str) -> BindParameter[Any]:
    return bindparam(name, type_=R.value.type)


def _number(name: str) -> BindParameter[Any]:
    return bindparam(name, type_=Integer())


Entry = tuple[int, float]  # (subject id, value), in board order


@dataclass(frozen=True)
class Board:
    """One period of one plain board: its rows in ``rank_rows``, its counts in ``rank_buckets``."""

    program_id: int
    source: str  # 'p' / 't': a participants' or teams' metric; 'e': a currency earned
    key: str  # the metric or the currency
    period: str  # the period key ('all' for a currency)

    @property
    def params(self) -> dict[str, Any]:
        """The parameters of ``_ROWS`` and ``_COUNTS``: this board."""
        return {name: getattr(self, name) for name in _BOARD}


_REGISTERED = select(t.rank_boards.c.filled).where(
    *(getattr(t.rank_boards.c, n) == bindparam(n) for n in ("program_id", "source", "key", "grain"))
)


def registered(connection: Connection, program_id: int, source: str, key: str, grain: str) -> bool:
    """Whether the triggers keep this board (every plain board of a stored program version is)."""
    params = {"program_id": program_id, "source": source, "key": key, "grain": grain}
    found = connection.execute(_REGISTERED, params).first()
    return found is not None and bool(found[0])


def ranks_and_total(connection: Connection, board: Board, values: Sequence[float]) -> tuple[list[int], int]:
    """The rank of each value (1 + the rows above it; ties share it) and the board's total, in one read:
    one pass over the board's bucket counts, and for each value one short range of the index.

    The rows above ``value`` are those in buckets above some bucket ``b`` (by their counts) plus those
    at or below ``b`` and above ``value``. That is exact for any ``b`` at or above the database's
    bucket of ``value``: rows in higher buckets are all above it (buckets follow values), and every
    row at or below ``b`` that is above ``value`` lies in (value, ceiling(b)], one bucket of the index.
    """
    params = board.params
    for i, value in enumerate(values):
        b = bucket_at_or_above(value)
        params |= {f"v{i}": value, f"b{i}": b, f"ceiling{i}": bucket_ceiling(b)}
    total, *found = connection.execute(_ranks_and_total(len(values)), params).one()
    higher, inside = found[: len(values)], found[len(values) :]
    return [1 + int(h) + int(i) for h, i in zip(higher, inside, strict=True)], int(total)


@functools.cache
def _ranks_and_total(values: int) -> Select[Any]:
    """The statement of :func:`ranks_and_total` for this many values (``v``, ``b``, ``ceiling`` 0, 1, …)."""
    c = t.rank_buckets.c
    counts = [func.coalesce(func.sum(c.n), 0)]
    near = []
    for i in range(values):
        b = _number(f"b{i}")
        counts.append(func.coalesce(func.sum(c.n).filter(c.bucket > b), 0))
        near.append(
            select(func.count())
            .select_from(t.rank_rows)
            .where(*_ROWS, R.value > _value(f"v{i}"), R.value <= _value(f"ceiling{i}"), _row_bucket() <= b)
            .scalar_subquery()
        )
    return select(*counts, *near).where(*_COUNTS)


def rank_of(connection: Connection, board: Board, value: float) -> int:
    return ranks_and_total(connection, board, [value])[0][0]


def total(connection: Connection, board: Board) -> int:
    return ranks_and_total(connection, board, [])[1]


def page(connection: Connection, board: Board, offset: int, limit: int) -> list[Entry]:
    """Rows ``offset`` … ``offset + limit - 1`` in board order: an index range from the right bucket."""
    params = board.params | {"limit": limit}
    if offset < DEEP_OFFSET:
        return [(int(s), float(v)) for s, v in connection.execute(_PAGE, params | {"skip": offset})]
    found = _bucket_holding(connection, board, offset)
    if found is None:
        return []
    bucket, above = found
    params |= {"skip": offset - above, "bucket": bucket, "ceiling": bucket_ceiling(bucket)}
    return [(int(s), float(v)) for s, v in connection.execute(_DEEP_PAGE, params)]


_PAGE = (
    select(R.subject_id, R.value)
    .where(*_ROWS)
    .order_by(R.value.desc(), R.subject_id)
    .limit(_number("limit"))
    .offset(_number("skip"))
)
_DEEP_PAGE = _PAGE.where(R.value <= _value("ceiling"), _row_bucket() <= _number("bucket"))


def _bucket_holding(connection: Connection, board: Board, offset: int) -> tuple[int, int] | None:
    """The bucket holding the row at ``offset`` (0-based, board order) and how many rows lie above it."""
    row = connection.execute(_BUCKET_HOLDING, board.params | {"offset": offset}).first()
    return None if row is None else (int(row[0]), int(row[1]))


def _bucket_holding_statement() -> Select[Any]:
    c = t.rank_buckets.c
    running = (
        select(c.bucket, c.n, func.sum(c.n).over(order_by=c.bucket.desc(), rows=(None, 0)).label("through"))
        .where(*_COUNTS)
        .subquery()
    )
    return (
        select(running.c.bucket, running.c.through - running.c.n)
        .where(running.c.through > _number("offset"))
        .order_by(running.c.bucket.desc())
        .limit(1)
    )


_BUCKET_HOLDING = _bucket_holding_statement()


def locate(connection: Connection, board: Board, subjects: Table, external_id: str) -> tuple[int, float] | None:
    """A participant's (``subjects``: participants or teams) internal id and value on the board, if on it."""
    found = connection.execute(_locate(subjects), board.params | {"external_id": external_id}).first()
    return None if found is None else (int(found[0]), float(found[1]))


@functools.cache
def _locate(subjects: Table) -> Select[Any]:
    s = subjects.c
    return (
        select(s.id, R.value)
        .select_from(subjects.join(t.rank_rows, and_(R.subject_id == s.id, *_ROWS)))
        .where(s.program_id == bindparam("program_id"), s.external_id == bindparam("external_id"))
    )


def _around_statement() -> CompoundSelect[Any]:
    s, v = R.subject_id, R.value
    value, subject_id = _value("value"), bindparam("subject_id", type_=s.type)
    parts = [
        ((v == value, s < subject_id), (s.desc(),)),  # before it, in its tie
        ((v > value,), (v.asc(), s.desc())),  # before it, above
        ((v == value, s > subject_id), (s.asc(),)),  # after it, in its tie
        ((v < value,), (v.desc(), s.asc())),  # after it, below
    ]
    seeks = [
        select(literal(i).label("part"), s.label("s"), v.label("v"))
        .where(*_ROWS, *where)
        .order_by(*order)
        .limit(_number("limit"))
        .subquery()
        for i, (where, order) in enumerate(parts)
    ]
    return union_all(*(select(seek) for seek in seeks))


_AROUND = _around_statement()


def around(connection: Connection, board: Board, subject_id: int, value: float, limit: int) -> list[Entry]:
    """Up to ``limit`` rows before the subject in board order, the subject, and up to ``limit`` after:
    four index seeks from its (value, id), through its tie first, in one statement."""
    found: list[list[Entry]] = [[], [], [], []]
    params = board.params | {"value": value, "subject_id": subject_id, "limit": limit}
    for part, subject, row_value in connection.execute(_AROUND, params):
        found[int(part)].append((int(subject), float(row_value)))
    keys: list[Callable[[Entry], tuple[float, int]]] = [
        lambda e: (0, -e[0]),
        lambda e: (e[1], -e[0]),
        lambda e: (0, e[0]),
        lambda e: (-e[1], e[0]),
    ]
    tie_before, above, tie_after, below = (sorted(rows, key=key) for rows, key in zip(found, keys, strict=True))
    before = (tie_before + above)[:limit]
    after = (tie_after + below)[:limit]
    return [*reversed(before), (subject_id, value), *after]


def needed(entries: Sequence[Entry], *, offset: int | None = None) -> list[float]:
    """The values whose rank :func:`ranks` takes from the counts: at most two (see there)."""
    if offset is not None:
        return [entries[0][1]] if entries and offset > 0 else []
    starts = [value for i, (_, value) in enumerate(entries) if not i or value != entries[i - 1][1]]
    return starts[:2]


def ranks(entries: Sequence[Entry], known: Mapping[float, int], *, offset: int | None = None) -> list[int]:
    """Ranks of a contiguous run of a board (1, 2, 2, 4), from the ranks ``known`` of :func:`needed` values.

    With the run's offset known, a tie group that starts inside the run ranks at its position + 1,
    so only the first row needs a count. Without it (a neighbourhood) the first group may be cut
    off above, so the second group's start needs one too, and every later group ranks at the group
    before it + that group's size (that group lies wholly inside the run).
    """
    out: list[int] = []
    groups = 0
    for i, (_, value) in enumerate(entries):
        if i and value == entries[i - 1][1]:
            out.append(out[-1])
            continue
        if offset is not None and (i or offset == 0):
            out.append(offset + i + 1)
        elif offset is not None or groups < 2:
            out.append(known[value])
        else:
            out.append(out[-1] + _run_length(entries, i - 1))
        groups += 1
    return out


def _run_length(entries: Sequence[Entry], last: int) -> int:
    """How many entries end at ``last`` with its value (its tie group, inside the run)."""
    n = 0
    while last - n >= 0 and entries[last - n][1] == entries[last][1]:
        n += 1
    return n


# ---------------------------------------------------------------------------- the projection itself

# The calendar grain of a period key; the same CASE as migration 0004's triggers.
GRAIN_OF_PERIOD = (
    "(CASE WHEN {p} = 'all' THEN 'all' WHEN length({p}) = 4 THEN 'year' WHEN length({p}) = 10 THEN 'day' "
    "WHEN substr({p}, 6, 1) = 'W' THEN 'week' WHEN substr({p}, 6, 1) = 'Q' THEN 'quarter' "
    "WHEN length({p}) = 7 THEN 'month' END)"
)
# How a source row becomes a board row: source, key, period, subject, value (alias s).
SOURCES = {
    "metric_totals": ("s.subject_kind", "s.metric", "s.period", "s.subject_id", "s.value"),
    "positions": ("'e'", "s.currency", "'all'", "s.participant_id", "s.earned"),
}


def rebuild(connection: Connection, program_id: int) -> None:
    """Copy a program's board rows into ``rank_rows`` afresh (their triggers count them): a repair,
    and a fast bulk fill. Boards stay registered; only the copies and the counts are redone."""
    connection.execute(t.rank_rows.delete().where(R.program_id == program_id))
    connection.execute(t.rank_buckets.delete().where(t.rank_buckets.c.program_id == program_id))
    for table, (source, key, period, subject, value) in SOURCES.items():
        connection.execute(
            text(
                "INSERT INTO rank_rows (program_id, source, key, period, subject_id, value) "
                f"SELECT s.program_id, {source}, {key}, {period}, {subject}, {value} FROM {table} s "
                f"JOIN rank_boards b ON b.program_id = s.program_id AND b.source = {source} AND b.key = {key} "
                f"AND b.grain = {GRAIN_OF_PERIOD.format(p=period)} WHERE s.program_id = :p"
            ),
            {"p": program_id},
        )
    connection.execute(t.rank_boards.update().where(t.rank_boards.c.program_id == program_id).values(filled=1))
    from levelup.leaderboards import normalised, windows  # they build on this module's grain expression

    normalised.refresh(connection, program_id)  # the normalised boards' rows, derived afresh
    windows.refill(connection, program_id)  # and the kept periods of the windowed boards


def counts(connection: Connection, program_id: int) -> dict[tuple[str, str, str, int], int]:
    """The non-zero bucket counts the triggers keep for a program, keyed (source, key, period, bucket)."""
    c = t.rank_buckets.c
    rows = connection.execute(select(c.source, c.key, c.period, c.bucket, c.n).where(c.program_id == program_id))
    return {(r.source, r.key, r.period, int(r.bucket)): int(r.n) for r in rows if r.n}


def recount(connection: Connection, program_id: int) -> dict[tuple[str, str, str, int], int]:
    """The bucket counts of a program's ``rank_rows``, counted afresh (what ``counts`` must equal)."""
    query = text(
        f"SELECT source, key, period, {bucket_sql('value')}, count(*) FROM rank_rows WHERE program_id = :p "
        "GROUP BY 1, 2, 3, 4"
    )
    return {(s, k, p, int(b)): int(n) for s, k, p, b, n in connection.execute(query, {"p": program_id})}
