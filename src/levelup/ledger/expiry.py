"""The lots job: pending points become spendable, expired points leave with an ``expiry`` entry.

Run by the server every minute and by ``levelup expire``. Each expired lot is
emptied by a conditional update (``remaining = the amount read``) in the same
transaction as its ledger entry and balance move, so running the job twice, or
on two workers at once, expires nothing twice: the second finds the lot empty.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from levelup.ledger.lots import mature
from levelup.ledger.positions import PositionDelta
from levelup.ledger.service import move_positions
from levelup.participants import repository as participants
from levelup.runtime import Runtime
from levelup.storage import tables as t

BATCH = 500


@dataclass(frozen=True)
class Expired:
    program: str
    matured: int  # pending lots made spendable
    lots: int  # lots expired
    amount: dict[str, int]  # per currency


def expire_lots(
    connection: Connection, program_id: int, now: dt.datetime, limit: int = BATCH
) -> tuple[int, dict[str, int]]:
    """Expire up to ``limit`` due lots; returns how many and the amount per currency."""
    lot = t.lots.c
    due = connection.execute(
        select(lot.id, lot.participant_id, lot.currency, lot.remaining, lot.matured, lot.earned_at, lot.expires_at)
        .where(lot.program_id == program_id, lot.remaining > 0, lot.expires_at <= now)
        .order_by(lot.participant_id, lot.id)
        .limit(limit)
    ).all()
    if not due:
        return 0, {}
    participants.lock(connection, {r.participant_id for r in due})
    totals: dict[str, int] = {}
    count = 0
    deltas: dict[tuple[int, str], PositionDelta] = {}
    for row in due:
        emptied = connection.execute(
            update(t.lots).where(lot.id == row.id, lot.remaining == row.remaining).values(remaining=0)
        ).rowcount
        if not emptied:
            continue  # another worker expired or drew it meanwhile
        count += 1
        amount = int(row.remaining)
        connection.execute(
            t.ledger_entries.insert().values(
                program_id=program_id,
                participant_id=row.participant_id,
                currency=row.currency,
                amount=-amount,
                kind="expiry",
                # the conditional update above is the guard against expiring twice; the key is only unique
                # (a lot refunded into after it expired can expire again)
                idempotency_key=f"expiry:{row.id}:{uuid.uuid4().hex}",
                explain=f"{amount} {row.currency} earned {row.earned_at:%Y-%m-%d} expired",
                at=row.expires_at,
                created_at=now,
            )
        )
        key = (row.participant_id, row.currency)
        unripe = 0 if row.matured else -amount
        deltas[key] = deltas.get(key, PositionDelta()) + PositionDelta(-amount, pending=unripe)
        totals[row.currency] = totals.get(row.currency, 0) + amount
    move_positions(connection, program_id, deltas)
    return count, totals


def run(
    runtime: Runtime, *, now: dt.datetime | None = None, program_keys: Iterable[str] | None = None
) -> list[Expired]:
    """Mature and expire lots in every program (or ``program_keys``), in bounded transactions."""
    now = now or dt.datetime.now(dt.UTC)
    with runtime.db.read() as connection:
        query = select(t.programs.c.id, t.programs.c.key)
        if program_keys is not None:
            query = query.where(t.programs.c.key.in_(list(program_keys)))
        programs = connection.execute(query).all()
    done: list[Expired] = []
    for program_id, key in programs:
        with runtime.db.write() as connection:
            matured = mature(connection, program_id, now)
        lots = 0
        amounts: dict[str, int] = {}
        while True:
            with runtime.db.write() as connection:
                count, batch = expire_lots(connection, program_id, now)
            if not count:
                break
            lots += count
            for currency, amount in batch.items():
                amounts[currency] = amounts.get(currency, 0) + amount
        if matured or amounts:
            done.append(Expired(key, matured, lots, amounts))
    return done
