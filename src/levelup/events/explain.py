"""Reading an event back with everything it caused: the audit trail behind every point."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from levelup.engine.model import Effects, ParticipantState
from levelup.engine.scoring import activation_for, metric_contributions
from levelup.errors import NotFound
from levelup.events.store import event_from_row
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t


def explain_event(
    connection: Connection, program: ProgramRecord, version_of: Callable[[int], CompiledProgram], event_id: str
) -> dict[str, Any]:
    """The event, its ledger entries (rule and version), metric contributions, problems and notes.

    Metric contributions are recomputed by the engine from the version the event
    was scored with, as replay would.
    """
    row = connection.execute(
        select(t.events, t.participants.c.external_id)
        .join(t.participants, t.participants.c.id == t.events.c.participant_id)
        .where(t.events.c.program_id == program.id, t.events.c.event_id == event_id)
    ).first()
    if row is None:
        raise NotFound(f"no event {event_id!r} in program {program.key!r}")
    entries = [
        {
            "currency": e.currency,
            "amount": e.amount,
            "kind": e.kind,
            "rule": e.rule,
            "rule_version": e.rule_version,
            "explain": e.explain,
        }
        for e in connection.execute(
            select(t.ledger_entries).where(t.ledger_entries.c.event_seq == row.seq).order_by(t.ledger_entries.c.id)
        )
    ]
    reversed_by = connection.execute(
        select(t.reversals.c.by_event).where(
            t.reversals.c.program_id == program.id, t.reversals.c.reversed_event == event_id
        )
    ).scalar_one_or_none()
    compiled = version_of(row.program_version)
    event = event_from_row(row)
    contributed = Effects(event, compiled.version, tuple(row.teams))
    state = ParticipantState(row.external_id, teams=tuple(row.teams))
    metric_contributions(compiled, event, tuple(row.teams), activation_for(compiled, state, event), contributed)
    return {
        "id": row.event_id,
        "type": row.type,
        "participant": row.external_id,
        "occurred_at": row.occurred_at.isoformat(),
        "received_at": row.received_at.isoformat(),
        "data": row.data,
        "reverses": row.reverses,
        "reversed_by": reversed_by,
        "program_version": row.program_version,
        "teams": row.teams,
        "entries": entries,
        "awards": [
            {"currency": e["currency"], "amount": e["amount"], "rule": e["rule"]}
            for e in entries
            if e["kind"] == "rule"
        ],
        "metrics": [
            {"metric": m.metric, "period": m.period, "delta": m.delta}
            for m in contributed.metrics
            if m.team is None and m.period == "all"
        ]
        + [{"metric": s.metric, "day": s.day, "value": s.value} for s in contributed.samples if s.team is None],
        "problems": row.problems or [],
        "notes": row.notes or [],
    }
