"""Subscriptions of a program to notification types, and their delivery log.

The outbox asks :func:`subscribed` on every publish, inside the effect's transaction, so the answer
is cached per program: a program nobody subscribed to costs ingestion a dictionary lookup. A change
made here is seen at once by this process (:func:`forget` after the commit) and within
:data:`CACHE_SECONDS` by other processes (other workers, ``levelup deliver``).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, func, select, update

from levelup.audit.service import record
from levelup.errors import Conflict, FieldError, Invalid, NotFound
from levelup.programs.service import ProgramRecord
from levelup.storage import tables as t

NotificationType = Literal[
    "award.granted",
    "badge.awarded",
    "badge.revoked",
    "level.changed",
    "tier.changed",
    "streak.extended",
    "challenge.completed",
    "prize.paid",
    "redemption.created",
    "redemption.fulfilled",
    "redemption.cancelled",
    "kudos.given",
    "points.expiring",
]
TYPES: tuple[str, ...] = get_args(NotificationType)
Format = Literal["json", "slack", "teams"]
MAX_SUBSCRIPTIONS = 20  # live subscriptions a program: each notification is one row per subscription
CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Subscribed:
    """A program's key and, per notification type, the live subscriptions that want it."""

    program: str
    by_type: dict[str, tuple[int, ...]]


