"""The top of each board at the end of each local day (``board_ranks``): what the TV's "▲2 since
yesterday" and a board's movement chart read.

A board's values carry no time (a month's total is one row), so yesterday's standing cannot be computed
back from them; it is kept instead. The jobs write today's top :data:`KEEP` of every board at every tick
(one program a transaction), replacing what the last tick wrote for today: once the day is over, its rows
are how it ended. Internal subject ids only, so a renamed or erased participant needs nothing rewritten.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, Table, delete, func, select, union_all

from levelup.leaderboards.service import leaderboard
from levelup.metrics.periods import local_date, zone
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import bulk_insert

KEEP = 50  # the most rows a TV link shows (links.TvOptions.top)
DAYS_KEPT = 400  # a year of movement, and the same day last year


def _subjects(by: str) -> Table:
    return t.teams if by == "team" else t.participants


def record_program(connection: Connection, program: ProgramRecord, compiled: CompiledProgram, now: dt.datetime) -> int:
    """Today's top of each of the program's boards, replacing today's earlier rows; returns the rows written."""
    today = local_date(now, compiled.timezone)
    b = t.board_ranks.c
    connection.execute(delete(t.board_ranks).where(b.program_id == program.id, b.day == today.isoformat()))
    oldest = (today - dt.timedelta(days=DAYS_KEPT)).isoformat()
    connection.execute(delete(t.board_ranks).where(b.program_id == program.id, b.day < oldest))
    rows: list[dict[str, Any]] = []
    for board in compiled.doc.leaderboards:
        top = leaderboard(connection, program, compiled, board.key, limit=KEEP, now=now)
        subjects = _subjects(board.by).c
        ids = dict(
            connection.execute(
                select(subjects.external_id, subjects.id).where(
                    subjects.program_id == program.id, subjects.external_id.in_([e["id"] for e in top["entries"]])
                )
            ).all()
        )
        rows += [
            {
                "program_id": program.id,
                "board": board.key,
                "day": today.isoformat(),
                "subject_id": ids[entry["id"]],
                "period": top["period"],
                "rank": entry["rank"],
                "value": float(entry["value"]),
            }
            for entry in top["entries"]
        ]
    bulk_insert(connection, t.board_ranks, rows)
    return len(rows)


def record(runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None) -> int:
    """The jobs' entry: today's top of every board of every program (or ``program_keys``); rows written."""
    now = now or dt.datetime.now(dt.UTC)
    written = 0
    with runtime.db.read() as connection:
        keys = [p.key for p in programs.selected(connection, program_keys)]
    for key in keys:
        with runtime.db.write() as connection:
            program = programs.find(connection, key)
            written += record_program(connection, program, runtime.programs.compiled(connection, program), now)
    return written


def latest_instant(connection: Connection, program_id: int) -> dt.datetime | None:
    """The latest instant anything stored for the program counts at: an event's ``occurred_at`` or a ledger
    entry's ``at`` (two index-free maxima: a one-off, for :func:`backfill`)."""
    e, le = t.events.c, t.ledger_entries.c
    found = [
        connection.execute(select(func.max(e.occurred_at)).where(e.program_id == program_id)).scalar(),
        connection.execute(select(func.max(le.at)).where(le.program_id == program_id)).scalar(),
    ]
    return max((f for f in found if f is not None), default=None)


