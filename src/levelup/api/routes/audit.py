"""The audit log of a program: who changed what, and when (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from levelup.api.deps import AdminAccess, Cursor
from levelup.api.responses import Out
from levelup.audit import service as audit

router = APIRouter(tags=["audit"])


class AuditEntry(Out):
    id: int
    actor: str = Field(description="the API key id that acted, or cli")
    action: str = Field(description="area.verb, e.g. program.apply, ledger.adjust, webhook.create")
    detail: dict[str, Any]
    at: str


class AuditPage(Out):
    entries: list[AuditEntry]
    next_before: int | None = Field(description="pass as ?before= for the next (older) page; null on the last")


@router.get("/programs/{program}/audit", response_model=AuditPage)
def get_audit(
    access: AdminAccess, before: Cursor = None, limit: int = Query(default=50, ge=1, le=500)
) -> dict[str, Any]:
    """The program's audit log, newest first: documents applied, adjustments, overrides, status changes,
    launches, webhook subscriptions."""
    with access.runtime.db.read() as connection:
        entries = audit.page(connection, access.record(connection).id, before=before, limit=limit)
    return {"entries": entries, "next_before": entries[-1]["id"] if len(entries) == limit else None}
