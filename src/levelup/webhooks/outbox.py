"""The transactional outbox: notifications are rows written in the transaction of their effect.

Nothing is sent from here; an effect that rolls back takes its notifications with it, and one that
commits has them waiting for the delivery worker (:mod:`levelup.webhooks.delivery`). Rows are
written only for the types some subscription of the program wants (:func:`service.subscribed`,
cached), so a program without subscriptions pays a dictionary lookup a publish.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection, func, select

from levelup.storage import tables as t
from levelup.storage.sql import insert_ignore
from levelup.webhooks.service import Subscribed, subscribed

if TYPE_CHECKING:
    from levelup.feed.service import FeedItem

EXPIRING_DAYS = 7  # points.expiring warns of spendable points that expire within this many days


class Notice(NamedTuple):
    """A notification to write: ``dedup`` makes one a job may repeat (it is written once per subscription)."""

    type: str
    participant: str | None
    data: dict[str, Any]
    at: dt.datetime
    dedup: str | None = None


def timestamp(at: dt.datetime) -> str:
    """``2026-11-20T15:04:05Z``: UTC, to the second, as notifications carry times."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def notify(connection: Connection, program_id: int, notices: Iterable[Notice]) -> None:
    """Write ``notices`` for every subscription of the program that wants their type (one statement)."""
    wanted = subscribed(connection, program_id)
    if wanted.by_type:
        _write(connection, program_id, wanted, notices)


def notify_feed(connection: Connection, program_id: int, items: Sequence[FeedItem]) -> None:
    """The notifications of items the feed publishes (see :func:`_of_feed` for the mapping)."""
    wanted = subscribed(connection, program_id)
    if wanted.by_type:
        _write(connection, program_id, wanted, (n for item in items for n in _of_feed(connection, program_id, item)))


def _write(connection: Connection, program_id: int, wanted: Subscribed, notices: Iterable[Notice]) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = []
    for notice in notices:
        subscriptions = wanted.by_type.get(notice.type)
        if not subscriptions:
            continue
        notification = "ntf_" + uuid.uuid4().hex
        body = {
            "id": notification,
            "type": notice.type,
            "program": wanted.program,
            "participant": notice.participant,
            "at": timestamp(notice.at),
            "data": notice.data,
        }
        rows += [
            {
                "program_id": program_id,
                "subscription_id": subscription,
                "notification": notification,
                "type": notice.type,
                "body": body,
                "dedup": notice.dedup,
                "status": "pending",
                "attempts": 0,
                "next_at": now,
                "claim": None,
                "created_at": now,
                "done_at": None,
            }
            for subscription in subscriptions
        ]
    insert_ignore(connection, t.webhook_outbox, rows)  # a repeated dedup key is skipped; others never conflict


_SIMPLE = {
    "badge": "badge.awarded",
    "badge.revoked": "badge.revoked",
    "level": "level.changed",
    "tier": "tier.changed",
    "streak": "streak.extended",
    "challenge": "challenge.completed",
}


def _of_feed(connection: Connection, program_id: int, item: FeedItem) -> Iterator[Notice]:
    """Feed kinds to notification types. ``award`` tells the positive entries (a reversal's are not
    awards); ``kudos`` is told to the receiver, with the giver in ``from``; ``period.closed`` becomes
    ``prize.paid`` and ``challenge.completed`` for each participant paid by the closing (read from the
    ledger entries it just posted); ``quest``, ``challenge.undone`` and ``status`` have no type."""
    if item.kind in _SIMPLE:
        yield Notice(_SIMPLE[item.kind], item.participant, item.payload, item.at)
    elif item.kind == "award":
        awards = [
            {"currency": e["currency"], "amount": e["amount"], "rule": e["rule"]}
            for e in item.payload["entries"]
            if e["amount"] > 0
        ]
        if awards:
            yield Notice("award.granted", item.participant, {"event": item.payload["event"], "awards": awards}, item.at)
    elif item.kind == "kudos":
        yield Notice("kudos.given", item.participant, item.payload, item.at)
    elif item.kind == "period.closed":
        yield from _closing(connection, program_id, item)


def _closing(connection: Connection, program_id: int, item: FeedItem) -> Iterator[Notice]:
    challenge, period = item.payload["challenge"], item.payload["period"]
    ranks = {r["id"]: r["rank"] for r in item.payload.get("ranking", [])}
    prefix = f"close:{challenge}:{period}:"
    e, p = t.ledger_entries.c, t.participants.c
    rows = connection.execute(
        select(p.external_id, e.kind, e.currency, e.amount)
        .join(t.participants, p.id == e.participant_id)
        .where(
            e.program_id == program_id,
            e.idempotency_key >= prefix,
            e.idempotency_key < prefix + "\uffff",
            e.kind.in_(["prize", "challenge"]),
        )
        .order_by(e.id)
    )
    paid: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        paid.setdefault((row.external_id, row.kind), []).append({"currency": row.currency, "amount": row.amount})
    for (participant, kind), awards in paid.items():
        data: dict[str, Any] = {"challenge": challenge, "period": period, "awards": awards}
        if kind == "prize":
            yield Notice("prize.paid", participant, {**data, "rank": ranks.get(participant)}, item.at)
        else:
            yield Notice("challenge.completed", participant, data, item.at)


def redemption(connection: Connection, program_id: int, kind: str, shaped: dict[str, Any]) -> None:
    """``redemption.<kind>`` for a redemption as the rewards service shapes it."""
    data = {k: shaped[k] for k in ("id", "reward", "cost", "status")}
    at = dt.datetime.fromisoformat(shaped["updated_at"])
    notify(connection, program_id, [Notice(f"redemption.{kind}", shaped["participant"], data, at)])


def warn_expiring(connection: Connection, program_id: int, now: dt.datetime) -> None:
    """``points.expiring`` once per participant, currency and soonest expiry within :data:`EXPIRING_DAYS`:
    the amount (spendable or pending) that expires by then and when the first of it does; the dedup key
    makes a repeated run write nothing new."""
    wanted = subscribed(connection, program_id)
    if "points.expiring" not in wanted.by_type:
        return
    lot, p = t.lots.c, t.participants.c
    horizon = now + dt.timedelta(days=EXPIRING_DAYS)
    rows = connection.execute(
        select(p.external_id, lot.currency, func.sum(lot.remaining).label("amount"), func.min(lot.expires_at))
        .join(t.participants, p.id == lot.participant_id)
        .where(
            lot.program_id == program_id,
            lot.remaining > 0,
            lot.expires_at > now,
            lot.expires_at <= horizon,
        )
        .group_by(p.external_id, lot.currency)
    ).all()
    notices = []
    for participant, currency, amount, first in rows:
        data = {
            "currency": currency,
            "amount": int(amount),
            "first_expires_at": timestamp(first),
            "within_days": EXPIRING_DAYS,
        }
        dedup = f"points.expiring:{participant}:{currency}:{timestamp(first)}"
        notices.append(Notice("points.expiring", participant, data, now, dedup))
    _write(connection, program_id, wanted, notices)