class _Cache:
    """What :func:`subscribed` read, per database and program, for :data:`CACHE_SECONDS`.

    Module-level on purpose: the feed's publish is handed a connection by many services, never the
    runtime, and the entry is keyed by the database URL so two databases in one process never mix.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int], tuple[float, Subscribed]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> Subscribed | None:
        found = self._entries.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, key: tuple[str, int], value: Subscribed) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + CACHE_SECONDS, value)

    def forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._entries.pop(key, None)


_CACHE = _Cache()


def _cache_key(engine: Engine, program_id: int) -> tuple[str, int]:
    return str(engine.url), program_id


def subscribed(connection: Connection, program_id: int) -> Subscribed:
    """Who wants which notification type in the program (cached; see the module's docstring)."""
    key = _cache_key(connection.engine, program_id)
    found = _CACHE.get(key)
    if found is not None:
        return found
    s = t.webhook_subscriptions.c
    rows = connection.execute(
        select(t.programs.c.key, s.id, s.events)
        .select_from(t.programs)
        .outerjoin(t.webhook_subscriptions, (s.program_id == t.programs.c.id) & s.deleted_at.is_(None))
        .where(t.programs.c.id == program_id)
        .order_by(s.id)
    ).all()
    by_type: dict[str, list[int]] = {}
    for row in rows:
        for kind in row.events or ():
            by_type.setdefault(kind, []).append(row.id)
    found = Subscribed(rows[0].key if rows else "", {k: tuple(v) for k, v in by_type.items()})
    _CACHE.put(key, found)
    return found


def forget(engine: Engine, program_id: int) -> None:
    """Drop the program's cached subscriptions: call it once the change is committed."""
    _CACHE.forget(_cache_key(engine, program_id))


def check_url(url: str) -> str:
    """An absolute http(s) URL, or a 422 on ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("invalid webhook URL", errors=[FieldError("url", "must be an absolute http:// or https:// URL")])
    return url


def _shape(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": row.url,
        "events": row.events,
        "format": row.format,
        "created_at": row.created_at.isoformat(),
    }


def subscribe(
    connection: Connection,
    program: ProgramRecord,
    *,
    url: str,
    events: list[str],
    secret: str | None,
    format: str,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Add a subscription; the answer is the only one that shows its secret (made here when none is given)."""
    now = now or dt.datetime.now(dt.UTC)
    s = t.webhook_subscriptions.c
    live = connection.execute(
        select(func.count()).where(s.program_id == program.id, s.deleted_at.is_(None))
    ).scalar_one()
    if live >= MAX_SUBSCRIPTIONS:
        raise Conflict(
            f"a program has at most {MAX_SUBSCRIPTIONS} webhook subscriptions; delete one first",
            code="too_many_webhooks",
        )
    secret = secret or "whsec_" + secrets.token_urlsafe(32)
    values = {
        "program_id": program.id,
        "url": check_url(url),
        "events": sorted(set(events)),
        "secret": secret,
        "format": format,
        "created_at": now,
    }
    row = connection.execute(t.webhook_subscriptions.insert().values(**values).returning(t.webhook_subscriptions)).one()
    detail = {"id": row.id, "url": row.url, "events": row.events, "format": row.format}
    record(connection, program.id, actor, "webhook.create", detail, now)
    return {**_shape(row), "secret": secret}


def subscriptions(connection: Connection, program: ProgramRecord) -> list[dict[str, Any]]:
    """The program's live subscriptions, oldest first, without their secrets."""
    s = t.webhook_subscriptions.c
    rows = connection.execute(
        select(t.webhook_subscriptions).where(s.program_id == program.id, s.deleted_at.is_(None)).order_by(s.id)
    )
    return [_shape(row) for row in rows]


def _live(connection: Connection, program: ProgramRecord, subscription_id: int) -> Any:
    s = t.webhook_subscriptions.c
    row = connection.execute(
        select(t.webhook_subscriptions).where(
            s.program_id == program.id, s.id == subscription_id, s.deleted_at.is_(None)
        )
    ).first()
    if row is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return row


def unsubscribe(
    connection: Connection, program: ProgramRecord, subscription_id: int, *, actor: str, now: dt.datetime | None = None
) -> None:
    """Delete a subscription: nothing more is written for it and what waits to be sent is cancelled;
    its delivery log stays for the audit."""
    now = now or dt.datetime.now(dt.UTC)
    row = _live(connection, program, subscription_id)
    connection.execute(
        update(t.webhook_subscriptions).where(t.webhook_subscriptions.c.id == row.id).values(deleted_at=now)
    )
    o = t.webhook_outbox.c
    connection.execute(
        update(t.webhook_outbox)
        .where(o.subscription_id == row.id, o.status == "pending")
        .values(status="cancelled", claim=None, done_at=now)
    )
    record(connection, program.id, actor, "webhook.delete", {"id": row.id, "url": row.url}, now)


def deliveries(
    connection: Connection, program: ProgramRecord, subscription_id: int, *, limit: int, before: int | None
) -> dict[str, Any]:
    """The subscription's notifications newest first, each with its attempts (oldest first); ``next`` is the
    id to pass as ``before`` for the following page (``None`` on the last)."""
    row = _live(connection, program, subscription_id)
    o = t.webhook_outbox.c
    query = select(t.webhook_outbox).where(o.subscription_id == row.id)
    if before is not None:
        query = query.where(o.id < before)
    found = connection.execute(query.order_by(o.id.desc()).limit(limit + 1)).all()
    page = found[:limit]
    a = t.webhook_attempts.c
    attempts: dict[int, list[dict[str, Any]]] = {}
    if page:
        for attempt in connection.execute(
            select(t.webhook_attempts).where(a.outbox_id.in_([r.id for r in page])).order_by(a.id)
        ):
            attempts.setdefault(attempt.outbox_id, []).append(
                {
                    "at": attempt.at.isoformat(),
                    "status_code": attempt.status_code,
                    "error": attempt.error,
                    "duration_ms": attempt.duration_ms,
                }
            )
    return {
        "deliveries": [
            {
                "id": r.notification,
                "type": r.type,
                "status": r.status,
                "attempts": attempts.get(r.id, []),
                "next_attempt_at": r.next_at.isoformat() if r.status == "pending" else None,
                "created_at": r.created_at.isoformat(),
                "done_at": r.done_at.isoformat() if r.done_at else None,
                "body": r.body,
            }
            for r in page
        ],
        "next": page[-1].id if len(found) > limit else None,
    }
