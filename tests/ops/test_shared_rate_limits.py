"""Rate limits shared by every worker through Redis (issue 14, part 5): with ``LEVELUP_REDIS_URL`` a key's
and a source's bucket is one for all processes, so two servers together allow the rate once, not twice;
without Redis (or while it fails) each process limits alone. Skips, saying why, without Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from levelup.api.limits import Limiter, RateLimited, SharedLimiter
from levelup.observability.metrics import REDIS_FALLBACKS
from tests.conftest import ADMIN_KEY, EXAMPLES, event, fresh_database
from tests.ops.test_redis_boards import redis_or_skip
from tests.ops.test_two_servers import servers

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
A = "/api/v1/programs/acme-sales"
BURST = 6


def outcomes(limiters: list[Limiter], name: str, count: int) -> list[int | None]:
    """Take ``count`` tokens of ``name``, by turns from each limiter: None when allowed, else Retry-After."""

    async def run() -> list[int | None]:
        seen: list[int | None] = []
        for n in range(count):
            try:
                await limiters[n % len(limiters)].check(name)
                seen.append(None)
            except RateLimited as refused:
                seen.append(refused.extra["retry_after"])
        return seen

    return asyncio.run(run())


def test_two_workers_share_one_bucket() -> None:
    url = redis_or_skip()
    workers: list[Limiter] = [SharedLimiter(rate=0.2, burst=BURST, url=url) for _ in range(2)]
    seen = outcomes(workers, "key:k1", BURST + 2)
    assert seen[:BURST] == [None] * BURST
    assert seen[BURST:] == [5, 5]  # one request every 5 s: the next token in (just under) 5 s
    assert outcomes(workers, "key:k2", 1) == [None]  # another key: a bucket of its own
    alone = [Limiter(rate=0.2, burst=BURST) for _ in range(2)]
    assert outcomes(alone, "key:k1", 2 * BURST) == [None] * 2 * BURST  # per process: twice the burst


def test_a_failing_redis_leaves_each_worker_limiting_alone() -> None:
    down = SharedLimiter(rate=0.2, burst=BURST, url="redis://127.0.0.1:1/0")  # nothing listens there
    before = REDIS_FALLBACKS.labels(use="limit")._value.get()
    seen = outcomes([down], "key:k", BURST + 1)
    assert seen == [None] * BURST + [5]  # its own bucket: still limited, never an error
    assert REDIS_FALLBACKS.labels(use="limit")._value.get() == before + 1  # asked once, then left alone


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("postgres", tmp_path)


def test_two_servers_allow_the_rate_once_for_a_key_and_a_source(
    postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key's requests alternated between two ``levelup serve`` processes: BURST pass in all, then 429 with
    Retry-After on both, and nothing done; the same for deliveries from one address to a CRM source."""
    redis_url = redis_or_skip()
    monkeypatch.setenv("LEVELUP_RATE_LIMIT", "0.05")  # a token every 20 s: none comes back meanwhile
    monkeypatch.setenv("LEVELUP_RATE_BURST", str(BURST))
    with servers(postgres, redis_url, tmp_path, count=2) as bases, httpx.Client(timeout=30) as http:
        document = (EXAMPLES / "acme-sales.yaml").read_text()
        applied = http.put(f"{bases[0]}{A}", content=document, headers={**ADMIN, "Content-Type": "application/yaml"})
        assert applied.status_code == 201, applied.text
        made = http.post(f"{bases[0]}/api/v1/keys", json={"role": "ingest", "programs": ["acme-sales"]}, headers=ADMIN)
        crm = {"Authorization": f"Bearer {made.json()['key']}"}
        answers = [http.post(f"{bases[n % 2]}{A}/events", json=event(f"e-{n}"), headers=crm) for n in range(BURST + 2)]
        assert [a.status_code for a in answers] == [200] * BURST + [429, 429], [a.text for a in answers]
        for refused in answers[BURST:]:
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["code"] == "rate_limited" and 1 <= int(refused.headers["Retry-After"]) <= 20
        late = [http.get(f"{bases[0]}{A}/events/e-{n}", headers=ADMIN).status_code for n in (BURST, BURST + 1)]
        assert late == [404, 404]  # refused ones were not ingested (the admin key has a bucket of its own)
        deliveries = [
            http.post(f"{bases[n % 2]}{A}/sources/hubspot", content=b"[]").status_code for n in range(BURST + 1)
        ]
        assert 429 not in deliveries[:BURST] and deliveries[BURST] == 429  # the sender's bucket: 404 until limited
