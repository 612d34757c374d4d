"""Outbound webhook subscriptions (admin) and their delivery log."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from levelup.api.deps import AdminAccess, Cursor, NumberPath
from levelup.api.responses import Out
from levelup.webhooks import service
from levelup.webhooks.service import Format, NotificationType

router = APIRouter(tags=["webhooks"])


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, description="http:// or https://")
    events: list[NotificationType] = Field(min_length=1, max_length=len(service.TYPES))
    secret: str | None = Field(
        default=None, min_length=8, max_length=200, description="signs every delivery; made for you when absent"
    )
    format: Format = Field(default="json", description="json: the notification; slack, teams: a chat message")


class Webhook(Out):
    id: int
    url: str
    events: list[str]
    format: Format
    created_at: str


class WebhookCreated(Webhook):
    secret: str = Field(description="shown in this answer only")


class Webhooks(Out):
    webhooks: list[Webhook]


class Attempt(Out):
    at: str
    status_code: int | None = Field(description="the receiver's answer; null when there was none")
    error: str | None = Field(description="why there was no answer (timeout, connection refused…)")
    duration_ms: int


class Delivery(Out):
    id: str = Field(description="the notification's id, the same on every attempt")
    type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: list[Attempt] = Field(description="oldest first")
    next_attempt_at: str | None = Field(description="when a pending notification is tried next")
    created_at: str
    done_at: str | None
    body: dict[str, Any] = Field(description="the notification as sent in the json format")


class Deliveries(Out):
    deliveries: list[Delivery] = Field(description="newest first")
    next: str | None = Field(description="the URL of the next page; null on the last")


@router.post("/programs/{program}/webhooks", status_code=201, response_model=WebhookCreated)
def create_webhook(access: AdminAccess, body: WebhookIn) -> dict[str, Any]:
    """Subscribe ``url`` to notification types; 409 ``too_many_webhooks`` past the program's bound."""
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        created = service.subscribe(
            connection,
            record,
            url=body.url,
            events=list(body.events),
            secret=body.secret,
            format=body.format,
            actor=access.principal.key_id,
        )
    service.forget(access.runtime.db.engine, record.id)
    return created


@router.get("/programs/{program}/webhooks", response_model=Webhooks)
def list_webhooks(access: AdminAccess) -> dict[str, Any]:
    """The live subscriptions, oldest first (their secrets are never shown again)."""
    with access.runtime.db.read() as connection:
        return {"webhooks": service.subscriptions(connection, access.record(connection))}


@router.delete(
    "/programs/{program}/webhooks/{webhook_id}",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "deleted; what was waiting to be sent is cancelled"}},
)
def delete_webhook(access: AdminAccess, webhook_id: NumberPath) -> Response:
    with access.runtime.db.write() as connection:
        record = access.record(connection)
        service.unsubscribe(connection, record, webhook_id, actor=access.principal.key_id)
    service.forget(access.runtime.db.engine, record.id)
    return Response(status_code=204)


@router.get("/programs/{program}/webhooks/{webhook_id}/deliveries", response_model=Deliveries)
def list_deliveries(
    access: AdminAccess,
    webhook_id: NumberPath,
    before: Cursor = None,
    limit: int = Query(default=50, ge=1, le=200),
) -> dict[str, Any]:
    """Notifications newest first with every attempt; ``next`` is the URL of the next page, or null."""
    with access.runtime.db.read() as connection:
        page = service.deliveries(connection, access.record(connection), webhook_id, limit=limit, before=before)
    cursor = page.pop("next")
    base = f"/api/v1/programs/{access.key}/webhooks/{webhook_id}/deliveries"
    return {**page, "next": f"{base}?before={cursor}&limit={limit}" if cursor else None}
