"""Kudos: a participant gives points to another from a periodic budget, with a message.

The giver's side of the budget is the ``kudos`` table (what each gave in each budget
period, checked under the giver's row lock); the receiver's side is a ledger entry of
kind ``kudos``. Kudos credit the balance but not the lifetime ``earned`` a level climbs
on, so two friends trading kudos cannot level each other up.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Connection, func, select

from levelup.errors import Conflict, FieldError, Invalid
from levelup.feed.service import FeedItem, publish
from levelup.ledger.service import Booking, book
from levelup.metrics.periods import local_date, period_key
from levelup.participants import repository as participants
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t


def give(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    giver: str,
    receiver: str,
    amount: int,
    message: str,
    idempotency_key: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    settings = compiled.doc.kudos
    if settings is None:
        raise Conflict(f"program {program.key!r} has no kudos", code="kudos_disabled")
    if giver == receiver:
        raise Invalid("kudos go to someone else", errors=[FieldError("to", "must differ from from")])
    now = now or dt.datetime.now(dt.UTC)
    key = idempotency_key or uuid.uuid4().hex
    ids, _ = participants.ensure(connection, program.id, [giver, receiver])
    participants.lock(connection, [ids[giver]])
    k = t.kudos.c
    earlier = connection.execute(select(t.kudos).where(k.program_id == program.id, k.idempotency_key == key)).first()
    if earlier is not None:
        if (earlier.giver_id, earlier.receiver_id, earlier.amount) != (ids[giver], ids[receiver], amount):
            raise Conflict("this idempotency key was used for different kudos")
        return {"id": earlier.id, "status": "duplicate"}
    for who in (giver, receiver):  # a suspended participant neither earns nor spends, kudos budget included
        status = connection.execute(select(t.participants.c.status).where(t.participants.c.id == ids[who])).scalar_one()
        if status != "active":
            raise Conflict(f"participant {who} is {status}", code="participant_suspended")
    period = period_key(settings.budget.per, local_date(now, compiled.timezone))
    given = connection.execute(
        select(func.coalesce(func.sum(k.amount), 0)).where(k.giver_id == ids[giver], k.period == period)
    ).scalar_one()
    left = settings.budget.amount - int(given)
    if amount > left:
        raise Conflict(
            f"{giver} has {left} of {settings.budget.amount} kudos left this {settings.budget.per} ({period})",
            code="kudos_budget",
            errors=[FieldError("amount", f"at most {left}")],
        )
    kudos_id = connection.execute(
        t.kudos.insert()
        .values(
            program_id=program.id,
            giver_id=ids[giver],
            receiver_id=ids[receiver],
            amount=amount,
            period=period,
            message=message,
            idempotency_key=key,
            at=now,
        )
        .returning(k.id)
    ).scalar_one()
    book(
        connection,
        program.id,
        [
            Booking(
                ids[receiver],
                settings.currency,
                amount,
                "kudos",
                f"kudos:{kudos_id}",
                f"kudos from {giver}: {message}",
                now,
            )
        ],
        now=now,
        compiled=compiled,
    )
    payload = {"from": giver, "amount": amount, "currency": settings.currency, "message": message}
    publish(connection, program.id, [FeedItem(receiver, "kudos", payload, now)])
    return {"id": kudos_id, "status": "accepted", "period": period, "budget_left": left - amount}
