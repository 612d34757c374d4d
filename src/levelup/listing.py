"""Paged lists an admin browses: a program's participants (searchable) and its events, newest first.

Pages are keyed by a position (``after`` a participant id, ``before`` an event's sequence number), not by
an offset, so a page costs an index seek however deep it is.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, or_, select

from levelup.storage import tables as t

MAX_PAGE = 500


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its wildcards taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def participants(
    connection: Connection, program_id: int, *, search: str | None, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Participants by id (after ``after``), whose id or name contains ``search`` (any case); and the id
    to pass as ``after`` for the next page, or None on the last."""
    p = t.participants.c
    query = select(p.external_id, p.name, p.status).where(p.program_id == program_id)
    if search:
        # on PostgreSQL lower() LIKE, which migration 0019's trigram index answers (a text of three letters or
        # more; where the database refused pg_trgm, a scan, where lower() LIKE is 2.5x faster than ILIKE); on
        # SQLite a scan of the program's participants with its LIKE, which ignores ASCII case itself
        pattern = _like(search)
        fold = (lambda c: c) if connection.dialect.name == "sqlite" else func.lower
        query = query.where(
            or_(fold(p.external_id).like(pattern, escape="\\"), fold(p.name).like(pattern, escape="\\"))
        )
    if after is not None:
        query = query.where(p.external_id > after)
    rows = connection.execute(query.order_by(p.external_id).limit(limit + 1)).all()
    page = [{"id": r.external_id, "name": r.name, "status": r.status} for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


def events(
    connection: Connection,
    program_id: int,
    *,
    participant: str | None,
    kind: str | None,
    before: int | None,
    limit: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """Events newest first (received order), of a participant and a type if given; and the position to
    pass as ``before`` for the next page, or None on the last."""
    e, p = t.events.c, t.participants.c
    query = select(e.seq, e.event_id, e.type, p.external_id, e.occurred_at, e.received_at, e.reverses).join(
        t.participants, p.id == e.participant_id
    )
    if participant is None:
        query = query.where(e.program_id == program_id)
    else:  # their id first, then their events by their own index (a participant is in one program)
        found = connection.execute(
            select(p.id).where(p.program_id == program_id, p.external_id == participant)
        ).scalar()
        if found is None:
            return [], None
        query = query.where(e.participant_id == found)
    if kind is not None:
        query = query.where(e.type == kind)
    if before is not None:
        query = query.where(e.seq < before)
    rows = connection.execute(query.order_by(e.seq.desc()).limit(limit + 1)).all()
    page = [
        {
            "id": r.event_id,
            "type": r.type,
            "participant": r.external_id,
            "occurred_at": r.occurred_at.isoformat(),
            "received_at": r.received_at.isoformat(),
            "reverses": r.reverses,
        }
        for r in rows[:limit]
    ]
    return page, (rows[limit - 1].seq if len(rows) > limit else None)


def teams(
    connection: Connection, program_id: int, *, after: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Teams by id (after ``after``) with how many members each has; and the id to pass as ``after`` for
    the next page, or None on the last."""
    tm, m = t.teams.c, t.memberships.c
    members = select(func.count()).where(m.team_id == tm.id).scalar_subquery()
    query = select(tm.external_id, tm.name, members.label("members")).where(tm.program_id == program_id)
    if after is not None:
        query = query.where(tm.external_id > after)
    rows = connection.execute(query.order_by(tm.external_id).limit(limit + 1)).all()
    page = [{"id": r.external_id, "name": r.name, "members": r.members} for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)


def members(connection: Connection, program_id: int, team: str, *, limit: int) -> dict[str, Any] | None:
    """A team (id, name) and its first ``limit`` members by id; None when the program has no such team."""
    tm, m, p = t.teams.c, t.memberships.c, t.participants.c
    found = connection.execute(
        select(tm.id, tm.external_id, tm.name).where(tm.program_id == program_id, tm.external_id == team)
    ).first()
    if found is None:
        return None
    rows = connection.execute(
        select(p.external_id, p.name, p.status)
        .join(t.memberships, m.participant_id == p.id)
        .where(m.team_id == found.id)
        .order_by(p.external_id)
        .limit(limit)
    )
    people = [{"id": r.external_id, "name": r.name, "status": r.status} for r in rows]
    return {"id": found.external_id, "name": found.name, "members": people}
