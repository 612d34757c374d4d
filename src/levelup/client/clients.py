"""The sync and async clients: the same operations (:mod:`levelup.client.calls`), carried out with
``httpx.Client`` or ``httpx.AsyncClient``; each method is a one-line delegation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from levelup.client import calls
from levelup.client import models as m
from levelup.client.calls import Call, Retry

T = TypeVar("T")


def _options(base_url: str, key: str, timeout: float) -> dict[str, Any]:
    return {"base_url": base_url, "headers": {"Authorization": f"Bearer {key}"}, "timeout": timeout}


def _send(call: Call[Any]) -> dict[str, Any]:
    return {"json": call.json, "content": call.content, "headers": call.headers, "params": call.params}


class Client:
    """Levelup over HTTP, blocking. ``transport`` swaps the network (e.g. ``httpx.ASGITransport``-like
    transports in tests); ``retry`` sets how idempotent calls are retried."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(transport=transport, **_options(base_url, key, timeout))
        self.retry = retry or Retry()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def run(self, call: Call[T]) -> T:
        """Send ``call``, again while the retry policy says so, and read its answer (or raise its error)."""
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = self.http.request(call.method, call.path, **_send(call))
            except httpx.TransportError as exc:
                outcome = exc
            wait = self.retry.wait(call, attempt, outcome)
            if wait is None:
                if isinstance(outcome, httpx.TransportError):
                    raise outcome
                return call.result(outcome)
            time.sleep(wait)
            attempt += 1

    def apply_program(self, program: str, document: dict[str, Any] | str) -> m.ProgramApplied:
        return self.run(calls.apply_program(program, document))

    def get_program(self, program: str, version: int | None = None) -> m.ProgramVersion:
        return self.run(calls.get_program(program, version))

    def send_event(self, program: str, event: dict[str, Any]) -> m.EventResult:
        return self.run(calls.send_event(program, event))

    def send_events(self, program: str, events: Iterable[dict[str, Any]]) -> list[m.EventResult]:
        return [r for call in calls.send_events(program, events) for r in self.run(call).results]

    def put_participant(
        self,
        program: str,
        participant: str,
        *,
        name: str | None = None,
        teams: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> m.Profile:
        """Create or update; omitted fields are kept."""
        return self.run(calls.put_participant(program, participant, name=name, teams=teams, attributes=attributes))

    def get_participant(self, program: str, participant: str) -> m.Profile:
        return self.run(calls.get_participant(program, participant))

    def leaderboard(
        self,
        program: str,
        key: str,
        *,
        period: str | None = None,
        scope: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        around: str | None = None,
    ) -> m.Leaderboard:
        call = calls.leaderboard(program, key, period=period, scope=scope, limit=limit, offset=offset, around=around)
        return self.run(call)

    def rewards(self, program: str, participant: str | None = None) -> m.Catalog:
        return self.run(calls.rewards(program, participant))

    def redeem(self, program: str, participant: str, reward: str, idempotency_key: str | None = None) -> m.Redemption:
        return self.run(calls.redeem(program, participant, reward, idempotency_key))

    def fulfil(self, program: str, redemption: int) -> m.Redemption:
        return self.run(calls.fulfil(program, redemption))

    def cancel(self, program: str, redemption: int) -> m.Redemption:
        return self.run(calls.cancel(program, redemption))

    def create_webhook(
        self, program: str, url: str, events: list[str], *, secret: str | None = None, format: str = "json"
    ) -> m.WebhookCreated:
        return self.run(calls.create_webhook(program, url, events, secret=secret, format=format))

    def webhooks(self, program: str) -> list[m.Webhook]:
        return self.run(calls.webhooks(program)).webhooks

    def delete_webhook(self, program: str, webhook: int) -> None:
        self.run(calls.delete_webhook(program, webhook))

    def deliveries(
        self, program: str, webhook: int, *, limit: int | None = None, before: int | None = None
    ) -> m.Deliveries:
        return self.run(calls.deliveries(program, webhook, limit=limit, before=before))


class AsyncClient:
    """Levelup over HTTP, for asyncio: the same methods as :class:`Client`, awaited."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.http = httpx.AsyncClient(transport=transport, **_options(base_url, key, timeout))
        self.retry = retry or Retry()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def run(self, call: Call[T]) -> T:
        """Send ``call``, again while the retry policy says so, and read its answer (or raise its error)."""
        attempt = 0
        while True:
            outcome: httpx.Response | httpx.TransportError
            try:
                outcome = await self.http.request(call.method, call.path, **_send(call))
            except httpx.TransportError as exc:
                outcome = exc
            wait = self.retry.wait(call, attempt, outcome)
            if wait is None:
                if isinstance(outcome, httpx.TransportError):
                    raise outcome
                return call.result(outcome)
            await asyncio.sleep(wait)
            attempt += 1

    async def apply_program(self, program: str, document: dict[str, Any] | str) -> m.ProgramApplied:
        return await self.run(calls.apply_program(program, document))

    async def get_program(self, program: str, version: int | None = None) -> m.ProgramVersion:
        return await self.run(calls.get_program(program, version))

    async def send_event(self, program: str, event: dict[str, Any]) -> m.EventResult:
        return await self.run(calls.send_event(program, event))

    async def send_events(self, program: str, events: Iterable[dict[str, Any]]) -> list[m.EventResult]:
        return [r for call in calls.send_events(program, events) for r in (await self.run(call)).results]

    async def put_participant(
        self,
        program: str,
        participant: str,
        *,
        name: str | None = None,
        teams: list[str] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> m.Profile:
        """Create or update; omitted fields are kept."""
        return await self.run(
            calls.put_participant(program, participant, name=name, teams=teams, attributes=attributes)
        )

    async def get_participant(self, program: str, participant: str) -> m.Profile:
        return await self.run(calls.get_participant(program, participant))

    async def leaderboard(
        self,
        program: str,
        key: str,
        *,
        period: str | None = None,
        scope: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        around: str | None = None,
    ) -> m.Leaderboard:
        call = calls.leaderboard(program, key, period=period, scope=scope, limit=limit, offset=offset, around=around)
        return await self.run(call)

    async def rewards(self, program: str, participant: str | None = None) -> m.Catalog:
        return await self.run(calls.rewards(program, participant))

    async def redeem(
        self, program: str, participant: str, reward: str, idempotency_key: str | None = None
    ) -> m.Redemption:
        return await self.run(calls.redeem(program, participant, reward, idempotency_key))

    async def fulfil(self, program: str, redemption: int) -> m.Redemption:
        return await self.run(calls.fulfil(program, redemption))

    async def cancel(self, program: str, redemption: int) -> m.Redemption:
        return await self.run(calls.cancel(program, redemption))

    async def create_webhook(
        self, program: str, url: str, events: list[str], *, secret: str | None = None, format: str = "json"
    ) -> m.WebhookCreated:
        return await self.run(calls.create_webhook(program, url, events, secret=secret, format=format))

    async def webhooks(self, program: str) -> list[m.Webhook]:
        return (await self.run(calls.webhooks(program))).webhooks

    async def delete_webhook(self, program: str, webhook: int) -> None:
        await self.run(calls.delete_webhook(program, webhook))

    async def deliveries(
        self, program: str, webhook: int, *, limit: int | None = None, before: int | None = None
    ) -> m.Deliveries:
        return await self.run(calls.deliveries(program, webhook, limit=limit, before=before))
