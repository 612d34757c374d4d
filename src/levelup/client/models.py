"""What the API answers, as pydantic models. Unknown fields are kept (``extra="allow"``), so a newer
server that says more does not break an older client."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class ProgramApplied(Model):
    program: str
    version: int
    changed: bool


class ProgramVersion(Model):
    program: str
    version: int
    current_version: int
    document: dict[str, Any]


class Award(Model):
    currency: str
    amount: int
    rule: str | None = None


class FieldProblem(Model):
    path: str
    message: str


class EventResult(Model):
    id: str
    status: Literal["accepted", "duplicate", "rejected"]
    awards: list[Award] | None = None
    errors: list[FieldProblem] | None = None


class BatchResults(Model):
    results: list[EventResult]


class Profile(Model):
    id: str
    name: str | None
    teams: list[str]
    attributes: dict[str, Any] | None
    status: Literal["active", "suspended"]
    balances: dict[str, int]
    level: dict[str, Any] | None
    tier: dict[str, Any] | None
    badges: list[dict[str, Any]]
    streaks: list[dict[str, Any]]
    challenges: list[dict[str, Any]]


class BoardEntry(Model):
    rank: int
    id: str
    name: str | None
    value: float


class Leaderboard(Model):
    key: str
    period: str
    total: int
    entries: list[BoardEntry]


class CatalogReward(Model):
    key: str
    name: str
    cost: dict[str, int]
    remaining: int | None
    active: bool
    can_redeem: bool | None = None


class Catalog(Model):
    program: str
    rewards: list[CatalogReward]


class Redemption(Model):
    id: int
    participant: str
    reward: str
    cost: dict[str, int]
    status: Literal["pending", "fulfilled", "cancelled"]
    idempotency_key: str
    created_at: str
    updated_at: str


class Webhook(Model):
    id: int
    url: str
    events: list[str]
    format: Literal["json", "slack", "teams"]
    created_at: str


class WebhookCreated(Webhook):
    secret: str


class Webhooks(Model):
    webhooks: list[Webhook]


class Attempt(Model):
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(Model):
    id: str
    type: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: list[Attempt]
    next_attempt_at: str | None
    created_at: str
    done_at: str | None
    body: dict[str, Any]


class Deliveries(Model):
    deliveries: list[Delivery]
    next: str | None
