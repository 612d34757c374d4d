"""Leaderboards from Redis: the same answers as the database, kept in step by commits, rebuilt when flushed
or stale, and the database answering whenever Redis cannot (never a failed request)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from typer.testing import CliRunner

from levelup.api.app import create_app
from levelup.cli.main import app as cli
from levelup.leaderboards import ranks, redis_board
from levelup.leaderboards import service as boards
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import ADMIN_KEY, EXAMPLES, REDIS_URL, event, fresh_database

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
# (board, period): a participants' metric, a teams' metric, a currency over all time
BOARDS = [("revenue-month", "2026-11"), ("team-revenue", "2026-Q4"), ("xp-all", None)]


def redis_or_skip() -> str:
    """``LEVELUP_TEST_REDIS_URL``, flushed, or a skip saying why it cannot be used."""
    if not REDIS_URL:
        pytest.skip("Redis not configured: set LEVELUP_TEST_REDIS_URL (bash .ci/run does)")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).flushdb()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at LEVELUP_TEST_REDIS_URL unreachable: {type(exc).__name__}")
    return REDIS_URL


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = redis_or_skip()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database(request.param, tmp_path)


def fallbacks() -> float:
    """Answers and writes that Redis failed, or could not serve (its copy stale), so far in this process."""
    uses = ("read", "write", "rebuild", "stale")
    return sum(REGISTRY.get_sample_value("levelup_redis_fallbacks_total", {"use": use}) or 0 for use in uses)


def answers(runtime: Runtime) -> list[Any]:
    """Every kind of plain-board answer: pages (first, later, past the end), neighbourhoods, standings."""
    out: list[Any] = []
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
        compiled = runtime.programs.compiled(connection, record)
        for key, period in BOARDS:
            for offset, limit in ((0, 10), (3, 4), (50, 5)):
                out.append(
                    boards.leaderboard(connection, record, compiled, key, period=period, offset=offset, limit=limit)
                )
            subjects = ["red", "blue"] if key == "team-revenue" else ["rep-0", "rep-7", "rep-19"]
            for subject in subjects:
                out.append(
                    boards.leaderboard(connection, record, compiled, key, period=period, around=subject, limit=2)
                )
                out.append(boards.standing(connection, record, compiled, key, subject, period=period))
    return out


def load(client: TestClient, first: int = 0) -> None:
    """Twenty reps in two teams, with ties: amounts repeat every five reps."""
    client.put(
        "/api/v1/programs/acme-sales",
        content=(EXAMPLES / "acme-sales.yaml").read_text(),
        headers={**ADMIN, "Content-Type": "application/yaml"},
    )
    for i in range(20):
        team = {"teams": ["red" if i % 2 else "blue"]}
        response = client.put(f"/api/v1/programs/acme-sales/participants/rep-{i}", json=team, headers=ADMIN)
        assert response.status_code in (200, 201), response.text
    body = [event(f"e-{first}-{i}", participant=f"rep-{i}", data={"amount": 1000 * (i % 5 + 1)}) for i in range(20)]
    response = client.post("/api/v1/programs/acme-sales/events", json={"events": body}, headers=ADMIN)
    assert response.status_code == 200, response.text


def ready(runtime: Runtime, seconds: float = 20) -> None:
    copy = redis_board.of(runtime.db.engine)
    assert copy is not None
    deadline = time.monotonic() + seconds
    with runtime.db.read() as connection:
        record = programs.find(connection, "acme-sales")
    while copy.client.get(redis_board.ready_key(record.id)) != f"{redis_board.FORMAT}:{record.version}".encode():
        assert time.monotonic() < deadline, "the Redis copy was never rebuilt"
        time.sleep(0.05)


def test_redis_answers_as_the_database_does_and_follows_each_commit(
    url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    sql_only = Runtime.from_url(url, migrate=False)  # made before LEVELUP_REDIS_URL is set: no copy
    monkeypatch.setenv("LEVELUP_REDIS_URL", redis_url)
    runtime = Runtime.from_url(url, migrate=False)
    try:
        with TestClient(create_app(runtime)) as client:
            load(client)
            answers(runtime)  # the copy is stale (a version applied): the database answers, a rebuild starts
            ready(runtime)
            before = fallbacks()

            def no_sql(*_args: object, **_kwargs: object) -> None:
                raise AssertionError("the database was asked while Redis could answer")

            def from_redis() -> list[Any]:
                with monkeypatch.context() as patch:
                    for name in ("page", "around", "ranks_and_total", "locate"):
                        patch.setattr(ranks, name, no_sql)
                    return answers(runtime)

            first = from_redis()
            assert first == answers(sql_only)
            load(client, first=1)  # every rep earns again: the copy follows the commit
            assert from_redis() == answers(sql_only) != first
            assert fallbacks() == before
    finally:
        runtime.db.dispose()
        sql_only.db.dispose()


def test_flushed_redis_the_database_answers_then_the_copy_is_rebuilt(
    url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    sql_only = Runtime.from_url(url, migrate=False)
    monkeypatch.setenv("LEVELUP_REDIS_URL", redis_url)
    runtime = Runtime.from_url(url, migrate=False)
    try:
        with TestClient(create_app(runtime)) as client:
            load(client)
            answers(runtime)
            ready(runtime)
            redis.Redis.from_url(redis_url).flushdb()
            assert answers(runtime) == answers(sql_only)  # from the database, while it rebuilds
            ready(runtime)
            assert answers(runtime) == answers(sql_only)
    finally:
        runtime.db.dispose()
        sql_only.db.dispose()


def test_redis_down_events_are_taken_and_boards_answered_from_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    for url in fresh_database("sqlite", tmp_path):
        sql_only = Runtime.from_url(url, migrate=False)
        monkeypatch.setenv("LEVELUP_REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
        runtime = Runtime.from_url(url, migrate=False)
        before = fallbacks()
        with TestClient(create_app(runtime)) as client:
            load(client)
            assert answers(runtime) == answers(sql_only)
            assert client.get("/readyz").json()["failed"].keys() == {"redis"}
        assert fallbacks() > before
        runtime.db.dispose()
        sql_only.db.dispose()


def test_levelup_rebuild_leaderboards_copies_every_program(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    for url in fresh_database("sqlite", tmp_path):
        runtime = Runtime.from_url(url, migrate=False)
        with TestClient(create_app(runtime)) as client:
            load(client)
        runtime.db.dispose()
        result = CliRunner().invoke(cli, ["rebuild-leaderboards", "--database", url, "--redis", redis_url])
        assert result.exit_code == 0, result.output
        copied = int(result.output.split(": ")[1].split()[0])
        with runtime.db.read() as connection:
            assert copied == connection.execute(select(func.count()).select_from(t.rank_rows)).scalar() > 0
        assert redis.Redis.from_url(redis_url).exists(redis_board.ready_key(1))
        monkeypatch.delenv("LEVELUP_REDIS_URL", raising=False)
        refused = CliRunner().invoke(cli, ["rebuild-leaderboards", "--database", url])
        assert refused.exit_code == 1 and "no Redis" in refused.output
