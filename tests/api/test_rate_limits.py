"""Rate limits (docs/api.md, Limits): a token bucket per API key and per CRM source; past it, 429
problem+json with ``Retry-After``, and nothing done."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml
from fastapi.testclient import TestClient

from levelup.api.app import create_app
from levelup.api.limits import Limiter, RateLimited
from levelup.runtime import Runtime
from tests.api.test_sources import SECRET, WEBHOOK, _webhook
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


def test_unsigned_posts_spend_their_sender_s_bucket_not_the_source_s(
    limited: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before a delivery's check, a bucket per sending address; a source's bucket only for deliveries that
    passed it: a flood of unsigned posts from one address gets 429 without touching the CRM's rate."""
    monkeypatch.setenv("T_WEBHOOK_SECRET", SECRET)
    document = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text()) | {"sources": [WEBHOOK]}
    applied = limited.put(A, content=yaml.safe_dump(document), headers={**ADMIN, "Content-Type": "application/yaml"})
    assert applied.status_code == 201, applied.text
    app = limited.app
    with TestClient(app, client=("203.0.113.9", 4000)) as flood:
        answers = [flood.post(f"{A}/sources/billing", content=b"[]").status_code for _ in range(6)]
    assert answers == [401] * 5 + [429]  # unsigned: refused, then limited, as the flood's own address
    crms = [TestClient(app, client=(f"198.51.100.{n}", 443)) for n in range(1, 7)]
    signed = []
    for crm in crms:
        delivery = _webhook("won", SECRET, int(time.time()))
        signed.append(crm.post(f"{A}/sources/billing", content=delivery.content, headers=delivery.headers))
    assert [r.status_code for r in signed] == [200] * 5 + [429]  # one source, one bucket, whichever address
    assert signed[5].json()["code"] == "rate_limited" and "Retry-After" in signed[5].headers


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
