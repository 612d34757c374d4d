"""The lots job: pending points become spendable, expired points leave with an ``expiry`` entry, and
``points.expiring`` notifications warn of what expires soon (:func:`levelup.webhooks.outbox.warn_expiring`).

Run by the server every minute and by ``levelup expire``. Each expired lot is
emptied by a conditional update (``remaining = the amount read``) in the same
transaction as its ledger entry and balance move, so running the job twice, or
on two workers at once, expires nothing twice: the second finds the lot empty.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update

from levelup.engine.positions import PositionDelta
from levelup.ledger import posting
from levelup.ledger.lots import mature
from levelup.ledger.posting import Entry
from levelup.participants import repository as participants
from levelup.programs import service as programs_service
from levelup.programs.document import duration_seconds
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.webhooks import outbox

BATCH = 500


@dataclass(frozen=True)
class Expired:
    program: str
    matured: int  # pending lots made spendable
    lots: int  # lots expired
    amount: dict[str, int]  # per currency


def expire_lots(
    connection: Connection,
    program_id: int,
    now: dt.datetime,
    limit: int = BATCH,
    inactivity: Mapping[str, dt.timedelta] | None = None,
) -> tuple[int, dict[str, int]]:
    """Expire up to ``limit`` due lots: past their lifetime, or (``inactivity`` per currency) all of a
    participant's lots once they have earned nothing for that long. Returns how many, and the amount per currency."""
    lot = t.lots.c
    due_now = lot.expires_at <= now
    for currency, idle in (inactivity or {}).items():
        latest = (
            select(lot.participant_id)
            .where(lot.program_id == program_id, lot.currency == currency)
            .group_by(lot.participant_id)
            .having(func.max(lot.earned_at) <= now - idle)
        )
        due_now = due_now | ((lot.currency == currency) & lot.participant_id.in_(latest))
    due = connection.execute(
        select(lot.id, lot.participant_id, lot.currency, lot.remaining, lot.matured, lot.earned_at, lot.expires_at)
        .where(lot.program_id == program_id, lot.remaining > 0, due_now)
        .order_by(lot.participant_id, lot.id)
        .limit(limit)
    ).all()
    if not due:
        return 0, {}
    participants.lock(connection, {r.participant_id for r in due})
    totals: dict[str, int] = {}
    count = 0
    deltas: dict[tuple[int, str], PositionDelta] = {}
    entries: list[Entry] = []
    for row in due:
        emptied = connection.execute(
            update(t.lots).where(lot.id == row.id, lot.remaining == row.remaining).values(remaining=0)
        ).rowcount
        if not emptied:
            continue  # another worker expired or drew it meanwhile
        count += 1
        amount = int(row.remaining)
        lapsed = row.expires_at is not None and row.expires_at <= now
        entries.append(
            Entry(
                row.participant_id,
                row.currency,
                -amount,
                "expiry",
                # the conditional update above is the guard against expiring twice; the key is only unique
                # (a lot refunded into after it expired can expire again)
                f"expiry:{row.id}:{uuid.uuid4().hex}",
                f"{amount} {row.currency} earned {row.earned_at:%Y-%m-%d} expired"
                + ("" if lapsed else " (no activity)"),
                row.expires_at if lapsed else now,
            )
        )
        key = (row.participant_id, row.currency)
        unripe = 0 if row.matured else -amount
        deltas[key] = deltas.get(key, PositionDelta()) + PositionDelta(-amount, pending=unripe)
        totals[row.currency] = totals.get(row.currency, 0) + amount
    posting.post(connection, program_id, None, entries, deltas, now=now)
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
            matured, ripened = mature(connection, program_id, now)
            ripe = {key: PositionDelta(pending=n) for key, n in ripened.items()}
            posting.post(connection, program_id, None, [], ripe, now=now)
            outbox.warn_expiring(connection, program_id, now)
            compiled = runtime.programs.compiled(connection, programs_service.find(connection, key))
        inactivity = {
            c.key: dt.timedelta(seconds=duration_seconds(c.expires_after_inactivity))
            for c in compiled.doc.currencies
            if c.expires_after_inactivity
        }
        lots = 0
        amounts: dict[str, int] = {}
        while True:
            with runtime.db.write() as connection:
                count, batch = expire_lots(connection, program_id, now, inactivity=inactivity)
            if not count:
                break
            lots += count
            for currency, amount in batch.items():
                amounts[currency] = amounts.get(currency, 0) + amount
        if matured or amounts:
            done.append(Expired(key, matured, lots, amounts))
    return done
