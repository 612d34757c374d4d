"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is used when ``LEVELUP_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it);
without it those tests skip, and the reason shows in the summary.

The real Alembic migrations run once per session and per engine, into a template: a
SQLite file, and a PostgreSQL database ``levelup_tpl_<pid>``. Each test then gets a
copy: the file copied next to the test, or ``CREATE DATABASE … TEMPLATE`` (dropped after
the test, in the background: a drop waits for a checkpoint). ``tests/storage/test_schema_drift.py``
checks that what the migrations build is what ``levelup.storage.tables`` declares.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from levelup.api.app import create_app
from levelup.runtime import Runtime
from levelup.storage.db import Database

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"
ADMIN_KEY = "test-admin-key"
POSTGRES_URL = os.environ.get("LEVELUP_TEST_POSTGRES_URL")
# every response a test sees is validated against its declared model, so a model never misleads a client
os.environ.setdefault("LEVELUP_CHECK_RESPONSES", "1")
REDIS_URL = os.environ.get("LEVELUP_TEST_REDIS_URL")
DROP_BATCH = 8  # test databases dropped together (see Templates.drop_postgres_later)
NOT_CONFIGURED = "PostgreSQL not configured: set LEVELUP_TEST_POSTGRES_URL (bash .ci/run does)"


def _postgres_database_url(database: str) -> str:
    """The URL of another database on the server of ``LEVELUP_TEST_POSTGRES_URL``."""
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


class Templates:
    """Migrated databases made once per session (on first use), copied for each test."""

    def __init__(self) -> None:
        self.folder: Path | None = None  # set by the session fixture below; a temporary folder otherwise
        self._sqlite: Path | None = None
        self._postgres: str | None = None  # the template database's name
        self._postgres_down: str | None = None  # why PostgreSQL cannot be used, once known
        self._admin: Engine | None = None
        self._pending: list[str] = []  # test databases to drop with the next batch
        self._batches: list[threading.Thread] = []
        self.drop_errors: list[str] = []

    # ------------------------------------------------------------------ SQLite

    def sqlite(self) -> Path:
        if self._sqlite is None:
            folder = self.folder or Path(tempfile.mkdtemp(prefix="levelup-template-"))
            path = folder / "template.db"
            database = Database(f"sqlite:///{path}", pool=False)
            try:
                database.migrate()
            finally:
                database.dispose()
            # Back to one self-contained file: WAL checkpointed into it, no -wal/-shm beside it.
            # Each copy opens in WAL mode again (the connect hook in levelup.storage.db sets it).
            connection = sqlite3.connect(path)
            try:
                assert connection.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
            finally:
                connection.close()
            leftovers = [p.name for p in folder.iterdir() if p.name.startswith("template.db-")]
            assert not leftovers, f"the SQLite template left {leftovers} beside it"
            self._sqlite = path
        return self._sqlite

    # ------------------------------------------------------------------ PostgreSQL

    def admin(self) -> Engine:
        """An autocommit engine on ``LEVELUP_TEST_POSTGRES_URL`` (CREATE/DROP DATABASE), or a skip saying why."""
        if not POSTGRES_URL:
            pytest.skip(NOT_CONFIGURED)
        if self._postgres_down is not None:
            pytest.skip(self._postgres_down)
        if self._admin is None:
            engine = create_engine(
                make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"),
                isolation_level="AUTOCOMMIT",
                pool_size=DROP_BATCH + 2,  # a batch of drops while the next test's database is made
                max_overflow=2 * DROP_BATCH,  # up to three batches at once (see _drop_in_background)
            )
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except Exception as exc:  # the server is down: say so rather than pass
                engine.dispose()
                self._postgres_down = f"PostgreSQL at LEVELUP_TEST_POSTGRES_URL unreachable: {exc.__class__.__name__}"
                pytest.skip(self._postgres_down)
            self._admin = engine
        return self._admin

    def postgres(self) -> str:
        """The name of the migrated template database (made on first use)."""
        admin = self.admin()
        if self._postgres is None:
            name = f"levelup_tpl_{os.getpid()}"
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))  # a killed run's
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            database = Database(_postgres_database_url(name), pool=False)
            try:
                database.migrate()
            except BaseException:
                database.dispose()
                with admin.connect() as connection:
                    connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                raise
            database.dispose()
            with admin.connect() as connection:  # nobody may connect to it now: a copy needs it idle
                connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            self._postgres = name
        return self._postgres

    def create_postgres(self, *, migrated: bool) -> str:
        """A new database (a copy of the template, or empty); returns its name."""
        template = self.postgres() if migrated else "template1"
        name = f"levelup_t_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        for attempt in range(50):
            try:
                with self.admin().connect() as connection:
                    connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
                return name
            except OperationalError as exc:
                # "source database … is being accessed by other users": autovacuum, or another
                # session copying template1 at this instant. Wait a little and try again.
                if "being accessed by other users" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def drop_postgres_later(self, name: str) -> None:
        """Drop a test's database soon, in the background, with others at once.

        A DROP DATABASE waits for a checkpoint; drops that wait together share one, so
        dropping eight at once costs about what one costs (measured: 1.4-5 s for eight
        in parallel against 21-34 s one after the other, on a busy machine)."""
        self._pending.append(name)
        if len(self._pending) >= DROP_BATCH:
            self._drop_in_background(self._pending)
            self._pending = []

    def _drop_in_background(self, names: list[str]) -> None:
        self._batches = [batch for batch in self._batches if batch.is_alive()]
        if len(self._batches) >= 2:  # drops lag behind: wait, rather than hold ever more connections
            self._batches.pop(0).join()
        batch = threading.Thread(target=self._drop_all, args=(names,), name="drop-test-databases", daemon=True)
        batch.start()
        self._batches.append(batch)

    def _drop_all(self, names: list[str]) -> None:
        drops = [threading.Thread(target=self._drop, args=(name,), daemon=True) for name in names]
        for drop in drops:
            drop.start()
        for drop in drops:
            drop.join()

    def _drop(self, name: str) -> None:
        try:
            assert self._admin is not None
            with self._admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as exc:  # reported when the session ends, never lost
            self.drop_errors.append(f"{name}: {exc.__class__.__name__}: {exc}")

    def close(self) -> None:
        """The session is over: drop what is left, the template with it, and wait for every drop."""
        leftovers = self._pending + ([self._postgres] if self._postgres is not None else [])
        self._pending, self._postgres = [], None
        if leftovers:  # alongside a batch still running, if any: their checkpoints coincide
            self._drop_in_background(leftovers)
        for batch in self._batches:
            batch.join()
        self._batches = []
        if self._admin is not None:
            self._admin.dispose()
            self._admin = None