def backfill(
    runtime: Runtime, *, days: int = 14, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None
) -> int:
    """The top of each board at the end of each of the last ``days`` local days not kept yet, then today's:
    what the job would have written had it run then. Only days that end after everything stored: the stored
    totals have no time within a period, so a board can be read as of a past day only when nothing counted
    since (a program loaded from old data, as ``levelup demo``'s). Earlier days stay unkept rather than made
    up. Returns the rows written."""
    now = now or dt.datetime.now(dt.UTC)
    written = 0
    with runtime.db.read() as connection:
        keys = [p.key for p in programs.selected(connection, program_keys)]
    for key in keys:
        with runtime.db.write() as connection:
            program = programs.find(connection, key)
            compiled = runtime.programs.compiled(connection, program)
            latest = latest_instant(connection, program.id)
            today, tz = local_date(now, compiled.timezone), zone(compiled.timezone)
            b = t.board_ranks.c
            kept = set(connection.execute(select(b.day).where(b.program_id == program.id).distinct()).scalars())
            for back in range(days, 0, -1):
                day = today - dt.timedelta(days=back)
                end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz) - dt.timedelta(microseconds=1)
                if day.isoformat() in kept or (latest is not None and latest > end):
                    continue
                written += record_program(connection, program, compiled, end.astimezone(dt.UTC))
            written += record_program(connection, program, compiled, now)
    return written


class Shown(NamedTuple):
    """A board as a page shows it: its key, what it ranks (``participant`` or ``team``) and its period."""

    board: str
    by: str
    period: str


def _kept(
    connection: Connection,
    program: ProgramRecord,
    boards: Collection[Shown],
    days: ColumnElement[bool],
    subjects: Mapping[str, Collection[str]] | None = None,
) -> Iterator[tuple[str, str, str, int]]:
    """The kept rows (board, external id, day, rank) of ``boards`` on the ``days``, each board in its own
    period and, given ``subjects`` (by board key), of those only. One statement for all the boards (a UNION ALL
    of one select per subject table), not one a board: a TV link may show every board, and each statement is a
    round trip within the page's budget. The statement names the boards and all their subjects, not pairs, and
    the rows of another period or of a subject not wanted on that board are dropped here: pairs (an OR a board)
    made PostgreSQL look up the subject of every kept row of the fourteen days, about three times the per-board
    statements' time on a year of history."""
    b = t.board_ranks.c
    periods = {shown.board: shown.period for shown in boards}
    selects = []
    for by in sorted({shown.by for shown in boards}):
        table = _subjects(by)
        keys = sorted(shown.board for shown in boards if shown.by == by)
        query = (
            select(b.board, table.c.external_id, b.day, b.rank, b.period)
            .select_from(t.board_ranks)
            .join(table, table.c.id == b.subject_id)
            .where(b.program_id == program.id, b.board.in_(keys), days)
        )
        if subjects is not None:
            wanted = sorted({subject for key in keys for subject in subjects[key]})
            if not wanted:
                continue
            query = query.where(table.c.external_id.in_(wanted))
        selects.append(query)
    if not selects:
        return
    statement = selects[0] if len(selects) == 1 else union_all(*selects)
    for board, subject, day, rank, period in connection.execute(statement):
        if period == periods[board] and (subjects is None or subject in subjects[board]):
            yield board, subject, day, rank


def ranks_on(
    connection: Connection, program: ProgramRecord, boards: Collection[Shown], day: dt.date
) -> dict[str, dict[str, int]]:
    """Who stood where on each board at the end of ``day``, by board key then external id, when that day was in
    the board's period (a board's month starts afresh: last month's ranks say nothing about this one's). A
    board's are empty when that day was not kept: then no change can be told."""
    out: dict[str, dict[str, int]] = {shown.board: {} for shown in boards}
    for board, subject, _, rank in _kept(connection, program, boards, t.board_ranks.c.day == day.isoformat()):
        out[board][subject] = rank
    return out


def movement(
    connection: Connection, program: ProgramRecord, subjects: Mapping[Shown, Collection[str]], first: dt.date
) -> dict[str, dict[str, dict[dt.date, int]]]:
    """Each board's ``subjects``' rank at the end of each kept day from ``first`` on, in the board's period, by
    board key then external id."""
    out: dict[str, dict[str, dict[dt.date, int]]] = {
        shown.board: {s: {} for s in held} for shown, held in subjects.items()
    }
    after = t.board_ranks.c.day >= first.isoformat()
    for board, subject, day, rank in _kept(connection, program, list(subjects), after, out):
        out[board][subject][dt.date.fromisoformat(day)] = rank
    return out
