"""Kudos: a participant gives points to another from a periodic budget, with a message.

The giver's side of the budget is the ``kudos`` table (what each gave in each budget
period, checked under the giver's row lock); the receiver's side is a ledger entry of
kind ``kudos``. Kudos credit the balance but not the lifetime ``earned`` a level climbs
on, so two friends trading kudos cannot level each other up.

An admin can claw back what one kudos paid (a ``kudos_ring`` flag lists them): :func:`clawback` posts the
compensating entry, of kind ``clawback``, and writes the audit entry ``kudos.clawback``, once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from levelup.audit import service as audit
from levelup.engine.clawback import REASON
from levelup.errors import Conflict, FieldError, Invalid, NotFound
from levelup.feed.service import FeedItem, publish
from levelup.ledger.service import Booking, book
from levelup.metrics.periods import local_date, period_key
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

if TYPE_CHECKING:
    from levelup.runtime import Runtime

AUDITED = "kudos.clawback"


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
                kudos_key(kudos_id),
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


CLAWBACK_KEY = "kudos-clawback:"  # followed by the kudos id (the anti-gaming flags skip kudos clawed back)


def kudos_key(kudos_id: int) -> str:
    """The ledger key of the entry that credited kudos ``kudos_id`` to its receiver."""
    return f"kudos:{kudos_id}"


def clawback_key(kudos_id: int) -> str:
    """The ledger key of the entry that claws kudos ``kudos_id`` back: unique in the program, so at most one."""
    return f"{CLAWBACK_KEY}{kudos_id}"


def _entry(connection: Connection, program_id: int, key: str) -> Any:
    le = t.ledger_entries.c
    return connection.execute(
        select(le.participant_id, le.currency, le.amount, le.at).where(
            le.program_id == program_id, le.idempotency_key == key
        )
    ).first()


def _names(connection: Connection, kudos: Any) -> dict[int, str]:
    """The external ids of the kudos' giver and receiver, by internal id."""
    p = t.participants.c
    query = select(p.id, p.external_id).where(p.id.in_([kudos.giver_id, kudos.receiver_id]))
    return {int(i): str(e) for i, e in connection.execute(query)}


def _answer(kudos: Any, names: dict[int, str], taken: Any, status: str, note: str, by: str) -> dict[str, Any]:
    """The clawback of ``kudos`` as stored (``taken``: its ledger entry): who, why, when, and what it took."""
    return {
        "status": status,
        "kudos": kudos.id,
        "clawback": clawback_key(kudos.id),
        "giver": names[kudos.giver_id],
        "participant": names[kudos.receiver_id],
        "reason": REASON,
        "note": note,
        "by": by,
        "at": taken.at.isoformat(),
        "taken": {taken.currency: taken.amount},
    }


def _audited(connection: Connection, program_id: int, kudos_id: int, at: dt.datetime) -> tuple[str, str]:
    """Who clawed kudos ``kudos_id`` back and why, as the audit entry written with the clawback says."""
    a = t.audit_log.c
    rows = connection.execute(
        select(a.actor, a.detail).where(a.program_id == program_id, a.action == AUDITED, a.at == at).order_by(a.id)
    ).all()
    for actor, detail in rows:
        if detail.get("kudos") == kudos_id:
            return str(detail.get("note", "")), actor
    return "", ""  # not expected: the clawback and its audit entry are written in one transaction


def clawback(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    kudos_id: int,
    note: str,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Take back from the receiver what kudos ``kudos_id`` credited, audited, once.

    One compensating ledger entry of kind ``clawback`` (key ``kudos-clawback:<id>``) debits the receiver
    the amount the kudos' own entry credited, in its currency, through :func:`levelup.ledger.service.book`
    (the one posting path): what the receiver already spent becomes arrears, as an event's clawback
    does, and later credits pay it off. Nothing is deleted or updated; ``earned`` does not move (kudos
    never added to it). The audit entry ``kudos.clawback`` names ``actor`` and the note, in the same
    transaction. The entry's explanation names the kudos and its giver, never the kudos message or the
    note (free text the erasure of a participant must be able to find: the audit log holds the note).

    The giver's spent budget is *not* given back: the kudos row stays, and still counts against the
    giver's budget for its period. A ring's budget was spent gaming; giving it back would let the ring
    give the same kudos again.

    A second clawback of the same kudos changes nothing and answers the first with ``status:
    duplicate`` (the receiver's row lock orders concurrent ones; the ledger's unique key would refuse
    a second entry anyway). An unknown kudos id is :class:`NotFound`.
    """
    k = t.kudos.c
    kudos = connection.execute(select(t.kudos).where(k.program_id == program.id, k.id == kudos_id)).first()
    if kudos is None:
        raise NotFound(f"no kudos {kudos_id} in program {program.key!r}")
    participants.lock(connection, [kudos.receiver_id])
    key = clawback_key(kudos_id)
    done = _entry(connection, program.id, key)
    if done is not None:
        note, by = _audited(connection, program.id, kudos_id, done.at)
        return _answer(kudos, _names(connection, kudos), done, "duplicate", note, by)
    credited = _entry(connection, program.id, kudos_key(kudos_id))
    assert credited is not None, f"kudos {kudos_id} has no ledger entry"  # give books it with the kudos row
    now = now or dt.datetime.now(dt.UTC)
    names = _names(connection, kudos)
    explain = f"clawback of kudos {kudos_id} from {names[kudos.giver_id]}"
    booking = Booking(credited.participant_id, credited.currency, -credited.amount, REASON, key, explain, now)
    book(connection, program.id, [booking], now=now, compiled=compiled)
    answer = _answer(kudos, names, _entry(connection, program.id, key), "accepted", note, actor)
    detail = {name: answer[name] for name in ("kudos", "clawback", "giver", "participant", "note", "taken")}
    audit.record(connection, program.id, actor, AUDITED, detail, now)
    return answer


def claw_back(
    runtime: Runtime, program_key: str, kudos_id: int, *, note: str, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """:func:`clawback` in a write transaction of its own (the API route and ``levelup clawback --kudos``)."""
    with runtime.db.write() as connection:
        record = programs.find(connection, program_key)
        compiled = runtime.programs.compiled(connection, record)
        return clawback(connection, record, compiled, kudos_id=kudos_id, note=note, actor=actor, now=now)