TEMPLATES = Templates()


@pytest.fixture(scope="session", autouse=True)
def _database_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """Where the templates live, and their clean-up when the session ends (they are made lazily)."""
    TEMPLATES.folder = tmp_path_factory.mktemp("templates")
    try:
        yield TEMPLATES
    finally:
        TEMPLATES.close()
    assert not TEMPLATES.drop_errors, f"test databases not dropped: {TEMPLATES.drop_errors}"


def fresh_database(kind: str, folder: Path, *, migrated: bool = True) -> Iterator[str]:
    """Yield the URL of a fresh database of its own: a SQLite file in ``folder``, or a PostgreSQL
    database (dropped afterwards). ``migrated``: a copy of the session's template, at the newest
    migration; otherwise empty. Skips, saying why, when PostgreSQL is not configured or down."""
    if kind == "sqlite":
        path = folder / "levelup.db"
        if migrated:
            shutil.copyfile(TEMPLATES.sqlite(), path)
        yield f"sqlite:///{path}"
        return
    name = TEMPLATES.create_postgres(migrated=migrated)
    try:
        yield _postgres_database_url(name)
    finally:
        TEMPLATES.drop_postgres_later(name)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL, at the newest migration: a SQLite file, or a PostgreSQL database of its own."""
    yield from fresh_database(request.param, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (no migration run), for tests of the migrations themselves."""
    yield from fresh_database(request.param, tmp_path, migrated=False)


@pytest.fixture
def runtime(db_url: str) -> Iterator[Runtime]:
    runtime = Runtime.from_url(db_url, migrate=False)  # db_url is already at the newest migration
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
    """A client with examples/acme-sales.yaml applied."""
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
