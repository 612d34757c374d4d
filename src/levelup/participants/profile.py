"""A participant's profile: what a rep or customer sees about themselves."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from levelup.achievements.progress import progress
from levelup.engine.levels import level_of
from levelup.engine.model import ParticipantState
from levelup.errors import NotFound
from levelup.metrics.periods import local_date
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t
from levelup.tiers.service import standing


def level_value(connection: Connection, compiled: CompiledProgram, participant_id: int) -> float:
    """What levels climb on: the lifetime amount earned in the levels' currency, or their metric's all-time value."""
    levels = compiled.doc.levels
    assert levels is not None
    if levels.currency is not None:
        earned = connection.execute(
            select(t.positions.c.earned).where(
                t.positions.c.participant_id == participant_id, t.positions.c.currency == levels.currency
            )
        ).scalar_one_or_none()
        return float(earned or 0)
    m = t.metric_totals.c
    value = connection.execute(
        select(m.value).where(
            m.metric == levels.metric, m.period == "all", m.subject_kind == "p", m.subject_id == participant_id
        )
    ).scalar_one_or_none()
    return float(value or 0.0)


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
    levels = compiled.doc.levels
    level = level_of(levels, level_value(connection, compiled, row.id)) if levels is not None else None
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
