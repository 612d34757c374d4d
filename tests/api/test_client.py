"""``levelup.client`` against the app: the sync client over a served app on a loopback port, the async
client over httpx's ASGI transport; typed results, typed errors carrying the problem+json, and retries
that resend the same ids (so an event whose answer was lost counts once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from levelup.api.app import create_app
from levelup.client import AsyncClient, Client, Conflict, InvalidInput, NotFound, Retry, Unauthorized
from levelup.runtime import Runtime
from tests.conftest import ADMIN_KEY, event
from tests.live import served

P = "acme-sales"
QUICK = Retry(attempts=3, backoff=0.01)


@pytest.fixture
def base_url(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    with served(create_app(runtime)) as url:
        yield url


class Flaky(httpx.BaseTransport):
    """The network, except that the first request matching ``path`` fails as told: its answer is lost after
    the server handled it (``lose``), or a 503 comes back before it does."""

    def __init__(self, path: str, *, lose: bool) -> None:
        self.real = httpx.HTTPTransport()
        self.path, self.lose = path, lose
        self.sent: list[Any] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != self.path:
            return self.real.handle_request(request)
        self.sent.append(orjson.loads(request.read()))
        if len(self.sent) == 1 and not self.lose:
            return httpx.Response(503, headers={"Retry-After": "0"}, json={"status": 503, "title": "busy"})
        response = self.real.handle_request(request)
        if len(self.sent) == 1:
            response.read()
            raise httpx.ReadError("connection reset after the server answered")
        return response


def test_the_sync_client_covers_the_api_with_typed_results_and_errors(base_url: str, acme_text: str) -> None:
    with Client(base_url, ADMIN_KEY, retry=QUICK) as levelup:
        applied = levelup.apply_program(P, acme_text)
        assert (applied.program, applied.version, applied.changed) == (P, 1, True)
        assert levelup.get_program(P).document["program"] == P

        profile = levelup.put_participant(P, "rep-17", name="Dana", teams=["east"], attributes={"quota": 50000})
        assert (profile.name, profile.teams) == ("Dana", ["east"])
        one = levelup.send_event(P, event("d-1", data={"amount": 50000}))
        assert (one.status, [(a.currency, a.amount) for a in one.awards or []]) == (
            "accepted",
            [("xp", 600), ("coins", 50)],
        )
        batch = levelup.send_events(P, [event("d-1", data={"amount": 50000}), event("d-2", data={"amount": 500000})])
        assert [r.status for r in batch] == ["duplicate", "accepted"]
        assert levelup.get_participant(P, "rep-17").balances == {"xp": 600 + 5100, "coins": 50 + 500}
        board = levelup.leaderboard(P, "revenue-month", period="2026-11")
        assert [(e.rank, e.id, e.name, e.value) for e in board.entries] == [(1, "rep-17", "Dana", 550000)]

        (gift,) = levelup.rewards(P).rewards
        assert (gift.key, gift.cost, gift.remaining) == ("gift-card-25", {"coins": 500}, 100)
        made = levelup.redeem(P, "rep-17", "gift-card-25", "key-1")
        assert levelup.redeem(P, "rep-17", "gift-card-25", "key-1").id == made.id  # the same key: the same one
        assert levelup.fulfil(P, made.id).status == "fulfilled"
        with pytest.raises(Conflict) as limit:
            levelup.redeem(P, "rep-17", "gift-card-25")
        assert limit.value.code == "limit_reached" and limit.value.problem["status"] == 409
        with pytest.raises(Conflict):
            levelup.cancel(P, made.id)  # fulfilled: it cannot be cancelled

        with pytest.raises(InvalidInput) as invalid:
            levelup.send_event(P, event("bad", occurred_at="yesterday"))
        assert [e["path"] for e in invalid.value.errors] == ["occurred_at"]
        with pytest.raises(NotFound):
            levelup.get_participant(P, "nobody")
    with Client(base_url, "wrong-key") as stranger, pytest.raises(Unauthorized) as refused:
        stranger.get_program(P)
    assert refused.value.status == 401 and refused.value.title


@pytest.mark.parametrize("lose", [True, False], ids=["answer-lost", "503"])
def test_a_retried_event_keeps_its_id_and_counts_once(base_url: str, acme_text: str, lose: bool) -> None:
    flaky = Flaky(f"/api/v1/programs/{P}/events", lose=lose)
    with Client(base_url, ADMIN_KEY, retry=QUICK, transport=flaky) as levelup:
        levelup.apply_program(P, acme_text)
        result = levelup.send_event(P, {k: v for k, v in event("ignored").items() if k != "id"})
        first, second = flaky.sent
        assert first["id"].startswith("evt-") and second == first  # the id was made once and sent twice
        assert result.status == ("duplicate" if lose else "accepted")
        assert levelup.get_participant(P, "rep-17").balances == {"xp": 220, "coins": 12}  # counted once


def test_an_answer_that_is_not_retried_raises_at_once(base_url: str) -> None:
    flaky = Flaky(f"/api/v1/programs/{P}/webhooks", lose=True)
    with Client(base_url, ADMIN_KEY, retry=QUICK, transport=flaky) as levelup, pytest.raises(httpx.ReadError):
        levelup.create_webhook(P, "https://crm.example/hook", ["badge.awarded"])
    assert len(flaky.sent) == 1  # a subscription is not idempotent: never sent twice


def test_the_async_client(runtime: Runtime, acme_text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    transport = httpx.ASGITransport(app=create_app(runtime))

    async def scenario() -> None:
        async with AsyncClient("http://levelup.test", ADMIN_KEY, transport=transport) as levelup:
            assert (await levelup.apply_program(P, acme_text)).version == 1
            await levelup.put_participant(P, "rep-17", name="Dana")
            results = await levelup.send_events(P, [event(f"d-{i}") for i in range(3)])
            assert [r.status for r in results] == ["accepted"] * 3
            assert (await levelup.get_participant(P, "rep-17")).balances == {"xp": 660, "coins": 36}
            hook = await levelup.create_webhook(P, "https://crm.example/hook", ["award.granted"], secret="s" * 16)
            assert [w.id for w in await levelup.webhooks(P)] == [hook.id]
            assert (await levelup.deliveries(P, hook.id)).deliveries == []
            await levelup.delete_webhook(P, hook.id)
            with pytest.raises(NotFound):
                await levelup.leaderboard(P, "no-such-board")

    asyncio.run(scenario())
