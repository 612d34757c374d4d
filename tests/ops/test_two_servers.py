"""Issue 13's "done when": two ``levelup serve`` processes on one PostgreSQL and one Redis. An event posted
to one is on the other's live feed within a second and on its leaderboards; Redis flushed mid-test, the
answers stay right (the database answers, then the copy is rebuilt)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from tests.conftest import ADMIN_KEY, EXAMPLES, event, fresh_database
from tests.live import free_port
from tests.ops.test_redis_boards import redis_or_skip

LEVELUP = Path(sys.executable).with_name("levelup")
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BOARD = "/api/v1/programs/acme-sales/leaderboards/xp-all"


@contextmanager
def servers(database: str, redis_url: str, folder: Path, *, count: int, workers: int = 1) -> Iterator[list[str]]:
    """``count`` ``levelup serve`` processes on free loopback ports, started together; yields their base URLs
    once every one is ready, and stops them together."""
    env = {
        **os.environ,
        "LEVELUP_ADMIN_KEY": ADMIN_KEY,
        "LEVELUP_REDIS_URL": redis_url,
        "LEVELUP_LOG_FORMAT": "json",
        "LEVELUP_DELIVER": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for _ in range(count):
            port = free_port()
            log = folder / f"server-{port}.log"
            command = [str(LEVELUP), "serve", "--port", str(port), "--workers", str(workers), "--database", database]
            with log.open("wb") as out:
                process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
            started.append((f"http://127.0.0.1:{port}", process, log))
        deadline = time.monotonic() + 90
        for base, process, log in started:
            while not _ready(base):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"{base} did not become ready: {log.read_text()}"
                time.sleep(0.1)
        yield [base for base, _, _ in started]
    finally:
        for _, process, _ in started:
            process.terminate()
        for _, process, _ in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def listen(base: str, seen: queue.Queue[tuple[float, dict[str, Any]]], connected: threading.Event) -> None:
    """Read the program's live feed, putting (time received, message data) on ``seen``, until the server stops."""
    url = f"{base}/api/v1/programs/acme-sales/stream?limit=1000"
    with suppress(httpx.HTTPError), httpx.stream("GET", url, headers=ADMIN, timeout=30) as response:
        for line in response.iter_lines():
            connected.set()
            if line.startswith("data: "):
                seen.put((time.monotonic(), orjson.loads(line[6:])))


def board(base: str) -> dict[str, Any]:
    response = httpx.get(f"{base}{BOARD}", params={"limit": 50}, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database("postgres", tmp_path)


def test_two_servers_share_the_feed_and_the_boards_through_redis_and_survive_a_flush(
    postgres: str, tmp_path: Path
) -> None:
    redis_url = redis_or_skip()
    with servers(postgres, redis_url, tmp_path, count=2) as (a, b):
        applied = httpx.put(
            f"{a}/api/v1/programs/acme-sales",
            content=(EXAMPLES / "acme-sales.yaml").read_bytes(),
            headers={**ADMIN, "Content-Type": "application/yaml"},
        )
        assert applied.status_code == 201, applied.text
        seen: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        connected = threading.Event()
        threading.Thread(target=listen, args=(b, seen, connected), daemon=True).start()
        assert connected.wait(10), "the stream on the second server did not open"

        latencies = []
        for i in range(5):
            sent = time.monotonic()
            posted = httpx.post(
                f"{a}/api/v1/programs/acme-sales/events", json=event(f"e-{i}", participant=f"rep-{i}"), headers=ADMIN
            )
            assert posted.status_code == 200, posted.text
            while True:
                at, data = seen.get(timeout=2)
                if data["participant"] == f"rep-{i}":
                    break
            latencies.append(at - sent)
        assert max(latencies) < 1.0, latencies

        expected = board(a)
        assert [e["id"] for e in expected["entries"]] == [f"rep-{i}" for i in range(5)]
        assert board(b) == expected

        flushed = redis.Redis.from_url(redis_url)
        flushed.flushdb()
        assert board(b) == expected  # the database answers while the copy is rebuilt
        more = httpx.post(
            f"{a}/api/v1/programs/acme-sales/events",
            json={"events": [event(f"x-{i}", participant="rep-9", data={"amount": 50_000}) for i in range(3)]},
            headers=ADMIN,
        )
        assert more.status_code == 200, more.text
        after = board(a)
        assert after["entries"][0]["id"] == "rep-9" and board(b) == after
        deadline = time.monotonic() + 20
        while not list(flushed.scan_iter(match="levelup:{*}:ready")):
            assert time.monotonic() < deadline, "the Redis copy was not rebuilt after the flush"
            time.sleep(0.1)
        assert board(b) == after == board(a)
        metrics = httpx.get(f"{b}/metrics").text
        assert 'levelup_redis_fallbacks_total{use="stale"}' in metrics  # the reads answered from the database


def test_serve_with_two_workers_adds_up_both_workers_metrics(postgres: str, tmp_path: Path) -> None:
    redis_url = redis_or_skip()
    with servers(postgres, redis_url, tmp_path, count=1, workers=2) as [base]:
        applied = httpx.put(
            f"{base}/api/v1/programs/acme-sales",
            content=(EXAMPLES / "acme-sales.yaml").read_bytes(),
            headers={**ADMIN, "Content-Type": "application/yaml"},
        )
        assert applied.status_code == 201, applied.text
        for i in range(20):  # a connection each: the kernel spreads them over both workers
            with httpx.Client() as client:
                posted = client.post(
                    f"{base}/api/v1/programs/acme-sales/events",
                    json=event(f"w-{i}", participant="rep-1"),
                    headers=ADMIN,
                )
                assert posted.status_code == 200, posted.text
        for _ in range(10):  # whichever worker answers /metrics counts both workers' events
            with httpx.Client() as client:
                text = client.get(f"{base}/metrics").text
            accepted = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith('levelup_events_total{program="acme-sales",status="accepted"}')
            ]
            assert accepted == [20]
