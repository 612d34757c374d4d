"""Rate limits (docs/api.md, Limits): a token bucket per API key and per CRM source; past it, 429
problem+json with ``Retry-After``, and nothing done."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from levelup.api.app import create_app
from levelup.api.limits import Limiter, RateLimited
from levelup.runtime import Runtime
from tests.conftest import ADMIN_KEY, EXAMPLES, event

A = "/api/v1/programs/acme-sales"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def limited(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app with one request every 5 s per key, 5 saved up (so no token comes back during a test)."""
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("LEVELUP_RATE_LIMIT", "0.2")
    monkeypatch.setenv("LEVELUP_RATE_BURST", "5")
    with TestClient(create_app(runtime)) as client:
        yield client


def test_a_key_past_its_rate_gets_429_and_nothing_is_done(limited: TestClient) -> None:
    document = (EXAMPLES / "acme-sales.yaml").read_text()
    assert limited.put(A, content=document, headers={**ADMIN, "Content-Type": "application/yaml"}).status_code == 201
    made = limited.post("/api/v1/keys", json={"role": "ingest", "programs": ["acme-sales"]}, headers=ADMIN).json()
    crm = {"Authorization": f"Bearer {made['key']}"}
    answers = [limited.post(f"{A}/events", json=event(f"e{n}"), headers=crm) for n in range(5)]
    assert [a.json()["status"] for a in answers] == ["accepted"] * 5
    refused = limited.post(f"{A}/events", json=event("late"), headers=crm)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 5
    assert limited.get(f"{A}/events/late", headers=ADMIN).status_code == 404  # nothing done; the admin's own bucket


def test_a_source_has_a_bucket_of_its_own(limited: TestClient) -> None:
    for _ in range(5):
        assert limited.post(f"{A}/sources/hubspot", content=b"[]").status_code != 429  # no such program: 404
    refused = limited.post(f"{A}/sources/hubspot", content=b"[]")
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert limited.post(f"{A}/sources/pipedrive", content=b"{}").status_code != 429


def test_the_bucket_refills_at_the_rate_and_zero_turns_it_off() -> None:
    limiter = Limiter(rate=10, burst=2)
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(RateLimited) as refused:
        limiter.take("k")
    assert refused.value.extra["retry_after"] == 1
    time.sleep(0.15)  # 1.5 tokens back
    limiter.take("k")
    off = Limiter(rate=0, burst=1)
    for _ in range(10_000):
        off.take("k")
