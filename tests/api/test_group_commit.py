"""Group commit over HTTP: many concurrent single-event POSTs, each answered as if sent alone.

Concurrent requests go through httpx.AsyncClient with ASGITransport (one event loop, as
under uvicorn) or through threads sharing a TestClient; both databases.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from levelup.events import group_commit
from levelup.events import ingest as ingestion
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event
from tests.storage.test_group_commit import Gate, stored, wait_until

P = "/api/v1/programs/acme-sales"
PROBLEM = "application/problem+json"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Gate:
    """``ingest`` with every call recorded; the first call goes through at once."""
    wrapper = Gate()
    wrapper.release.set()
    monkeypatch.setattr(ingestion, "ingest", wrapper)
    return wrapper


async def post_all(app: FastAPI, headers: dict[str, str], bodies: list[Any]) -> list[httpx.Response]:
    """POST every body at once, each in its own request."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http:
        return await asyncio.gather(*(http.post(f"{P}/events", json=body) for body in bodies))


def app_of(client: TestClient) -> FastAPI:
    assert isinstance(client.app, FastAPI)
    return client.app


def waiting(client: TestClient) -> int:
    """Events waiting for their group in the app's coalescer."""
    commit: group_commit.GroupCommit = app_of(client).state.group_commit
    return commit.waiting


def deal(event_id: str, participant: str, amount: int) -> dict[str, Any]:
    return event(event_id, participant=participant, data={"amount": amount})


def ledger_matches_positions(runtime: Runtime) -> None:
    """Every balance is the sum of its ledger entries."""
    with runtime.db.read() as connection:
        ledger = connection.execute(
            select(
                t.ledger_entries.c.participant_id, t.ledger_entries.c.currency, func.sum(t.ledger_entries.c.amount)
            ).group_by(t.ledger_entries.c.participant_id, t.ledger_entries.c.currency)
        ).all()
        positions = connection.execute(
            select(
                t.positions.c.participant_id, t.positions.c.currency, t.positions.c.available - t.positions.c.arrears
            )
        ).all()
    assert {(p, c): int(v) for p, c, v in ledger} == {(p, c): int(v) for p, c, v in positions if v}


def test_concurrent_single_posts_are_grouped_and_each_answered_as_if_alone(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, counted: Gate
) -> None:
    deals = [deal(f"deal-{i}", f"p-{i}", 1000 * (i + 1)) for i in range(120)]
    same = [deal("same", "p-x", 5000)] * 5  # one accepted, then duplicates
    clashing = [deal("clash", "p-y", amount) for amount in (1000, 2000, 3000)]  # one accepted, the others 409
    invalid = [{"id": f"bad-{i}", "participant": "p-z"} for i in range(5)]
    bodies = [*deals, *same, *clashing, *invalid]

    responses = asyncio.run(post_all(app_of(acme), admin, bodies))

    assert len(counted.calls) < len(bodies)  # grouped: fewer transactions than requests
    assert sorted(len(call) for call in counted.calls)[-1] > 1
    for body, response in zip(deals, responses, strict=False):
        amount = body["data"]["amount"]
        assert response.status_code == 200, response.text
        assert response.json() == {
            "id": body["id"],
            "status": "accepted",
            "awards": [
                {"currency": "xp", "amount": 100 + amount // 100, "rule": "deal-won"},
                {"currency": "coins", "amount": amount // 1000, "rule": "deal-won"},
            ],
        }
    answers = [(r.status_code, r.json().get("status")) for r in responses[len(deals) :]]
    assert Counter(answers[:5]) == {(200, "accepted"): 1, (200, "duplicate"): 4}
    assert Counter(code for code, _ in answers[5:8]) == {200: 1, 409: 2}
    for response in responses[len(deals) + 5 : len(deals) + 8]:
        if response.status_code == 409:
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["errors"] == [
                {"path": "id", "message": "already used by an event with different content"}
            ]
    for response in responses[len(deals) + 8 :]:
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    winner = next(b for b, r in zip(clashing, responses[len(deals) + 5 :], strict=False) if r.status_code == 200)
    assert acme.get(f"{P}/events/clash", headers=admin).json()["data"] == winner["data"]
    assert stored(runtime) == {**{b["id"]: 1 for b in deals}, "same": 1, "clash": 1}  # each exactly once
    ledger_matches_positions(runtime)


def test_threads_sharing_a_test_client_are_grouped(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, counted: Gate
) -> None:
    bodies = [deal(f"t-{i}", f"p-{i % 10}", 100_000) for i in range(60)]
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda body: acme.post(f"{P}/events", json=body, headers=admin), bodies))
    assert [r.json()["status"] for r in responses] == ["accepted"] * 60
    assert len(counted.calls) < len(bodies)
    assert stored(runtime) == {b["id"]: 1 for b in bodies}
    ledger_matches_positions(runtime)


