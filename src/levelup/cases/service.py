"""Cases: a participant says something is missing ("I closed D-91 on 20 Nov"); an admin answers it with a
reply, or resolves it with an adjustment (posted through :func:`levelup.ledger.service.adjust`, keyed by the
case so a retried answer adjusts once). The participant sees the status, the reply and the adjustment."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from sqlalchemy import Connection, select

from levelup.errors import Conflict, FieldError, Invalid, NotFound
from levelup.ledger import service as ledger
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

MAX_MESSAGE = 1000
Answer = Literal["resolved", "declined"]


def _message(text: str, path: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= MAX_MESSAGE or "\x00" in text:
        raise Invalid("bad message", errors=[FieldError(path, f"1..{MAX_MESSAGE} characters")])
    return text


def open_case(
    connection: Connection,
    program: ProgramRecord,
    participant_id: int,
    message: str,
    *,
    entry_id: int | None = None,
    now: dt.datetime | None = None,
) -> int:
    """A new open case of the participant; ``entry_id`` must be one of their own ledger lines."""
    if entry_id is not None:
        owner = connection.execute(
            select(t.ledger_entries.c.participant_id).where(t.ledger_entries.c.id == entry_id)
        ).scalar_one_or_none()
        if owner != participant_id:
            raise NotFound(f"no ledger line {entry_id} of yours")
    inserted = connection.execute(
        t.cases.insert()
        .values(
            program_id=program.id,
            participant_id=participant_id,
            entry_id=entry_id,
            message=_message(message, "message"),
            status="open",
            created_at=now or dt.datetime.now(dt.UTC),
        )
        .returning(t.cases.c.id)
    )
    return int(inserted.scalar_one())


def _shape(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "participant": row.external_id,
        "entry": row.entry_id,
        "message": row.message,
        "status": row.status,
        "reply": row.reply,
        "adjustment": row.adjustment_id,
        "amount": row.amount,
        "currency": row.currency,
        "created_at": row.created_at,
        "answered_at": row.answered_at,
    }


def _query(program: ProgramRecord) -> Any:
    c, p, e = t.cases.c, t.participants.c, t.ledger_entries.c
    return (
        select(t.cases, p.external_id, e.amount, e.currency)
        .join(t.participants, p.id == c.participant_id)
        .outerjoin(t.ledger_entries, e.id == c.adjustment_id)
        .where(c.program_id == program.id)
        .order_by(c.id.desc())
    )


def of_participant(connection: Connection, program: ProgramRecord, participant_id: int, limit: int = 20) -> list[Any]:
    """The participant's newest cases with their answers."""
    rows = connection.execute(_query(program).where(t.cases.c.participant_id == participant_id).limit(limit))
    return [_shape(row) for row in rows]


def listed(
    connection: Connection, program: ProgramRecord, *, status: str | None = "open", limit: int = 100
) -> list[Any]:
    """The program's newest cases (open ones by default), for the admin."""
    query = _query(program).limit(limit)
    if status is not None:
        query = query.where(t.cases.c.status == status)
    return [_shape(row) for row in connection.execute(query)]


def answer(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    case_id: int,
    *,
    status: Answer,
    reply: str,
    actor: str,
    currency: str | None = None,
    amount: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Close an open case with a reply; ``resolved`` with an amount also posts the adjustment (audited, its
    note naming the case)."""
    c = t.cases.c
    row = connection.execute(
        select(t.cases, t.participants.c.external_id)
        .join(t.participants, t.participants.c.id == c.participant_id)
        .where(c.id == case_id, c.program_id == program.id)
    ).first()
    if row is None:
        raise NotFound(f"no case {case_id} in program {program.key!r}")
    if row.status != "open":
        raise Conflict(f"case {case_id} is already {row.status}")
    adjustment = None
    if amount:
        if status != "resolved" or currency is None:
            raise Invalid("bad answer", errors=[FieldError("amount", "an adjustment resolves a case, in a currency")])
        made = ledger.adjust(
            connection,
            program,
            compiled,
            participant=row.external_id,
            currency=currency,
            amount=amount,
            note=f"case {case_id}: {_message(reply, 'reply')}",
            actor=actor,
            idempotency_key=f"case-{case_id}",
            now=now,
        )
        adjustment = made["id"]
    connection.execute(
        t.cases.update()
        .where(c.id == case_id)
        .values(
            status=status,
            reply=_message(reply, "reply"),
            adjustment_id=adjustment,
            answered_at=now or dt.datetime.now(dt.UTC),
        )
    )
    return {"id": case_id, "status": status, "adjustment": adjustment}
