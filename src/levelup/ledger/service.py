"""Reading the ledger, bookings outside scoring (prizes, kudos, referrals) and audited manual adjustments."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from levelup.audit import service as audit
from levelup.engine.positions import Position, PositionDelta, apply, move
from levelup.errors import Conflict, FieldError, Invalid, NotFound
from levelup.ledger import posting
from levelup.ledger.lots import LotMove
from levelup.ledger.posting import Entry
from levelup.participants import repository as participants
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

MAX_PAGE = 500


def participant_id(connection: Connection, program: ProgramRecord, external_id: str) -> int:
    found = connection.execute(
        select(t.participants.c.id).where(
            t.participants.c.program_id == program.id, t.participants.c.external_id == external_id
        )
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no participant {external_id!r} in program {program.key!r}")
    return int(found)


def entries(
    connection: Connection, program: ProgramRecord, external_id: str, *, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of entries, newest first, and the cursor of the next page (None at the end)."""
    pid = participant_id(connection, program, external_id)
    query = (
        select(t.ledger_entries, t.events.c.event_id)
        .outerjoin(t.events, t.events.c.seq == t.ledger_entries.c.event_seq)
        .where(t.ledger_entries.c.participant_id == pid)
        .order_by(t.ledger_entries.c.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(t.ledger_entries.c.id < before)
    rows = connection.execute(query).all()
    page = [
        {
            "id": r.id,
            "currency": r.currency,
            "amount": r.amount,
            "kind": r.kind,
            "rule": r.rule,
            "rule_version": r.rule_version,
            "event": r.event_id,
            "explain": r.explain,
            "at": r.at.isoformat(),
        }
        for r in rows[:limit]
    ]
    return page, (rows[limit - 1].id if len(rows) > limit else None)


@dataclass(frozen=True)
class Booking:
    """A ledger entry made outside event scoring: an adjustment, a prize, a team reward."""

    participant_id: int
    currency: str
    amount: int
    kind: str
    key: str  # idempotency key, unique in the program
    explain: str
    at: dt.datetime


def book(
    connection: Connection,
    program_id: int,
    bookings: list[Booking],
    *,
    now: dt.datetime,
    compiled: CompiledProgram,
) -> None:
    """Post entries made outside scoring, moving balances with the same arithmetic as scoring (credits pay
    arrears first). Locks the participants first; the ledger's unique key refuses a second booking of a key."""
    if not bookings:
        return
    participants.lock(connection, {b.participant_id for b in bookings})
    wanted = {(b.participant_id, b.currency) for b in bookings}
    positions = {
        (r.participant_id, r.currency): Position(r.available, r.arrears, r.earned)
        for r in connection.execute(select(t.positions).where(t.positions.c.participant_id.in_({p for p, _ in wanted})))
        if (r.participant_id, r.currency) in wanted
    }
    deltas: dict[tuple[int, str], PositionDelta] = {}
    moves: list[LotMove] = []
    for b in bookings:
        position = positions.setdefault((b.participant_id, b.currency), Position())
        delta = move(position, b.amount, b.kind)
        apply(position, delta)
        deltas[(b.participant_id, b.currency)] = deltas.get((b.participant_id, b.currency), PositionDelta()) + delta
        moves.append(LotMove(b.participant_id, b.currency, delta.available, b.kind, b.at, b.key))
    entries = [Entry(b.participant_id, b.currency, b.amount, b.kind, b.key, b.explain, b.at) for b in bookings]
    posting.post(connection, program_id, compiled, entries, deltas, now=now, lots=moves)


def adjust(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    participant: str,
    currency: str,
    amount: int,
    note: str,
    actor: str,
    idempotency_key: str | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Credit or debit by hand (``now``: when; an import passes the original time). A debit never takes the
    available balance below zero."""
    if currency not in compiled.currencies:
        raise Invalid("unknown currency", errors=[FieldError("currency", f'no currency "{currency}" in the program')])
    if amount == 0:
        raise Invalid("amount is zero", errors=[FieldError("amount", "must not be zero")])
    key = f"adjustment:{idempotency_key or uuid.uuid4().hex}"
    pid = participants.ensure(connection, program.id, [participant])[0][participant]
    participants.lock(connection, [pid])
    existing = connection.execute(
        select(t.ledger_entries).where(
            t.ledger_entries.c.program_id == program.id, t.ledger_entries.c.idempotency_key == key
        )
    ).first()
    if existing is not None:
        if (existing.participant_id, existing.currency, existing.amount) != (pid, currency, amount):
            raise Conflict("this idempotency key was used for a different adjustment")
        return {"id": existing.id, "status": "duplicate"}
    row = connection.execute(
        select(t.positions).where(t.positions.c.participant_id == pid, t.positions.c.currency == currency)
    ).first()
    spendable = row.available - row.pending if row else 0
    if amount < 0 and spendable < -amount:
        raise Conflict(
            f"insufficient balance: {spendable} {currency} spendable, debit of {-amount}",
            code="insufficient_balance",
        )
    now = now or dt.datetime.now(dt.UTC)
    book(
        connection,
        program.id,
        [Booking(pid, currency, amount, "adjustment", key, f"manual adjustment by {actor}: {note}", now)],
        now=now,
        compiled=compiled,
    )
    entry_id = connection.execute(
        select(t.ledger_entries.c.id).where(
            t.ledger_entries.c.program_id == program.id, t.ledger_entries.c.idempotency_key == key
        )
    ).scalar_one()
    detail = {"participant": participant, "currency": currency, "amount": amount, "note": note, "entry": entry_id}
    audit.record(connection, program.id, actor, "ledger.adjust", detail, now)
    return {"id": entry_id, "status": "accepted"}
