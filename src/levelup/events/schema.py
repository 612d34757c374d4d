"""The event as a CRM sends it (docs/api.md), with every input bounded."""

from __future__ import annotations

import datetime as dt
import hashlib
from contextvars import ContextVar
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from levelup.engine.model import WHOLE, Event
from levelup.errors import ExternalId, FieldError, data_errors, nesting, path_of

MAX_DATA_BYTES = 64 * 1024
MAX_DATA_DEPTH = 16
MAX_BATCH = 1000
RESERVED = "levelup."  # the prefix of the event types Levelup sends itself (levelup.clawback)
#: True while Levelup ingests an event of its own (levelup.events.clawback): the one way in for a reserved type
OWN_EVENTS: ContextVar[bool] = ContextVar("own_events", default=False)
# event time is held to these (UTC): every period, window and duration computed from it stays a valid date
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)  # exclusive


def _bounded(value: dict[str, Any]) -> dict[str, Any]:
    if nesting(value, MAX_DATA_DEPTH) > MAX_DATA_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DATA_DEPTH} levels")
    for error in data_errors(value):
        raise ValueError(f"{error.path}: {error.message}")
    if len(orjson.dumps(value)) > MAX_DATA_BYTES:
        raise ValueError(f"larger than {MAX_DATA_BYTES} bytes as JSON")
    return value


# free JSON data a client sends (event data, participant attributes): bounded in size and depth, storable
BoundedData = Annotated[dict[str, Any], AfterValidator(_bounded)]


def in_event_range(value: dt.datetime) -> dt.datetime:
    """``value`` if it has an offset and lies within [:data:`EARLIEST`, :data:`LATEST`)."""
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-20T15:04:05Z or +01:00")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first instant a datetime holds
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"must be from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)")
    return value


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: ExternalId
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=100)
    participant: ExternalId
    occurred_at: dt.datetime | None = Field(default=None, description="RFC 3339 with an offset, from 1900 to 2999")
    data: BoundedData = Field(default_factory=dict)
    reverses: ExternalId | None = None
    portion: float | None = Field(
        default=None,
        ge=1 / WHOLE,
        le=1,
        strict=True,
        description="with reverses: the share of that event refunded (default all of it), in millionths at least",
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
        return None if value is None else in_event_range(value)

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
    """An event, or the errors with their paths (``occurred_at``, ``data.items[3]``…). A ``levelup.*`` type is
    refused unless Levelup sends it (a clawback: only the audited way may write "clawback of …" in a ledger)."""
    if not isinstance(raw, dict):
        return [FieldError(prefix or "(event)", "an event is a JSON object")]
    try:
        event = EventIn.model_validate(raw)
    except ValidationError as exc:
        return [
            FieldError(
                path_of([*([prefix] if prefix else []), *e["loc"]]) or "(event)",
                "unknown field" if e["type"] == "extra_forbidden" else e["msg"],
            )
            for e in exc.errors()
        ]
    if event.type.startswith(RESERVED) and not OWN_EVENTS.get():
        return [FieldError(path_of([*([prefix] if prefix else []), "type"]), f"{RESERVED}* types are Levelup's own")]
    return event
