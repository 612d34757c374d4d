"""Refer-a-friend that cannot be farmed.

How the events express it (program ``referrals:``):

1. ``referral.made`` for the *friend* (the referred participant), ``data.referrer`` naming who
   referred them. Referring oneself is refused with the event (422). One referral per friend:
   the first one stands. A friend who already made a qualifying event is an existing customer:
   the referral is recorded as ``void``.
2. The friend's first ``purchase.completed`` (``qualify``) makes the referral ``qualified``,
   payable ``hold`` (default 30 days) after that purchase's event time.
3. If that purchase is fully refunded (a reversal) before the referral is paid, the referral
   goes back to ``waiting`` for the friend's next purchase.
4. The referrals job (run with the other periodic jobs, and by ``levelup expire``) pays the
   referrer the constant ``award`` (ledger kind ``referral``) once ``pay_after`` has passed,
   once per friend (the idempotency key names the friend). A suspended referrer is paid when
   reactivated.

All of it runs in the ingestion transaction or the job's, after the participants are locked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, select, update

from levelup.engine.model import WHOLE, Effects
from levelup.ledger.service import Booking, book
from levelup.participants import repository as participants
from levelup.programs import service as programs_service
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import duration_seconds
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import insert_ignore


def record(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    done: Sequence[Effects],
    ids: dict[str, int],
    now: dt.datetime,
) -> None:
    """Follow the referral lifecycle through a batch of scored events (in order)."""
    referrals = compiled.doc.referrals
    if referrals is None:
        return
    hold = dt.timedelta(seconds=duration_seconds(referrals.hold))
    r = t.referrals.c
    for e in done:
        event = e.event
        friend = ids[event.participant]
        if event.type == referrals.event and not event.reverses:
            referrer_name = str(event.data[referrals.referrer])
            referrer = participants.ensure(connection, program_id, [referrer_name])[0][referrer_name]
            bought = connection.execute(
                select(t.events.c.seq)
                .where(
                    t.events.c.program_id == program_id,
                    t.events.c.participant_id == friend,
                    t.events.c.type == referrals.qualify,
                    t.events.c.seq < event.seq,
                )
                .limit(1)
            ).first()
            insert_ignore(
                connection,
                t.referrals,
                [
                    {
                        "referred_id": friend,
                        "program_id": program_id,
                        "referrer_id": referrer,
                        "status": "void" if bought else "waiting",
                        "referral_event": event.id,
                        "created_at": now,
                    }
                ],
            )
        elif event.type == referrals.qualify and not event.reverses:
            connection.execute(
                update(t.referrals)
                .where(r.referred_id == friend, r.status == "waiting")
                .values(status="qualified", qualifying_event=event.id, pay_after=event.occurred_at + hold)
            )
        elif event.reverses and e.refunded == WHOLE:
            connection.execute(
                update(t.referrals)
                .where(r.referred_id == friend, r.status == "qualified", r.qualifying_event == event.reverses)
                .values(status="waiting", qualifying_event=None, pay_after=None)
            )


def pay_due(runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None) -> int:
    """Pay every qualified referral whose hold has passed, in every program (or ``program_keys``);
    returns how many were paid."""
    now = now or dt.datetime.now(dt.UTC)
    paid = 0
    with runtime.db.read() as connection:
        programs = programs_service.selected(connection, program_keys)
    for program in programs:
        program_id = program.id
        with runtime.db.write() as connection:
            compiled = runtime.programs.compiled(connection, programs_service.find(connection, program.key))
            referrals = compiled.doc.referrals
            if referrals is None:
                continue
            r, p = t.referrals.c, t.participants.c
            due = connection.execute(
                select(r.referred_id, r.referrer_id, r.referral_event, p.external_id)
                .join(t.participants, p.id == r.referred_id)
                .where(r.program_id == program_id, r.status == "qualified", r.pay_after <= now)
            ).all()
            active = set(
                connection.execute(
                    select(p.id).where(p.id.in_([d.referrer_id for d in due]), p.status == "active")
                ).scalars()
            )
            bookings = [
                Booking(
                    d.referrer_id,
                    currency,
                    int(amount),
                    "referral",
                    f"referral:{d.referred_id}:{currency}",
                    f"referral of {d.external_id} ({d.referral_event}): first purchase stood {referrals.hold}",
                    now,
                )
                for d in due
                if d.referrer_id in active
                for currency, amount in referrals.award.items()
                if isinstance(amount, int | float) and amount >= 1
            ]
            book(connection, program_id, bookings, now=now, compiled=compiled)
            for d in due:
                if d.referrer_id in active:
                    connection.execute(
                        update(t.referrals)
                        .where(r.referred_id == d.referred_id, r.status == "qualified")
                        .values(status="paid", paid_at=now)
                    )
                    paid += 1
    return paid
