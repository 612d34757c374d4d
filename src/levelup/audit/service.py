"""The one writer and reader of the audit log (``audit_log`` table): changes made by a person or a key,
not by scoring — program versions, manual adjustments, tier overrides, status changes, launches,
webhook subscriptions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, select

from levelup.storage import tables as t


def record(
    connection: Connection, program_id: int | None, actor: str, action: str, detail: dict[str, Any], at: dt.datetime
) -> None:
    """Write one audit row: ``actor`` (an API key id or ``cli``) did ``action`` (``area.verb``) with ``detail``."""
    connection.execute(
        t.audit_log.insert().values(program_id=program_id, actor=actor, action=action, detail=detail, at=at)
    )


def page(connection: Connection, program_id: int, *, before: int | None, limit: int) -> list[dict[str, Any]]:
    """A program's audit rows, newest first, from just before ``before`` (a row id; None: the newest)."""
    a = t.audit_log.c
    query = select(a.id, a.actor, a.action, a.detail, a.at).where(a.program_id == program_id)
    if before is not None:
        query = query.where(a.id < before)
    rows = connection.execute(query.order_by(a.id.desc()).limit(limit))
    return [
        {"id": r.id, "actor": r.actor, "action": r.action, "detail": r.detail, "at": r.at.isoformat()} for r in rows
    ]
