"""Clawback: an admin takes back what an event paid, as a reversal everyone can see.

A clawback is ingested like any reversal (the engine undoes the event's awards and metric contributions
with compensating entries, through the one posting path), with the type ``levelup.clawback``: its
ledger entries read "clawback of event …", and the audit entry ``events.clawback`` naming who did it
and why is written in the same transaction. Its id is ``clawback:<event id>`` (a hash of a very long
id), so a second clawback of the same event finds the first and changes nothing (answered with ``status:
duplicate``). What is left of a partly refunded event is taken back; one the CRM reversed has nothing left
(409).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, select

from levelup.audit import service as audit
from levelup.engine.clawback import CLAWBACK, REASON
from levelup.engine.model import WHOLE
from levelup.errors import MAX_ID_LENGTH, Conflict, FieldError, Invalid, LevelupError, NotFound
from levelup.events.ingest import Outcome, ingest
from levelup.events.schema import OWN_EVENTS
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t


def clawback_id(event_id: str) -> str:
    """``clawback:<event id>``; for an id too long to take the prefix, its SHA-256 instead (ids are bounded)."""
    found = f"clawback:{event_id}"
    return found if len(found) <= MAX_ID_LENGTH else f"clawback:{hashlib.sha256(event_id.encode()).hexdigest()}"


def _stored(connection: Connection, program_id: int, event_id: str) -> Any:
    e, p = t.events.c, t.participants.c
    return connection.execute(
        select(e.seq, e.event_id, e.type, e.reverses, e.data, e.occurred_at, p.external_id)
        .join(t.participants, t.participants.c.id == e.participant_id)
        .where(e.program_id == program_id, e.event_id == event_id)
    ).first()


def _answer(connection: Connection, program_id: int, event_id: str, status: str) -> dict[str, Any]:
    """The clawback of ``event_id`` as stored: who, why, when, and what it took back per currency."""
    row = _stored(connection, program_id, clawback_id(event_id))
    assert row is not None
    taken: dict[str, int] = defaultdict(int)
    for currency, amount in connection.execute(
        select(t.ledger_entries.c.currency, t.ledger_entries.c.amount).where(t.ledger_entries.c.event_seq == row.seq)
    ):
        taken[currency] += amount
    return {
        "status": status,
        "event": event_id,
        "clawback": row.event_id,
        "participant": row.external_id,
        "reason": REASON,
        "note": row.data.get("note", ""),
        "by": row.data.get("by", ""),
        "at": row.occurred_at.isoformat(),
        "taken": dict(taken),
    }


def _target(connection: Connection, program_id: int, event_id: str) -> tuple[Any, int]:
    """The event to claw back and the share of it already refunded; refuses what cannot be clawed back."""
    row = _stored(connection, program_id, event_id)
    if row is None:
        raise NotFound(f"no event {event_id!r} in this program")
    if row.reverses is not None:
        raise Invalid("a reversal cannot be clawed back", errors=[FieldError("event", f"{event_id!r} is a reversal")])
    by = connection.execute(
        select(t.reversals.c.by_event).where(
            t.reversals.c.program_id == program_id, t.reversals.c.reversed_event == event_id
        )
    ).scalar_one_or_none()
    if by is not None and by != clawback_id(event_id):
        raise Conflict(f"event {event_id!r} was already reversed by {by!r}: nothing left to claw back")
    refunded = connection.execute(
        select(t.refunds.c.refunded).where(t.refunds.c.program_id == program_id, t.refunds.c.reversed_event == event_id)
    ).scalar_one_or_none()
    return row, int(refunded or 0)


def clawback(
    runtime: Runtime, program_key: str, event_id: str, *, note: str, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Take back what ``event_id`` paid (or what is left of it after refunds), audited; idempotent."""
    now = now or dt.datetime.now(dt.UTC)
    with runtime.db.read() as connection:
        program_id = programs.find(connection, program_key).id
        if _stored(connection, program_id, clawback_id(event_id)) is not None:
            return _answer(connection, program_id, event_id, "duplicate")
        row, refunded = _target(connection, program_id, event_id)
    raw: dict[str, Any] = {
        "id": clawback_id(event_id),
        "type": CLAWBACK,
        "participant": row.external_id,
        "occurred_at": now.isoformat(),
        "data": {"reason": REASON, "note": note, "by": actor},
        "reverses": event_id,
    }
    if refunded:
        raw["portion"] = (WHOLE - refunded) / WHOLE

    answers: list[dict[str, Any]] = []

    def audited(connection: Connection, outcomes: list[Outcome]) -> None:
        """In the clawback's transaction: the audit entry, with what the engine took back."""
        if outcomes[0].status == "accepted":
            answers.append(_answer(connection, program_id, event_id, "accepted"))
            detail = {k: answers[-1][k] for k in ("event", "clawback", "participant", "note", "taken")}
            audit.record(connection, program_id, actor, "events.clawback", detail, now)

    own = OWN_EVENTS.set(True)
    try:
        outcome = ingest(runtime, program_key, [raw], now=now, then=audited)[0]
    finally:
        OWN_EVENTS.reset(own)
    if outcome.status == "accepted":
        return answers[-1]
    with runtime.db.read() as connection:
        if _stored(connection, program_id, clawback_id(event_id)) is not None:  # a concurrent clawback won
            return _answer(connection, program_id, event_id, "duplicate")
    assert outcome.error is not None
    error: LevelupError = outcome.error
    raise error
