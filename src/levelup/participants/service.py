"""A participant's profile: what a rep or customer sees about themselves."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from levelup.achievements.levels import level_of
from levelup.achievements.progress import progress
from levelup.engine.model import ParticipantState
from levelup.errors import NotFound
from levelup.metrics.periods import local_date
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t
from levelup.tiers.service import standing


def profile(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    external_id: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    row = connection.execute(
        select(t.participants).where(
            t.participants.c.program_id == program.id, t.participants.c.external_id == external_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no participant {external_id!r} in program {program.key!r}")
    teams = (
        connection.execute(
            select(t.teams.c.external_id)
            .join(t.memberships, t.memberships.c.team_id == t.teams.c.id)
            .where(t.memberships.c.participant_id == row.id)
            .order_by(t.teams.c.external_id)
        )
        .scalars()
        .all()
    )
    positions = {
        p.currency: p for p in connection.execute(select(t.positions).where(t.positions.c.participant_id == row.id))
    }
    balances = {c: positions[c].available if c in positions else 0 for c in compiled.currencies}
    arrears = {c: p.arrears for c, p in positions.items() if p.arrears}
    level = None
    if compiled.doc.levels is not None:
        levels = compiled.doc.levels
        if levels.currency is not None:
            value: float = positions[levels.currency].earned if levels.currency in positions else 0
        else:
            value = (
                connection.execute(
                    select(t.metric_totals.c.value).where(
                        t.metric_totals.c.program_id == program.id,
                        t.metric_totals.c.metric == levels.metric,
                        t.metric_totals.c.period == "all",
                        t.metric_totals.c.subject_kind == "p",
                        t.metric_totals.c.subject_id == row.id,
                    )
                ).scalar_one_or_none()
                or 0.0
            )
        level = level_of(levels, value)
    return {
        "id": row.external_id,
        "name": row.name,
        "teams": list(teams),
        "attributes": row.attributes,
        "status": row.status,
        "balances": balances,
        "arrears": arrears,
        "level": level,
        "tier": standing(connection, program.id, compiled, row.id, now or dt.datetime.now(dt.UTC)),
        **progress(
            connection,
            compiled,
            program.id,
            row.id,
            ParticipantState(row.external_id, row.name, tuple(teams), row.attributes or {}),
            local_date(now or dt.datetime.now(dt.UTC), compiled.timezone),
        ),
    }
