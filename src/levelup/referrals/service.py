"""Refer-a-friend that cannot be farmed: the shell around :mod:`levelup.engine.referrals`.

How the events express it (program ``referrals:``) is decided by the engine, in
the stream: a referral is made for the friend (the first one stands; ``void`` for
an existing customer), qualified by the friend's first qualifying event, and put
back to waiting when that event is fully refunded. Here: loading what the engine
needs for a batch, writing the changes it returns, and the referrals job that pays
the referrer the constant ``award`` (ledger kind ``referral``) once ``pay_after``
has passed, once per friend (the idempotency key names the friend). A suspended
referrer is paid when reactivated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from sqlalchemy import Connection, Row, select, update

from levelup.engine.experiments import held_out_by
from levelup.engine.model import Effects, Event, ParticipantState, ReferralState
from levelup.jobs.items import in_batches
from levelup.ledger.service import Booking, book
from levelup.programs import service as programs_service
from levelup.programs.compiled import CompiledProgram
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.storage.sql import insert_ignore


def load(
    connection: Connection,
    program_id: int,
    compiled: CompiledProgram,
    ids: Mapping[str, int],
    states: Mapping[str, ParticipantState],
) -> None:
    """Give the engine each participant's referral and whether they are already a customer."""
    referrals = compiled.doc.referrals
    if referrals is None or not ids:
        return
    by_id = {v: k for k, v in ids.items()}
    r, p = t.referrals.c, t.participants.c
    for row in connection.execute(
        select(r.referred_id, r.status, p.external_id, r.referral_event, r.qualifying_event, r.pay_after)
        .join(t.participants, p.id == r.referrer_id)
        .where(r.referred_id.in_(list(by_id)))
    ):
        states[by_id[row.referred_id]].referral = ReferralState(
            row.status, row.external_id, row.referral_event, row.qualifying_event, row.pay_after
        )
    e = t.events.c
    for pid in connection.execute(
        select(e.participant_id)
        .where(e.program_id == program_id, e.participant_id.in_(list(by_id)), e.type == referrals.qualify)
        .distinct()
    ).scalars():
        states[by_id[pid]].bought = True


def named(compiled: CompiledProgram, event: Event) -> str | None:
    """The referrer a referral event names (a participant from then on, even when the referral does not
    stand), or None (not a referral, or no valid referrer: the engine refuses the event)."""
    referrals = compiled.doc.referrals
    if referrals is None or event.type != referrals.event or event.reverses:
        return None
    referrer = event.data.get(referrals.referrer)
    return referrer if isinstance(referrer, str) and 0 < len(referrer) <= 200 else None


def write(
    connection: Connection,
    program_id: int,
    scored: Sequence[Effects],
    ids: Mapping[str, int],
    now: dt.datetime,
) -> None:
    """Store the referral changes of a scored batch, in order (``ids`` holds the referrers too: ingestion
    creates them in the order they are named)."""
    changes = [(ids[e.event.participant], e.referral) for e in scored if e.referral is not None]
    r = t.referrals.c
    for friend, change in changes:
        referral = change.referral
        if change.made:
            row = {
                "referred_id": friend,
                "program_id": program_id,
                "referrer_id": ids[referral.referrer],
                "status": referral.status,
                "referral_event": referral.referral_event,
                "created_at": now,
            }
            insert_ignore(connection, t.referrals, [row])
        else:
            # guarded by the status it moves from, so the job paying it meanwhile is never undone
            prior = "waiting" if referral.status == "qualified" else "qualified"
            connection.execute(
                update(t.referrals)
                .where(r.referred_id == friend, r.status == prior)
                .values(
                    status=referral.status, qualifying_event=referral.qualifying_event, pay_after=referral.pay_after
                )
            )


def pay_due(runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None) -> int:
    """Pay every qualified referral whose hold has passed, in every program (or ``program_keys``);
    returns how many were paid."""
    now = now or dt.datetime.now(dt.UTC)
    paid = 0
    with runtime.db.read() as connection:
        programs = programs_service.selected(connection, program_keys)
    r, p = t.referrals.c, t.participants.c
    for program in programs:
        program_id = program.id
        with runtime.db.read() as connection:
            compiled = runtime.programs.compiled(connection, programs_service.find(connection, program.key))
            referrals = compiled.doc.referrals
            if referrals is None:
                continue
            due = connection.execute(
                select(r.referred_id, r.referrer_id, r.referral_event, p.external_id)
                .join(t.participants, p.id == r.referred_id)
                .where(r.program_id == program_id, r.status == "qualified", r.pay_after <= now)
            ).all()
        # a referral whose payment fails is retried alone, so the others are paid anyway
        paid += sum(
            in_batches(
                due, partial(_pay, runtime, program_id, compiled, now), size=500, what=f"referrals of {program.key}"
            )
        )
    return paid


def _pay(
    runtime: Runtime, program_id: int, compiled: CompiledProgram, now: dt.datetime, due: Sequence[Row[Any]]
) -> int:
    """Pay the ``due`` referrals still qualified and whose referrer is active, in one transaction."""
    referrals = compiled.doc.referrals
    assert referrals is not None
    r, p = t.referrals.c, t.participants.c
    with runtime.db.write() as connection:
        still = set(
            connection.execute(
                select(r.referred_id).where(r.referred_id.in_([d.referred_id for d in due]), r.status == "qualified")
            ).scalars()
        )
        active = dict(
            connection.execute(
                select(p.id, p.external_id).where(p.id.in_([d.referrer_id for d in due]), p.status == "active")
            ).all()
        )
        # a referrer held out of the whole program by an experiment is paid nothing, as its rules pay nothing
        kept_out = {
            d.referred_id
            for d in due
            if d.referrer_id in active and held_out_by(compiled.program_holdouts, active[d.referrer_id]) is not None
        }
        payable = [d for d in due if d.referred_id in still - kept_out and d.referrer_id in active]
        if kept_out:
            void = update(t.referrals).where(r.referred_id.in_(kept_out & still), r.status == "qualified")
            connection.execute(void.values(status="void"))
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
            for d in payable
            for currency, amount in referrals.award.items()
            if isinstance(amount, int | float) and amount >= 1
        ]
        book(connection, program_id, bookings, now=now, compiled=compiled)
        for d in payable:
            connection.execute(
                update(t.referrals)
                .where(r.referred_id == d.referred_id, r.status == "qualified")
                .values(status="paid", paid_at=now)
            )
    return len(payable)
