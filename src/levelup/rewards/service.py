"""The rewards catalog and redemptions that never overspend a balance nor oversell stock.

Every guard is the database's, inside one transaction that first locks the
participant row (PostgreSQL ``FOR UPDATE``; SQLite has one writer):

- balance: the debit goes through ``positions`` whose CHECKs (``available >= 0``,
  ``pending <= available``) refuse to spend what is not spendable;
- stock: ``UPDATE reward_counts SET redeemed = redeemed + 1 WHERE redeemed < stock``
  succeeds for exactly ``stock`` redemptions, across workers;
- limit: counted under the participant lock, so two parallel requests of one
  participant are judged one after the other;
- idempotency: ``(program, idempotency_key)`` is unique; the same key with the same
  body returns the first redemption, with another body it is a 409.

Nothing is checked against a cache. The cost is drawn from the soonest-expiring
spendable lots; a cancellation refunds those same lots, which keep their expiry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from levelup.audit import service as audit
from levelup.engine.levels import level_of
from levelup.engine.positions import PositionDelta
from levelup.engine.tiers import index_of
from levelup.errors import Conflict, FieldError, Invalid, NotFound
from levelup.ledger import posting
from levelup.ledger.lots import draw, restore
from levelup.ledger.posting import Entry
from levelup.metrics.periods import local_date, period_key
from levelup.participants import repository as participants
from levelup.participants.profile import level_value
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import Reward
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t
from levelup.storage.sql import insert_ignore
from levelup.webhooks import outbox


def _reward(compiled: CompiledProgram, key: str) -> Reward:
    found = next((r for r in compiled.doc.rewards if r.key == key), None)
    if found is None:
        raise Invalid("unknown reward", errors=[FieldError("reward", f'no reward "{key}" in the program')])
    return found


def _redeemed(connection: Connection, program_id: int) -> dict[str, int]:
    c = t.reward_counts.c
    return {
        reward: int(n)
        for reward, n in connection.execute(select(c.reward, c.redeemed).where(c.program_id == program_id))
    }


def _participant_row(connection: Connection, program_id: int, external_id: str) -> Any:
    p = t.participants.c
    return connection.execute(
        select(p.id, p.external_id, p.status, p.tier).where(p.program_id == program_id, p.external_id == external_id)
    ).first()


def _why_not(
    connection: Connection,
    compiled: CompiledProgram,
    reward: Reward,
    participant: Any,
    redeemed: int,
    today: dt.date,
) -> tuple[str, str] | None:
    """The first reason this participant cannot redeem this reward now (code, message), or None."""
    if reward.starts and today < reward.starts:
        return "not_active", f"{reward.name} is available from {reward.starts}"
    if reward.ends and today > reward.ends:
        return "not_active", f"{reward.name} ended on {reward.ends}"
    if reward.stock is not None and redeemed >= reward.stock:
        return "out_of_stock", f"{reward.name} is out of stock"
    if participant is None:
        return "insufficient_balance", "no balance yet"
    if participant.status != "active":
        return "participant_suspended", f"participant {participant.external_id} is {participant.status}"
    requires = reward.requires
    tiers, levels = compiled.doc.tiers, compiled.doc.levels
    if requires and requires.tier and tiers is not None:
        need, have = index_of(tiers, requires.tier), index_of(tiers, participant.tier)
        if have is None or need is None or have < need:
            return "requirement_unmet", f"needs tier {requires.tier} (holds {participant.tier or 'none'})"
    if requires and requires.level and levels is not None:
        value = level_value(connection, compiled, participant.id)
        reached = [s.name for s in levels.steps if value >= s.at]
        if requires.level not in reached:
            return "requirement_unmet", f"needs level {requires.level} (is {level_of(levels, value)['name']})"
    if reward.limit is not None:
        period = period_key(reward.limit.per, today)
        r = t.redemptions.c
        used = connection.execute(
            select(func.count()).where(
                r.participant_id == participant.id, r.reward == reward.key, r.period == period, r.status != "cancelled"
            )
        ).scalar_one()
        if used >= reward.limit.max:
            return "limit_reached", f"at most {reward.limit.max} per {reward.limit.per}; {used} already"
    currency, cost = next(iter(reward.cost.items()))
    spendable = _spendable(connection, participant.id, currency)
    if spendable < cost:
        return "insufficient_balance", f"costs {cost} {currency}; {spendable} spendable"
    return None


def _spendable(connection: Connection, participant_id: int, currency: str) -> int:
    row = connection.execute(
        select(t.positions.c.available, t.positions.c.pending).where(
            t.positions.c.participant_id == participant_id, t.positions.c.currency == currency
        )
    ).first()
    return int(row.available - row.pending) if row else 0


def catalog(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    participant: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Every reward with its remaining stock; with ``participant``, whether they can redeem it and why not."""
    today = local_date(now or dt.datetime.now(dt.UTC), compiled.timezone)
    redeemed = _redeemed(connection, program.id)
    row = _participant_row(connection, program.id, participant) if participant else None
    if participant and row is None:
        raise NotFound(f"no participant {participant!r}")
    items = []
    for reward in compiled.doc.rewards:
        used = redeemed.get(reward.key, 0)
        item: dict[str, Any] = {
            **reward.model_dump(mode="json", exclude_none=True),
            "remaining": None if reward.stock is None else max(0, reward.stock - used),
            "active": not ((reward.starts and today < reward.starts) or (reward.ends and today > reward.ends)),
        }
        if participant:
            reason = _why_not(connection, compiled, reward, row, used, today)
            item["can_redeem"] = reason is None
            if reason is not None:
                item["reason"] = {"code": reason[0], "message": reason[1]}
        items.append(item)
    return {"program": program.key, "rewards": items}


