"""The one writer and reader of the live feed (``feed`` table).

Every part that tells the feed something (ingestion, closing, tiers, kudos, status changes)
publishes through :func:`publish`, which is also where webhook notifications of those effects enter
the outbox; the SSE endpoint reads through :func:`after` and
:func:`latest_id`. Ids grow with time within a program, so a client resumes by id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

from levelup.feed import fanout
from levelup.storage import tables as t
from levelup.storage.sql import bulk_insert
from levelup.webhooks.outbox import notify_feed


class FeedItem(NamedTuple):
    """One thing to tell: ``participant`` is the external id (``None`` for program-wide news)."""

    participant: str | None
    kind: str
    payload: dict[str, Any]
    at: dt.datetime


class Published(NamedTuple):
    """A feed item as stored, with the id a client resumes after."""

    id: int
    participant: str | None
    kind: str
    payload: dict[str, Any]
    at: dt.datetime

    def data(self) -> dict[str, Any]:
        """The message body sent on the stream: participant, time, then the payload's fields."""
        return {"participant": self.participant, "at": self.at.isoformat(), **self.payload}


def publish(connection: Connection, program_id: int, items: Iterable[FeedItem]) -> None:
    """Append ``items`` to the program's feed, in order, with one statement, and write the webhook
    notifications they make in the same transaction (:func:`levelup.webhooks.outbox.notify_feed`)."""
    told = list(items)
    bulk_insert(
        connection,
        t.feed,
        [
            {"program_id": program_id, "participant": p, "kind": kind, "payload": payload, "at": at}
            for p, kind, payload, at in told
        ],
    )
    notify_feed(connection, program_id, told)
    waking = fanout.of(connection)
    if waking is not None and told:
        waking.published(connection, program_id)  # the streams of every process read them once committed


def latest_id(connection: Connection, program_id: int) -> int:
    """The id of the program's newest feed item (0 when there is none): a stream starting now resumes after it."""
    newest = connection.execute(select(func.max(t.feed.c.id)).where(t.feed.c.program_id == program_id)).scalar()
    return int(newest or 0)


def after(connection: Connection, program_id: int, last_id: int, limit: int) -> list[Published]:
    """Up to ``limit`` of the program's feed items with an id above ``last_id``, oldest first."""
    rows = connection.execute(
        select(t.feed.c.id, t.feed.c.participant, t.feed.c.kind, t.feed.c.payload, t.feed.c.at)
        .where(t.feed.c.program_id == program_id, t.feed.c.id > last_id)
        .order_by(t.feed.c.id)
        .limit(limit)
    )
    return [Published(*row) for row in rows]
