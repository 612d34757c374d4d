"""The event as a CRM sends it (docs/api.md), with every input bounded."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from levelup.engine.model import WHOLE, Event
from levelup.errors import FieldError, path_of

MAX_DATA_BYTES = 64 * 1024
MAX_DATA_DEPTH = 16
MAX_BATCH = 1000


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, giving up just past ``limit``."""
    if limit < 0:
        return 1
    if isinstance(value, dict):
        return 1 + max((_depth(v, limit - 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v, limit - 1) for v in value), default=0)
    return 0


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200)
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=100)
    participant: str = Field(min_length=1, max_length=200)
    occurred_at: dt.datetime | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    reverses: str | None = Field(default=None, min_length=1, max_length=200)
    portion: float | None = Field(
        default=None, gt=0, le=1, description="with reverses: the share of that event refunded (default all of it)"
    )

    @field_validator("portion")
    @classmethod
    def _portion_of_a_reversal(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("reverses") is None:
            raise ValueError("portion is the refunded share of the event named in reverses")
        return value

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("an RFC 3339 date-time string, e.g. 2026-11-20T15:04:05Z")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _with_offset(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a UTC offset, e.g. 2026-11-20T15:04:05Z or +01:00")
        return value

    @field_validator("data")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value, MAX_DATA_DEPTH) > MAX_DATA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DATA_DEPTH} levels")
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:  # e.g. an integer beyond 64 bits: no database or CEL number holds it
            raise ValueError(f"not storable as JSON: {exc}") from None
        if size > MAX_DATA_BYTES:
            raise ValueError(f"larger than {MAX_DATA_BYTES} bytes as JSON")
        return value

    def content_hash(self) -> str:
        """What makes a retry a duplicate and a different event under the same id a conflict.

        A missing ``occurred_at`` stays missing here, so a retry without one is a duplicate.
        """
        when = self.occurred_at.astimezone(dt.UTC).isoformat() if self.occurred_at else None
        body: list[Any] = [self.type, self.participant, when, self.data, self.reverses]
        if self.portion is not None:
            body.append(self.portion)
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def to_event(self, received_at: dt.datetime) -> Event:
        occurred = self.occurred_at.astimezone(dt.UTC) if self.occurred_at else received_at
        share = WHOLE if self.portion is None else max(1, round(self.portion * WHOLE))
        return Event(self.id, self.type, self.participant, occurred, self.data, self.reverses, share=share)


def parse_event(raw: Any, prefix: str = "") -> EventIn | list[FieldError]:
    """An event, or the errors with their paths (``occurred_at``, ``data.items[3]``…)."""
    if not isinstance(raw, dict):
        return [FieldError(prefix or "(event)", "an event is a JSON object")]
    try:
        return EventIn.model_validate(raw)
    except ValidationError as exc:
        return [
            FieldError(
                path_of([*([prefix] if prefix else []), *e["loc"]]) or "(event)",
                "unknown field" if e["type"] == "extra_forbidden" else e["msg"],
            )
            for e in exc.errors()
        ]
