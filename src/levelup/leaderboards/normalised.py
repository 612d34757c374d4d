"""Normalised boards kept as board rows, so they rank like plain boards (docs/architecture.md).

A normalised board (``normalize: participant.attributes.<name>``) ranks a metric divided by each
participant's attribute. Dividing at read time means scanning every row of the board and parsing a
JSON attribute per row: hundreds of milliseconds at 100,000 participants. So each participant's
quotient is stored in ``rank_rows`` under source ``n``, key ``<metric>/<attribute>``, per period of
the board's grain; the ``rank_rows`` triggers keep its bucket counts and the board is read by index
seeks and counts like any plain board (:mod:`levelup.leaderboards.ranks`). Its registration in
``rank_boards`` (source ``n``) says the rows are kept; an unregistered board is ranked by the
database from its inputs instead, with the same answers.

The rows are derived, never an input: they are rewritten by one statement (:func:`_write`) from the
metric totals and the attribute — the expression the database ranking uses — for the participants
whose metric or attributes changed, in the transaction of the change: every metric write
(``events.store.write_totals``), a profile set, an erasure; all of a program's rows when a board is
registered (a document applied), after the metrics are rebuilt, and at replay (which also checks them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Float, Select, case, cast, func, literal, literal_column, null, select

from levelup.leaderboards.ranks import GRAIN_OF_PERIOD
from levelup.metrics.periods import grain_of, period_key, rolling_days
from levelup.programs.document import Leaderboard
from levelup.storage import tables as t

SOURCE = "n"
CHUNK = 500  # participants a statement (bound parameters stay well under SQLite's limit)


@dataclass(frozen=True)
class Projection:
    """The rows of the normalised boards over one metric, attribute and calendar grain."""

    metric: str
    attribute: str
    grain: str

    @property
    def key(self) -> str:
        return f"{self.metric}/{self.attribute}"


def of_board(board: Leaderboard) -> Projection | None:
    """The projection that serves ``board``: a normalised participant board over a metric on a calendar
    window (rolling windows sum days at read time; a key too long for ``rank_rows`` is ranked as before)."""
    if board.normalize is None or board.metric is None or board.by != "participant":
        return None
    if rolling_days(board.window) is not None:
        return None
    found = Projection(board.metric, board.normalize.rsplit(".", 1)[1], board.window)
    return found if len(found.key) <= t.rank_rows.c.key.type.length else None  # type: ignore[attr-defined]


def divisor(connection: Connection, name: str) -> ColumnElement[Any]:
    """A participant's attribute ``name`` as a number when it is a JSON number (not a boolean nor text),
    else NULL: the handicap, as the Python ranking reads it. ``name`` is a plain identifier (the
    document's pattern says so)."""
    p = t.participants.c
    number: ColumnElement[Any]
    if connection.dialect.name == "postgresql":
        number = cast(p.attributes.op("->>")(literal(name)), Float)
        is_number = func.json_typeof(p.attributes.op("->")(literal(name))) == "number"
    else:
        number = func.json_extract(p.attributes, f"$.{name}")
        is_number = func.json_type(p.attributes, f"$.{name}").in_(("integer", "real"))
    return case((is_number, number), else_=null())


def registered(connection: Connection, program_id: int) -> list[Projection]:
    """The projections kept for a program."""
    b = t.rank_boards.c
    rows = connection.execute(select(b.key, b.grain).where(b.program_id == program_id, b.source == SOURCE))
    found = []
    for key, grain in rows:
        metric, attribute = key.rsplit("/", 1)
        found.append(Projection(metric, attribute, grain))
    return found


def register(connection: Connection, program_id: int, boards: Iterable[Leaderboard]) -> None:
    """Keep the projections of ``boards`` not kept yet, filled from the stored metrics (a document applied)."""
    kept = set(registered(connection, program_id))
    for projection in {p for p in map(of_board, boards) if p is not None} - kept:
        connection.execute(
            t.rank_boards.insert().values(
                program_id=program_id, source=SOURCE, key=projection.key, grain=projection.grain, filled=1
            )
        )
        _write(connection, program_id, projection, None, None)


def refresh(
    connection: Connection,
    program_id: int,
    participants: Collection[int] | None = None,
    *,
    written: Collection[tuple[str, str]] | None = None,
) -> None:
    """Rewrite the rows of ``participants`` (None: everyone's) on the program's projections: in the (metric,
    period)s ``written`` when given (a metric write), else in every period of each projection's grain."""
    for projection in registered(connection, program_id):
        if participants is None:
            _write(connection, program_id, projection, None, None)
            continue
        if written is None:
            periods = _periods(connection, program_id, projection)
        else:
            periods = sorted({p for m, p in written if m == projection.metric and _grain(p) == projection.grain})
        ids = sorted(participants)
        for start in range(0, len(ids), CHUNK):
            if periods:
                _write(connection, program_id, projection, ids[start : start + CHUNK], periods)


def _grain(period: str) -> str | None:
    try:
        return grain_of(period)
    except ValueError:  # not a calendar period (none is stored; then on no board)
        return None


def _periods(connection: Connection, program_id: int, projection: Projection) -> list[str]:
    """Every period key of the projection's grain that a stored total of its metric can have: those of the
    years from the earliest to the latest period key stored (two seeks), a year wider each side for ISO
    weeks. Listing them lets one participant's rows be read by primary-key seeks, not a scan of the metric."""
    m = t.metric_totals.c
    if projection.grain == "all":
        return ["all"]
    mine = (m.program_id == program_id, m.metric == projection.metric)
    first = connection.execute(select(func.min(m.period)).where(*mine)).scalar()
    last = connection.execute(select(func.max(m.period)).where(*mine, m.period < "a")).scalar()  # not 'all'
    if first is None or last is None or not first[:4].isdigit() or not last[:4].isdigit():
        return []
    day, end = dt.date(max(int(first[:4]) - 1, 1), 1, 1), dt.date(min(int(last[:4]) + 1, 9999), 12, 31)
    keys: list[str] = []
    while day <= end:
        key = period_key(projection.grain, day)
        if not keys or keys[-1] != key:
            keys.append(key)
        day += dt.timedelta(days=1)
    return keys


def _rows(
    connection: Connection, program_id: int, projection: Projection, ids: list[int] | None, periods: list[str] | None
) -> Select[Any]:
    """(program, source, key, period, participant, value ÷ handicap) of each metric total on the projection
    whose participant has a positive number there (the others are left off, as the Python ranking does)."""
    m, p = t.metric_totals.c, t.participants.c
    handicap = divisor(connection, projection.attribute)
    query = (
        select(
            literal(program_id).label("program_id"),
            literal(SOURCE).label("source"),
            literal(projection.key).label("key"),
            m.period,
            m.subject_id,
            (m.value / handicap).label("value"),
        )
        .select_from(t.metric_totals.join(t.participants, p.id == m.subject_id))
        .where(m.program_id == program_id, m.subject_kind == "p", m.metric == projection.metric, handicap > 0)
    )
    if periods is None:
        return query.where(literal_column(GRAIN_OF_PERIOD.format(p="metric_totals.period")) == projection.grain)
    assert ids is not None
    return query.where(m.period.in_(periods), m.subject_id.in_(ids))


def _write(
    connection: Connection, program_id: int, projection: Projection, ids: list[int] | None, periods: list[str] | None
) -> None:
    """Replace the projection's rows (of ``ids`` in ``periods``; all of them when None) with fresh ones."""
    r = t.rank_rows.c
    mine = [r.program_id == program_id, r.source == SOURCE, r.key == projection.key]
    if periods is None:  # a key's rows of other grains belong to other projections
        mine.append(literal_column(GRAIN_OF_PERIOD.format(p="rank_rows.period")) == projection.grain)
    else:
        assert ids is not None
        mine += [r.period.in_(periods), r.subject_id.in_(ids)]
    connection.execute(t.rank_rows.delete().where(*mine))
    columns = ["program_id", "source", "key", "period", "subject_id", "value"]
    fresh = _rows(connection, program_id, projection, ids, periods)
    connection.execute(t.rank_rows.insert().from_select(columns, fresh))


def expected(connection: Connection, program_id: int) -> dict[tuple[str, str, int], float]:
    """The rows the program's projections should hold, computed afresh (replay compares them)."""
    found: dict[tuple[str, str, int], float] = {}
    for projection in registered(connection, program_id):
        for row in connection.execute(_rows(connection, program_id, projection, None, None)):
            found[(row.key, row.period, int(row.subject_id))] = float(row.value)
    return found


def stored(connection: Connection, program_id: int) -> dict[tuple[str, str, int], float]:
    """The rows the program's projections hold."""
    r = t.rank_rows.c
    rows = connection.execute(
        select(r.key, r.period, r.subject_id, r.value).where(r.program_id == program_id, r.source == SOURCE)
    )
    return {(key, period, int(subject)): float(value) for key, period, subject, value in rows}
