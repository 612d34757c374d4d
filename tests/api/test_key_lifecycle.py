"""API keys over their life (issue 14, part 4): expiry, revocation across roles, the last-used time (written
at most once a minute, apart from requests) and how a secret is checked (its hash, in constant time)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import select
from typer.testing import CliRunner

from levelup.cli.main import app as cli
from levelup.errors import Unauthorized
from levelup.keys import service as keys
from levelup.runtime import Runtime
from levelup.storage import tables as t
from levelup.web import sessions
from tests.api.test_auth import PROBLEM, A, bearer, create_key
from tests.conftest import event

NOW = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)


def by_role(client: TestClient, role: str, key: dict[str, str], n: int) -> int:
    """The status of a request only ``role`` or above may make (the ``n``-th of this test)."""
    if role == "read":
        return client.get(f"{A}/participants/rep-17", headers=key).status_code
    if role == "ingest":
        return client.post(f"{A}/events", json=event(f"e-{role}-{n}"), headers=key).status_code
    body = {"participant": "rep-17", "currency": "xp", "amount": 1, "note": "x", "idempotency_key": f"a-{n}"}
    return client.post(f"{A}/adjustments", json=body, headers=key).status_code


def expire(runtime: Runtime, key_id: str) -> None:
    """Move a key's expiry to a second ago, as time passing would."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with runtime.db.write() as connection:
        connection.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(expires_at=past))