def _hash(participant: str, reward: str) -> str:
    return hashlib.sha256(orjson.dumps([participant, reward])).hexdigest()


def _shape(row: Any, participant: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "participant": participant,
        "reward": row.reward,
        "cost": {row.currency: row.cost},
        "status": row.status,
        "idempotency_key": row.idempotency_key,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def redeem(
    connection: Connection,
    program: ProgramRecord,
    compiled: CompiledProgram,
    *,
    participant: str,
    reward_key: str,
    idempotency_key: str,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Redeem once per key; returns the redemption and whether it was made now (False: a retry)."""
    now = now or dt.datetime.now(dt.UTC)
    reward = _reward(compiled, reward_key)
    r = t.redemptions.c
    request_hash = _hash(participant, reward_key)
    row = _participant_row(connection, program.id, participant)
    if row is not None:
        participants.lock(connection, [row.id])
    if connection.execute(select(r.id).where(r.program_id == program.id, r.idempotency_key == idempotency_key)).first():
        return _retried(connection, program.id, idempotency_key, request_hash, participant), False
    today = local_date(now, compiled.timezone)
    redeemed = _redeemed(connection, program.id).get(reward.key, 0)
    reason = _why_not(connection, compiled, reward, row, redeemed, today)
    if reason is not None:
        raise Conflict(reason[1], code=reason[0])
    currency, cost = next(iter(reward.cost.items()))
    period = period_key(reward.limit.per, today) if reward.limit else "all"
    try:
        with connection.begin_nested():  # first: a racing request with the same key (another participant) waits here
            redemption_id = connection.execute(
                t.redemptions.insert()
                .values(
                    program_id=program.id,
                    participant_id=row.id,
                    reward=reward.key,
                    currency=currency,
                    cost=cost,
                    status="pending",
                    idempotency_key=idempotency_key,
                    request_hash=request_hash,
                    period=period,
                    created_at=now,
                    updated_at=now,
                )
                .returning(r.id)
            ).scalar_one()
    except IntegrityError:
        return _retried(connection, program.id, idempotency_key, request_hash, participant), False
    _move(connection, program.id, row.id, currency, -cost, "redemption", redemption_id, f"redeemed {reward.name}", now)
    draws = draw(connection, row.id, currency, cost, spendable_only=True)
    connection.execute(
        t.redemption_draws.insert(),
        [{"redemption_id": redemption_id, "lot_id": d.lot_id, "amount": d.amount} for d in draws],
    )
    if reward.stock is not None:  # last: the reward's counter row is every redemption's hot row, held until commit
        insert_ignore(connection, t.reward_counts, [{"program_id": program.id, "reward": reward.key, "redeemed": 0}])
        c = t.reward_counts.c
        taken = connection.execute(
            update(t.reward_counts)
            .where(c.program_id == program.id, c.reward == reward.key, c.redeemed < reward.stock)
            .values(redeemed=c.redeemed + 1)
        ).rowcount
        if taken != 1:
            raise Conflict(f"{reward.name} is out of stock", code="out_of_stock")
    made = _shape(connection.execute(select(t.redemptions).where(r.id == redemption_id)).one(), participant)
    outbox.redemption(connection, program.id, "created", made)
    return made, True


def _retried(connection: Connection, program_id: int, key: str, request_hash: str, participant: str) -> dict[str, Any]:
    """The redemption a key already made: the same one for the same request, a 409 for another."""
    r = t.redemptions.c
    earlier = connection.execute(
        select(t.redemptions).where(r.program_id == program_id, r.idempotency_key == key)
    ).one()
    if earlier.request_hash != request_hash:
        raise Conflict(
            "this idempotency key was used for a different redemption",
            code="idempotency_conflict",
            errors=[FieldError("idempotency_key", "already used with another participant or reward")],
        )
    return _shape(earlier, participant)


def _move(
    connection: Connection,
    program_id: int,
    participant_id: int,
    currency: str,
    amount: int,
    kind: str,
    redemption_id: int,
    explain: str,
    now: dt.datetime,
    *,
    paid_arrears: int = 0,
) -> None:
    """The ledger entry and the balance move of a redemption (it spends what is there, never into arrears)
    or of its refund (which pays ``paid_arrears`` off first)."""
    delta = PositionDelta(available=amount - paid_arrears, arrears=-paid_arrears)
    entry = Entry(participant_id, currency, amount, kind, f"{kind}:{redemption_id}", explain, now)
    try:
        with connection.begin_nested():
            posting.post(connection, program_id, None, [entry], {(participant_id, currency): delta}, now=now)
    except IntegrityError:
        raise Conflict(f"insufficient balance for {-amount} {currency}", code="insufficient_balance") from None


def _find(connection: Connection, program: ProgramRecord, redemption_id: int) -> Any:
    r = t.redemptions.c
    row = connection.execute(
        select(t.redemptions, t.participants.c.external_id)
        .join(t.participants, t.participants.c.id == r.participant_id)
        .where(r.program_id == program.id, r.id == redemption_id)
    ).first()
    if row is None:
        raise NotFound(f"no redemption {redemption_id}")
    return row


def fulfil(
    connection: Connection, program: ProgramRecord, redemption_id: int, *, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Mark a pending redemption delivered (fulfilling twice is a no-op). Audited."""
    row = _find(connection, program, redemption_id)
    if row.status == "cancelled":
        raise Conflict("a cancelled redemption cannot be fulfilled", code="cancelled")
    now = now or dt.datetime.now(dt.UTC)
    r = t.redemptions.c
    changed = connection.execute(
        update(t.redemptions)
        .where(r.id == redemption_id, r.status == "pending")
        .values(status="fulfilled", updated_at=now)
    ).rowcount
    shaped = _shape(_find(connection, program, redemption_id), row.external_id)
    if changed:
        outbox.redemption(connection, program.id, "fulfilled", shaped)
        audit.record(connection, program.id, actor, "redemption.fulfil", _audited(shaped), now)
    return shaped


def _audited(redemption: dict[str, Any]) -> dict[str, Any]:
    return {k: redemption[k] for k in ("id", "participant", "reward") if k in redemption}


def cancel(
    connection: Connection, program: ProgramRecord, redemption_id: int, *, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Cancel a pending redemption: the cost goes back into the lots it came from (paying arrears off first,
    like any credit), and the stock back on the shelf."""
    row = _find(connection, program, redemption_id)
    if row.status == "fulfilled":
        raise Conflict("a fulfilled redemption cannot be cancelled", code="fulfilled")
    if row.status == "cancelled":
        return _shape(row, row.external_id)
    participants.lock(connection, [row.participant_id])
    now = now or dt.datetime.now(dt.UTC)
    r = t.redemptions.c
    changed = connection.execute(
        update(t.redemptions)
        .where(r.id == redemption_id, r.status == "pending")
        .values(status="cancelled", updated_at=now)
    ).rowcount
    if changed:
        arrears = connection.execute(
            select(t.positions.c.arrears).where(
                t.positions.c.participant_id == row.participant_id, t.positions.c.currency == row.currency
            )
        ).scalar_one()
        paid = min(int(arrears), int(row.cost))
        d = t.redemption_draws.c
        drawn = connection.execute(
            select(d.lot_id, d.amount).where(d.redemption_id == redemption_id).order_by(d.lot_id)
        )
        restore(connection, [(int(lot), int(n)) for lot, n in drawn], row.cost - paid)
        _move(
            connection,
            program.id,
            row.participant_id,
            row.currency,
            row.cost,
            "refund",
            redemption_id,
            f"refund of redemption {redemption_id} ({row.reward})",
            now,
            paid_arrears=paid,
        )
        c = t.reward_counts.c
        connection.execute(
            update(t.reward_counts)
            .where(c.program_id == program.id, c.reward == row.reward)
            .values(redeemed=c.redeemed - 1)
        )
    shaped = _shape(_find(connection, program, redemption_id), row.external_id)
    if changed:
        outbox.redemption(connection, program.id, "cancelled", shaped)
        audit.record(connection, program.id, actor, "redemption.cancel", _audited(shaped), now)
    return shaped


def list_redemptions(
    connection: Connection,
    program: ProgramRecord,
    *,
    participant: str | None = None,
    status: str | None = None,
    limit: int = 100,
    after: int = 0,
) -> dict[str, Any]:
    if status is not None and status not in ("pending", "fulfilled", "cancelled"):
        raise Invalid("bad status", errors=[FieldError("status", "pending, fulfilled or cancelled")])
    if not 1 <= limit <= 1000:
        raise Invalid("bad limit", errors=[FieldError("limit", "1..1000")])
    r = t.redemptions.c
    query = (
        select(t.redemptions, t.participants.c.external_id)
        .join(t.participants, t.participants.c.id == r.participant_id)
        .where(r.program_id == program.id, r.id > after)
        .order_by(r.id)
        .limit(limit)
    )
    if participant is not None:
        query = query.where(t.participants.c.external_id == participant)
    if status is not None:
        query = query.where(r.status == status)
    rows = connection.execute(query).all()
    return {
        "redemptions": [_shape(row, row.external_id) for row in rows],
        "next_after": rows[-1].id if len(rows) == limit else None,
    }
