"""Lots: every credit of a spendable currency, with when it becomes spendable and when it expires.

The position says *how much*; lots say *which points*: each credit that reaches
the available balance (after paying arrears) becomes a lot (amount, remaining,
earned at, available from, expires at). Every debit draws lots, so at all times

    sum(remaining of live lots)       == positions.available
    sum(remaining of pending lots)    == positions.pending   (part of available, not yet spendable)

Draw order: a reversal first takes back the lots its own event created; then
the soonest-expiring spendable lots go first (never-expiring last, older first
among equals); pending lots last. A currency with ``pending: P14D`` makes earned
credits pending for 14 days from the event time: a return inside the window
voids them before they could be spent. Non-spendable currencies (XP) keep no lots.

Lots are written by the same transaction that books the entries, after the
participant row is locked, so they never disagree with the ledger; the database
checks ``0 <= remaining <= amount`` and ``0 <= pending <= available``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Select, case, func, select, update

from levelup.engine.positions import lot_dates
from levelup.programs.compiled import CompiledProgram
from levelup.storage import tables as t
from levelup.storage.sql import bulk_insert


@dataclass(frozen=True)
class LotMove:
    """What one ledger entry did to the available balance of a lot-keeping currency."""

    participant_id: int
    currency: str
    amount: int  # > 0: a new lot; < 0: lots drawn
    kind: str  # the entry's kind: earning credits may be pending
    at: dt.datetime  # the entry's time (event time): lots are earned, and expire, from it
    key: str  # the entry's idempotency key
    event_seq: int | None = None
    own_seq: int | None = None  # a reversal: the reversed event, whose lots go first


@dataclass(frozen=True)
class Draw:
    lot_id: int
    amount: int
    pending: bool


def keeps_lots(compiled: CompiledProgram, currency: str) -> bool:
    found = compiled.currencies.get(currency)
    return found is not None and found.spendable


def _lot_row(program_id: int, compiled: CompiledProgram, move: LotMove, now: dt.datetime) -> dict[str, object]:
    available_at, expires_at = lot_dates(compiled.currencies[move.currency], move.kind, move.at)
    return {
        "program_id": program_id,
        "participant_id": move.participant_id,
        "currency": move.currency,
        "amount": move.amount,
        "remaining": move.amount,
        "earned_at": move.at,
        "available_at": available_at,
        "expires_at": expires_at,
        "matured": available_at == move.at or available_at <= now,  # no pending period: spendable at once
        "event_seq": move.event_seq,
        "source_key": move.key,
    }


def apply_moves(
    connection: Connection, program_id: int, compiled: CompiledProgram, moves: Iterable[LotMove], now: dt.datetime
) -> dict[tuple[int, str], int]:
    """Create and draw lots for booked entries, in booking order.

    Returns the change to ``positions.pending`` per (participant, currency): the caller moves it in
    the same update as ``available``, so ``pending <= available`` holds at every statement.
    """
    pending: dict[tuple[int, str], int] = {}
    fresh: list[dict[str, object]] = []
    for move in moves:
        if not keeps_lots(compiled, move.currency) or move.amount == 0:
            continue
        key = (move.participant_id, move.currency)
        if move.amount > 0:
            row = _lot_row(program_id, compiled, move, now)
            fresh.append(row)
            if not row["matured"]:
                pending[key] = pending.get(key, 0) + move.amount
            continue
        bulk_insert(connection, t.lots, fresh)  # a draw must see the lots booked before it
        fresh = []
        draws = draw(connection, move.participant_id, move.currency, -move.amount, own_seq=move.own_seq)
        pending[key] = pending.get(key, 0) - sum(d.amount for d in draws if d.pending)
    bulk_insert(connection, t.lots, fresh)
    return {k: n for k, n in pending.items() if n}


def draw(
    connection: Connection,
    participant_id: int,
    currency: str,
    amount: int,
    *,
    own_seq: int | None = None,
    spendable_only: bool = False,
) -> list[Draw]:
    """Take ``amount`` from the participant's lots in the documented order (caller holds the participant lock)."""
    lot = t.lots.c
    order = [
        case((lot.event_seq == own_seq, 0), else_=1) if own_seq is not None else lot.id.is_(None),
        lot.matured.desc(),
        case((lot.expires_at.is_(None), 1), else_=0),
        lot.expires_at,
        lot.available_at,
        lot.id,
    ]
    where = [lot.participant_id == participant_id, lot.currency == currency, lot.remaining > 0]
    if spendable_only:
        where.append(lot.matured.is_(True))
    draws: list[Draw] = []
    left = amount
    while left > 0:
        rows = connection.execute(
            select(lot.id, lot.remaining, lot.matured).where(*where).order_by(*order).limit(50)
        ).all()
        if not rows:
            raise RuntimeError(
                f"lots of participant {participant_id} in {currency} are short by {left}: ledger and lots disagree"
            )
        for row in rows:
            take = min(left, int(row.remaining))
            connection.execute(update(t.lots).where(lot.id == row.id).values(remaining=lot.remaining - take))
            draws.append(Draw(int(row.id), take, not row.matured))
            left -= take
            if left == 0:
                break
    return draws


def restore(connection: Connection, draws: Iterable[tuple[int, int]], amount: int) -> None:
    """Put up to ``amount`` back into the lots drawn (a cancelled redemption): they keep
    their expiry (oldest lot first). Less than was drawn when part of a refund paid arrears off."""
    for lot_id, drawn in draws:
        back = min(drawn, amount)
        if back <= 0:
            break
        connection.execute(update(t.lots).where(t.lots.c.id == lot_id).values(remaining=t.lots.c.remaining + back))
        amount -= back


def pending_due(program_id: int, now: dt.datetime) -> Select[tuple[int, int, str, int]]:
    """Pending lots whose time has come: read through the partial index of pending lots (``ix_lots_pending``),
    so the job reads what it has to move, not every lot the program ever made."""
    lot = t.lots.c
    return select(lot.id, lot.participant_id, lot.currency, lot.remaining).where(
        lot.program_id == program_id, ~lot.matured, lot.available_at <= now
    )


def mature(connection: Connection, program_id: int, now: dt.datetime) -> tuple[int, dict[tuple[int, str], int]]:
    """Pending lots whose time has come become spendable: how many, and the change to ``pending`` per
    (participant, currency), for the caller to post with :func:`levelup.ledger.posting.post`."""
    lot = t.lots.c
    due = connection.execute(pending_due(program_id, now)).all()
    moved: dict[tuple[int, str], int] = {}
    done = 0
    for row in due:
        changed = connection.execute(
            update(t.lots).where(lot.id == row.id, lot.matured.is_(False)).values(matured=True)
        ).rowcount
        if changed:
            done += 1
            key = (row.participant_id, row.currency)
            moved[key] = moved.get(key, 0) - int(row.remaining)
    return done, {k: n for k, n in moved.items() if n}


def expiring(connection: Connection, participant_id: int, now: dt.datetime) -> list[dict[str, object]]:
    """What this participant holds that will expire, soonest first (one line per expiry time)."""
    lot = t.lots.c
    rows = connection.execute(
        select(lot.currency, lot.expires_at, func.sum(lot.remaining).label("amount"))
        .where(lot.participant_id == participant_id, lot.remaining > 0, lot.expires_at > now)
        .group_by(lot.currency, lot.expires_at)
        .order_by(lot.expires_at, lot.currency)
    ).all()
    return [{"currency": r.currency, "amount": int(r.amount), "expires_at": r.expires_at.isoformat()} for r in rows]