def test_revoked_and_expired_keys_are_401_in_every_role(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    """For each role: a live key does what its role allows, then the same key revoked (or another expired)
    gets 401 on the same request, an expired one with code ``key_expired``."""
    assert acme.post(f"{A}/events", json=event("first"), headers=admin).status_code == 200  # rep-17 exists
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    for n, role in enumerate(keys.RANK):
        made = {
            how: acme.post(
                "/api/v1/keys", json={"role": role, "programs": ["acme-sales"], "expires_at": soon}, headers=admin
            )
            for how in ("revoked", "expired")
        }
        assert {m.status_code for m in made.values()} == {201}
        assert made["expired"].json()["expires_at"] == dt.datetime.fromisoformat(soon).isoformat()
        live = {how: bearer(m.json()["key"]) for how, m in made.items()}
        for i, key in enumerate(live.values()):
            assert by_role(acme, role, key, 10 * n + i) < 300, role
        assert acme.delete(f"/api/v1/keys/{made['revoked'].json()['id']}", headers=admin).status_code == 204
        expire(runtime, made["expired"].json()["id"])
        for how, key in live.items():
            refused = acme.get(A, headers=key)
            assert refused.status_code == 401, (role, how)
            assert refused.headers["content-type"] == PROBLEM
            assert refused.json()["code"] == ("key_expired" if how == "expired" else "unauthorized"), (role, how)
            assert by_role(acme, role, key, 10 * n + 8) == 401, (role, how)
    assert acme.get(f"{A}/events/e-ingest-18", headers=admin).status_code == 404  # nothing was done


def test_an_expiry_must_be_in_the_future_with_an_offset(acme: TestClient, admin: dict[str, str]) -> None:
    for expires_at in ("2020-01-01T00:00:00Z", "2027-01-01T00:00:00", "3001-01-01T00:00:00Z"):
        refused = acme.post(
            "/api/v1/keys", json={"role": "read", "programs": ["acme-sales"], "expires_at": expires_at}, headers=admin
        )
        assert refused.status_code == 422, expires_at
        assert [e["path"] for e in refused.json()["errors"]] == ["expires_at"], refused.text
    assert create_key(acme, admin, "read", ["acme-sales"])  # without one: never expires


@pytest.fixture
def key_writes(runtime: Runtime) -> Iterator[list[str]]:
    """The name of the thread each write to api_keys.last_used_at ran on, as it happens."""
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS") and "last_used_at" in statement:
            seen.append(threading.current_thread().name)

    sa_event.listen(runtime.db.engine, "before_cursor_execute", listen)
    yield seen
    sa_event.remove(runtime.db.engine, "before_cursor_execute", listen)


def test_last_used_is_written_once_a_minute_apart_from_requests(
    acme: TestClient, admin: dict[str, str], key_writes: list[str]
) -> None:
    created = create_key(acme, admin, "ingest", ["acme-sales"])
    listed = {k["id"]: k for k in acme.get("/api/v1/keys", headers=admin).json()["keys"]}
    assert listed[created["id"]]["last_used_at"] is None and listed[created["id"]]["expires_at"] is None
    before = dt.datetime.now(dt.UTC)
    for n in range(20):
        assert acme.post(f"{A}/events", json=event(f"use-{n}"), headers=bearer(created["key"])).status_code == 200
    use: keys.LastUsed = acme.app.state.key_use  # type: ignore[attr-defined]
    use.flush()
    assert len(key_writes) == 1 and key_writes[0].startswith("levelup-key-use")  # one write, on its own thread
    used = {k["id"]: k for k in acme.get("/api/v1/keys", headers=admin).json()["keys"]}[created["id"]]["last_used_at"]
    assert before <= dt.datetime.fromisoformat(used) <= dt.datetime.now(dt.UTC)
    use.every = 0  # a minute later: the next use is written again, several keys' in one transaction
    other = create_key(acme, admin, "read", ["acme-sales"])
    for key in (created, other):
        assert acme.get(A, headers=bearer(key["key"])).status_code == 200
    use.flush()
    assert len(key_writes) in (2, 3)
    again = {k["id"]: k["last_used_at"] for k in acme.get("/api/v1/keys", headers=admin).json()["keys"]}
    assert again[created["id"]] > used and again[other["id"]] is not None


def test_a_secret_is_checked_by_its_hash_in_constant_time(
    acme: TestClient, admin: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the secret's SHA-256 is stored; a right secret, a wrong one, an unknown key id and a token of
    another shape each cost one ``hmac.compare_digest`` of two SHA-256 digests (a dummy one when no key has
    the id), so how long a refusal takes says nothing about which part was wrong."""
    created = create_key(acme, admin, "read", ["acme-sales"])
    secret = created["key"].split("_", 2)[2]
    with runtime.db.read() as connection:
        row = connection.execute(select(t.api_keys).where(t.api_keys.c.id == created["id"])).one()
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps([str(v) for v in row])
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module keys.service calls it through
    tokens = {
        "right": created["key"],
        "wrong secret": created["key"][:-1] + ("x" if created["key"][-1] != "x" else "y"),
        "unknown id": f"lvl_0123456789abcdef_{secret}",
        "other shape": "not-a-levelup-key",
    }
    for name, token in tokens.items():
        compared.clear()
        with runtime.db.read() as connection:
            try:
                keys.authenticate(connection, token, admin_key=None)
                outcome = "ok"
            except Unauthorized:
                outcome = "refused"
        assert outcome == ("ok" if name == "right" else "refused"), name
        assert len(compared) == 1, name
        stored, presented = compared[0]
        assert (
            len(stored) == len(presented) == 64
            and presented == hashlib.sha256(token.split("_", 2)[-1].encode()).hexdigest().encode()
        )
        assert (stored == row.secret_hash.encode()) == (name in ("right", "wrong secret")), name


def test_parse_expiry() -> None:
    assert keys.parse_expiry("30d", NOW) == NOW + dt.timedelta(days=30)
    assert keys.parse_expiry("12h", NOW) == NOW + dt.timedelta(hours=12)
    assert keys.parse_expiry("2027-01-01", NOW) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert keys.parse_expiry("2027-01-01T09:00:00+01:00", NOW) == dt.datetime(2027, 1, 1, 8, tzinfo=dt.UTC)
    for bad in ("soon", "30w", "99999999d", ""):
        with pytest.raises(ValueError):
            keys.parse_expiry(bad, NOW)


def test_cli_makes_expiring_keys_and_lists_them(acme: TestClient, admin: dict[str, str], db_url: str) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli, ["keys", "create", "--role", "read", "-p", "acme-sales", "--expires", "30d", "--database", db_url]
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert acme.get(A, headers=bearer(secret)).status_code == 200
    acme.app.state.key_use.flush()  # type: ignore[attr-defined]
    for bad in ("yesterday", "2020-01-01"):
        refused = runner.invoke(
            cli, ["keys", "create", "--role", "read", "-p", "acme-sales", "--expires", bad, "--database", db_url]
        )
        assert refused.exit_code == 1, refused.output
    listed = runner.invoke(cli, ["keys", "list", "--json", "--database", db_url])
    assert listed.exit_code == 0, listed.output
    (key,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert secret.startswith(f"lvl_{key['id']}_") and key["last_used_at"] is not None
    days = (dt.datetime.fromisoformat(key["expires_at"]) - dt.datetime.now(dt.UTC)) / dt.timedelta(days=1)
    assert 29.9 < days <= 30
    table = runner.invoke(cli, ["keys", "list", "--database", db_url])
    assert table.exit_code == 0 and key["id"] in table.stdout
    assert runner.invoke(cli, ["keys", "revoke", key["id"], "--database", db_url]).exit_code == 0
    assert acme.get(A, headers=bearer(secret)).status_code == 401
    assert runner.invoke(cli, ["keys", "revoke", key["id"], "--database", db_url]).exit_code == 1  # no active key


def test_an_expired_key_ends_its_studio_sessions(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    created = create_key(acme, admin, "admin", ["acme-sales"])
    with runtime.db.write() as connection:
        cookie = sessions.start(connection, keys.authenticate(connection, created["key"], admin_key=None))
        assert sessions.find(connection, cookie) is not None
    expire(runtime, created["id"])
    with runtime.db.read() as connection:
        assert sessions.find(connection, cookie) is None
