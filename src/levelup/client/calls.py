"""Each API operation once, as a :class:`Call` (the request and how to read its answer), and the retry
policy; the sync and async clients only carry calls out."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from levelup.client import models as m
from levelup.client.errors import raise_for_problem

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_BATCH = 1000  # events a request
RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request; ``retry`` when sending it again cannot do anything twice (ids, keys, reads)."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    retry: bool = False

    def result(self, response: httpx.Response) -> T:
        raise_for_problem(response)
        return self.read(response)


@dataclass(frozen=True)
class Retry:
    """Up to ``attempts`` sends of a retriable call, ``backoff`` × 2ⁿ seconds apart (jittered), or what the
    server's ``Retry-After`` asks."""

    attempts: int = 4
    backoff: float = 0.2
    max_wait: float = 30.0

    def wait(self, call: Call[Any], attempt: int, outcome: httpx.Response | httpx.TransportError) -> float | None:
        """Seconds to wait before sending ``call`` again after ``attempt`` (0-based), or None: do not."""
        if not call.retry or attempt + 1 >= self.attempts:
            return None
        if isinstance(outcome, httpx.Response):
            if outcome.status_code not in RETRIED_STATUS:
                return None
            after = outcome.headers.get("retry-after", "")
            if after.isdigit():
                return min(float(after), self.max_wait)
        return min(self.max_wait, self.backoff * 2.0**attempt) * random.uniform(0.5, 1.0)


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate(response.json())


def _nothing(_response: httpx.Response) -> None:
    return None


def _p(program: str) -> str:
    return f"/api/v1/programs/{quote(program, safe='')}"


def _q(value: str | int) -> str:
    return quote(str(value), safe="")


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def apply_program(program: str, document: dict[str, Any] | str) -> Call[m.ProgramApplied]:
    """A document as data (sent as JSON) or as YAML text (sent as YAML, comments and all)."""
    if isinstance(document, str):
        return Call(
            "PUT",
            _p(program),
            _model(m.ProgramApplied),
            content=document.encode(),
            headers={"Content-Type": "application/yaml"},
            retry=True,
        )
    return Call("PUT", _p(program), _model(m.ProgramApplied), json=document, retry=True)


def get_program(program: str, version: int | None = None) -> Call[m.ProgramVersion]:
    return Call("GET", _p(program), _model(m.ProgramVersion), params=_clean({"version": version}), retry=True)


def _with_id(event: dict[str, Any]) -> dict[str, Any]:
    """The event with an id (a new one when it has none): every retry sends the same id, so none counts twice."""
    return event if event.get("id") else {**event, "id": f"evt-{uuid.uuid4().hex}"}


def send_event(program: str, event: dict[str, Any]) -> Call[m.EventResult]:
    return Call("POST", f"{_p(program)}/events", _model(m.EventResult), json=_with_id(event), retry=True)


def send_events(program: str, events: Iterable[dict[str, Any]]) -> list[Call[m.BatchResults]]:
    """Batches of up to :data:`MAX_BATCH`, each retried as a whole (accepted ones come back as duplicates)."""
    ready = [_with_id(e) for e in events]
    return [
        Call(
            "POST",
            f"{_p(program)}/events",
            _model(m.BatchResults),
            json={"events": ready[i : i + MAX_BATCH]},
            retry=True,
        )
        for i in range(0, len(ready), MAX_BATCH)
    ]


def put_participant(
    program: str,
    participant: str,
    *,
    name: str | None = None,
    teams: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Call[m.Profile]:
    body = _clean({"name": name, "teams": teams, "attributes": attributes})
    return Call("PUT", f"{_p(program)}/participants/{_q(participant)}", _model(m.Profile), json=body, retry=True)


def get_participant(program: str, participant: str) -> Call[m.Profile]:
    return Call("GET", f"{_p(program)}/participants/{_q(participant)}", _model(m.Profile), retry=True)


def leaderboard(
    program: str,
    key: str,
    *,
    period: str | None = None,
    scope: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    around: str | None = None,
) -> Call[m.Leaderboard]:
    params = _clean({"period": period, "scope": scope, "limit": limit, "offset": offset, "around": around})
    return Call("GET", f"{_p(program)}/leaderboards/{_q(key)}", _model(m.Leaderboard), params=params, retry=True)


def rewards(program: str, participant: str | None = None) -> Call[m.Catalog]:
    params = _clean({"participant": participant})
    return Call("GET", f"{_p(program)}/rewards", _model(m.Catalog), params=params, retry=True)


def redeem(program: str, participant: str, reward: str, idempotency_key: str | None = None) -> Call[m.Redemption]:
    """With a key (one is made when none is given) a retry returns the same redemption, never a second."""
    body = {"participant": participant, "reward": reward, "idempotency_key": idempotency_key or uuid.uuid4().hex}
    return Call("POST", f"{_p(program)}/redemptions", _model(m.Redemption), json=body, retry=True)


def fulfil(program: str, redemption: int) -> Call[m.Redemption]:
    return Call("POST", f"{_p(program)}/redemptions/{redemption}/fulfil", _model(m.Redemption), retry=True)


def cancel(program: str, redemption: int) -> Call[m.Redemption]:
    return Call("POST", f"{_p(program)}/redemptions/{redemption}/cancel", _model(m.Redemption), retry=True)


def create_webhook(
    program: str, url: str, events: list[str], *, secret: str | None = None, format: str = "json"
) -> Call[m.WebhookCreated]:
    """Not retried: a lost answer would leave a second subscription (list them to check)."""
    body = _clean({"url": url, "events": events, "secret": secret, "format": format})
    return Call("POST", f"{_p(program)}/webhooks", _model(m.WebhookCreated), json=body)


def webhooks(program: str) -> Call[m.Webhooks]:
    return Call("GET", f"{_p(program)}/webhooks", _model(m.Webhooks), retry=True)


def delete_webhook(program: str, webhook: int) -> Call[None]:
    return Call("DELETE", f"{_p(program)}/webhooks/{webhook}", _nothing)


def deliveries(
    program: str, webhook: int, *, limit: int | None = None, before: int | None = None
) -> Call[m.Deliveries]:
    params = _clean({"limit": limit, "before": before})
    return Call("GET", f"{_p(program)}/webhooks/{webhook}/deliveries", _model(m.Deliveries), params=params, retry=True)
