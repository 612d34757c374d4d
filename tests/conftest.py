"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is used when ``LEVELUP_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it);
each test gets a schema of its own, built with the real migrations and dropped after.
Without the URL those tests skip, and the reason shows in the summary.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from levelup.api.app import create_app
from levelup.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"
ADMIN_KEY = "test-admin-key"
POSTGRES_URL = os.environ.get("LEVELUP_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("LEVELUP_TEST_REDIS_URL")


def _postgres_schema_url(schema: str) -> str:
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """Yield the URL of a fresh, empty database: a SQLite file in ``folder``, or a PostgreSQL schema
    of its own (dropped afterwards). Skips, saying why, when PostgreSQL is not configured or down."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'levelup.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not configured: set LEVELUP_TEST_POSTGRES_URL (bash .ci/run does)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"))
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the server is down: say so rather than pass
        pytest.skip(f"PostgreSQL at LEVELUP_TEST_POSTGRES_URL unreachable: {exc.__class__.__name__}")
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a PostgreSQL schema of its own."""
    yield from fresh_database(request.param, tmp_path)


@pytest.fixture
def runtime(db_url: str) -> Iterator[Runtime]:
    runtime = Runtime.from_url(db_url)
    try:
        yield runtime
    finally:
        runtime.db.dispose()


@pytest.fixture
def client(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The app in-process, with ``ADMIN_KEY`` as the bootstrap admin key."""
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def acme_text() -> str:
    return (EXAMPLES / "acme-sales.yaml").read_text()


@pytest.fixture
def brewhouse_text() -> str:
    return (EXAMPLES / "brewhouse-rewards.yaml").read_text()


@pytest.fixture
def acme(client: TestClient, admin: dict[str, str], acme_text: str) -> TestClient:
    """A client with the SPEC sales program applied."""
    response = client.put(
        "/api/v1/programs/acme-sales", content=acme_text, headers={**admin, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 201, response.text
    return client


def event(event_id: str, kind: str = "deal.won", participant: str = "rep-17", **fields: Any) -> dict[str, Any]:
    """An event with sensible defaults; ``data=``, ``occurred_at=``, ``reverses=`` override."""
    body: dict[str, Any] = {
        "id": event_id,
        "type": kind,
        "participant": participant,
        "occurred_at": fields.pop("occurred_at", "2026-11-20T15:04:05Z"),
        "data": fields.pop("data", {"amount": 12000}),
    }
    body.update(fields)
    return body