@pytest.mark.parametrize("fails", ["the bad request alone too", "only in a group"])
def test_a_failing_group_falls_back_and_only_the_bad_request_fails(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    if fails == "only in a group":
        gate = Gate(fails=lambda ids: len(ids) > 1)
    else:
        gate = Gate(fails=lambda ids: "poison" in ids)
    monkeypatch.setattr(ingestion, "ingest", gate)
    bodies = [deal(f"ok-{i}", f"p-{i}", 1000) for i in range(20)]
    bodies.insert(7, deal("poison", "p-7", 1000))

    async def main() -> tuple[httpx.Response, list[httpx.Response]]:
        first = asyncio.create_task(post_all(app_of(acme), admin, [deal("held", "p-0", 1000)]))
        await wait_until(gate.entered.is_set)
        rest = asyncio.create_task(post_all(app_of(acme), admin, bodies))
        await wait_until(lambda: waiting(acme) == len(bodies))
        gate.release.set()
        return (await first)[0], await rest

    held, responses = asyncio.run(main())
    assert held.status_code == 200
    assert sorted(gate.calls[1]) == sorted(b["id"] for b in bodies)  # one group, which failed
    assert sorted(call[0] for call in gate.calls[2:]) == sorted(b["id"] for b in bodies)  # then each alone
    for body, response in zip(bodies, responses, strict=True):
        if body["id"] == "poison" and fails != "only in a group":
            assert response.status_code == 500
        else:
            assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
    expected = {b["id"] for b in bodies} - ({"poison"} if fails != "only in a group" else set())
    assert stored(runtime) == dict.fromkeys(expected | {"held"}, 1)
    ledger_matches_positions(runtime)


def test_too_many_waiting_events_answer_503_with_retry_after(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(ingestion, "ingest", gate)
    monkeypatch.setattr(group_commit, "MAX_WAITING", 4)

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        first = asyncio.create_task(post_all(app_of(acme), admin, [deal("held", "p-0", 1000)]))
        await wait_until(gate.entered.is_set)
        batch = {"events": [deal(f"w-{i}", "p-1", 10) for i in range(4)]}
        queued = asyncio.create_task(post_all(app_of(acme), admin, [batch]))
        await wait_until(lambda: waiting(acme) == 4)
        refused = await post_all(app_of(acme), admin, [deal("refused", "p-2", 1000)])
        gate.release.set()
        return refused, [*(await first), *(await queued)]

    refused, answered = asyncio.run(main())
    assert refused[0].status_code == 503
    assert refused[0].headers["retry-after"] == "1"
    assert refused[0].headers["content-type"] == PROBLEM
    assert refused[0].json()["code"] == "overloaded"
    assert [r.status_code for r in answered] == [200, 200]
    assert [r["status"] for r in answered[1].json()["results"]] == ["accepted"] * 4
    assert "refused" not in stored(runtime)


def test_shutdown_answers_the_requests_still_waiting_then_turns_new_ones_away(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate()
    monkeypatch.setattr(ingestion, "ingest", gate)
    app = app_of(acme)

    async def main() -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with app.router.lifespan_context(app):  # as uvicorn runs it, on this loop
            first = asyncio.create_task(post_all(app, admin, [deal("s-0", "p-1", 1000)]))
            await wait_until(gate.entered.is_set)
            rest = asyncio.create_task(post_all(app, admin, [deal(f"s-{i}", "p-1", 1000) for i in range(1, 6)]))
            await wait_until(lambda: waiting(acme) == 5)
            threading.Timer(0.3, gate.release.set).start()  # released while the app is shutting down
        commit: group_commit.GroupCommit = app.state.group_commit
        assert commit.waiting == 0 and commit.in_flight == 0  # shutdown returned once every group was answered
        late = await post_all(app, admin, [deal("late", "p-1", 1000)])
        answered = await asyncio.wait_for(asyncio.gather(first, rest), 5)  # all answered by the shutdown
        return [r for responses in answered for r in responses], late

    answered, late = asyncio.run(main())
    assert [(r.status_code, r.json()["status"]) for r in answered] == [(200, "accepted")] * 6
    assert late[0].status_code == 503 and late[0].headers["retry-after"] == "1"
    assert stored(runtime) == {f"s-{i}": 1 for i in range(6)}
