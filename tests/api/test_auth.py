"""API keys (docs/api.md): authentication, roles, program scopes, creation by API and CLI, revocation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from levelup.cli.main import app as cli
from levelup.keys.service import RANK
from levelup.programs.validation import load_document
from tests.conftest import event

PROBLEM = "application/problem+json"
A = "/api/v1/programs/acme-sales"
B = "/api/v1/programs/acme-west"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create_key(client: TestClient, headers: dict[str, str], role: str, programs: list[str]) -> dict[str, Any]:
    response = client.post("/api/v1/keys", json={"role": role, "programs": programs}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def two_programs(acme: TestClient, admin: dict[str, str], acme_text: str) -> TestClient:
    """acme-sales (A) and acme-west (B), the same game, each with one event of rep-17."""
    west = acme_text.replace("program: acme-sales", "program: acme-west")
    response = acme.put(B, content=west, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201
    for url in (A, B):
        assert acme.post(f"{url}/events", json=event("won-1"), headers=admin).json()["status"] == "accepted"
    return acme


WRITE_BODIES: dict[tuple[str, str], Any] = {
    ("post", "/api/v1/programs/{program}/kudos/{kudos_id}/clawback"): {"note": "x"},
    ("post", "/api/v1/programs/{program}/events"): event("won-2"),
    ("put", "/api/v1/programs/{program}/participants/{participant_id}"): {"name": "Dana"},
    ("put", "/api/v1/programs/{program}/teams/{team_id}"): {"name": "East"},
    ("post", "/api/v1/programs/{program}/kudos"): {"from": "rep-17", "to": "rep-18", "amount": 1, "message": "x"},
    ("post", "/api/v1/programs/{program}/redemptions"): {
        "participant": "rep-17",
        "reward": "sticker",
        "idempotency_key": "r",
    },
    ("put", "/api/v1/programs/{program}/participants/{participant_id}/tier"): {"tier": "Pro", "note": "x"},
    ("put", "/api/v1/programs/{program}/participants/{participant_id}/status"): {"status": "active", "note": "x"},
    ("put", "/api/v1/programs/{program}/participants/{participant_id}/visibility"): {"hidden": True},
    ("post", "/api/v1/programs/{program}/adjustments"): {
        "participant": "rep-17",
        "currency": "coins",
        "amount": 1,
        "note": "x",
    },
    ("post", "/api/v1/programs/{program}/webhooks"): {"url": "http://127.0.0.1:9/hook", "events": ["badge.awarded"]},
    ("post", "/api/v1/programs/{program}/links"): {"kind": "participant", "participant": "rep-17"},
    ("post", "/api/v1/programs/{program}/events/{event_id}/clawback"): {"note": "x"},
}


def program_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) under /programs/{program}, as the OpenAPI document lists them."""
    paths = client.get("/openapi.json").json()["paths"]
    return sorted((m, p) for p, methods in paths.items() if "{program}" in p for m in methods)


def send(
    client: TestClient,
    method: str,
    template: str,
    program: str,
    acme_text: str,
    key: dict[str, str],
    ids: dict[str, str] | None = None,
) -> Any:
    """A valid request to one route of ``program``: path parameters filled (``ids``: those of things made
    for the test, by their placeholder), a body where one is needed."""
    for placeholder, value in (ids or {}).items():
        template = template.replace(placeholder, value)
    url = (
        template.replace("{program}", program)
        .replace("{event_id}", "won-1")
        .replace("{kudos_id}", "1")  # the plain kudos route sorts first: kudos 1 exists by then
        .replace("{participant_id}", "rep-17")
        .replace("{team_id}", "east")
        .replace("{key}", "revenue-month")
        .replace("{challenge}", "trial")
        .replace("{redemption_id}", "1" if template.endswith("/cancel") else "2")  # two made up front
    )
    if template.endswith("/stream"):
        url += "?since=0&limit=1"  # the feed is endless: take the first message (the fixture's events made some)
    url += REQUIRED_QUERIES.get(template, "")
    document = acme_text.replace("program: acme-sales", f"program: {program}")
    if (method, template) == ("put", "/api/v1/programs/{program}"):
        return client.request(method, url, content=document, headers={**key, "Content-Type": "application/yaml"})
    if (method, template) == ("post", "/api/v1/programs/{program}/simulate"):
        draft = load_document(document).model_dump(mode="json", by_alias=True, exclude_none=True)
        body = {"document": draft, "from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}
        return client.request(method, url, json=body, headers=key)
    return client.request(method, url, json=WRITE_BODIES.get((method, template)), headers=key)


def test_no_key_or_a_bad_key_is_401(acme: TestClient) -> None:
    for headers in ({}, bearer("wrong"), {"Authorization": "test-admin-key"}, bearer("lvl_abc_def")):
        response = acme.get(A, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 401
    assert acme.post(f"{A}/events", json=event("e-1")).status_code == 401
    assert acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}).status_code == 401


def test_public_routes_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/api/v1/schema/program").status_code == 200


def test_key_created_by_api_is_shown_once_and_works(acme: TestClient, admin: dict[str, str]) -> None:
    created = create_key(acme, admin, "read", ["acme-sales"])
    assert {"id", "key"} <= set(created)
    assert created["key"] != created["id"]
    assert acme.get(A, headers=bearer(created["key"])).status_code == 200
    # a secret that differs in its last character is not the key
    assert acme.get(A, headers=bearer(created["key"][:-1] + "x")).status_code == 401
    # a second key for the same scope is a different secret
    assert create_key(acme, admin, "read", ["acme-sales"])["key"] != created["key"]


def test_key_created_by_cli_works(acme: TestClient, admin: dict[str, str], db_url: str) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "create", "--role", "ingest", "--program", "acme-sales", "--database", db_url]
    )
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    key = bearer(secret)
    assert acme.post(f"{A}/events", json=event("e-1"), headers=key).json()["status"] == "accepted"
    assert acme.get(f"{A}/participants/rep-17", headers=key).status_code == 200
    assert (
        acme.post(
            f"{A}/adjustments", json={"participant": "rep-17", "currency": "xp", "amount": 1, "note": "x"}, headers=key
        ).status_code
        == 403
    )


def test_read_key_for_a_cannot_read_b_nor_write_a(two_programs: TestClient, admin: dict[str, str]) -> None:
    key = bearer(create_key(two_programs, admin, "read", ["acme-sales"])["key"])
    assert two_programs.get(f"{A}/participants/rep-17", headers=key).status_code == 200
    assert two_programs.get(f"{A}/leaderboards/revenue-month", headers=key).status_code == 200
    for url in (B, f"{B}/participants/rep-17", f"{B}/events/won-1", f"{B}/leaderboards/revenue-month"):
        response = two_programs.get(url, headers=key)
        assert response.status_code == 403, url
        assert response.headers["content-type"] == PROBLEM
    writes = [
        two_programs.post(f"{A}/events", json=event("won-2"), headers=key),
        two_programs.put(f"{A}/participants/rep-17", json={"name": "Mallory"}, headers=key),
        two_programs.put(f"{A}/teams/east", json={"name": "Mallory"}, headers=key),
    ]
    assert [w.status_code for w in writes] == [403, 403, 403]
    assert two_programs.get(f"{A}/events/won-2", headers=admin).status_code == 404
    assert two_programs.get(f"{A}/participants/rep-17", headers=admin).json()["name"] is None


def test_ingest_key_posts_events_but_cannot_apply_programs_or_adjust(
    acme: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    key = bearer(create_key(acme, admin, "ingest", ["acme-sales"])["key"])
    assert acme.post(f"{A}/events", json=event("e-1"), headers=key).json()["status"] == "accepted"
    changed = acme_text.replace("Acme Sales Arena", "Hacked Arena")
    applied = acme.put(A, content=changed, headers={**key, "Content-Type": "application/yaml"})
    assert applied.status_code == 403
    assert applied.headers["content-type"] == PROBLEM
    adjustment = {"participant": "rep-17", "currency": "coins", "amount": 1000, "note": "x"}
    assert acme.post(f"{A}/adjustments", json=adjustment, headers=key).status_code == 403
    assert acme.post("/api/v1/keys", json={"role": "admin", "programs": ["acme-sales"]}, headers=key).status_code == 403
    document = acme.get(A, headers=admin).json()
    assert (document["version"], document["document"]["name"]) == (1, "Acme Sales Arena")
    assert acme.get(f"{A}/participants/rep-17", headers=admin).json()["balances"] == {"xp": 220, "coins": 12}


REQUIRED_QUERIES = {
    "/api/v1/programs/{program}/insights/fairness": "?period=2026-11&currency=xp",
    "/api/v1/programs/{program}/insights/targets": "?challenge=five-a-week",
}

# Routes a CRM calls with its own scheme (a signature, Basic credentials, a token), not an API key:
# tests/api/test_sources.py checks that one program's source never takes another's deliveries.
VENDOR_AUTH = {("post", "/api/v1/programs/{program}/sources/{source}")}


def required_roles(client: TestClient) -> dict[tuple[str, str], str]:
    """Each program route's role, read from the dependency that checks it (``deps.program_access(role)``)."""
    found: dict[tuple[str, str], str] = {}

    def walk(route: APIRoute, dependant: Any) -> None:
        for sub in dependant.dependencies:
            call = sub.call
            if getattr(call, "__qualname__", "") == "program_access.<locals>.dependency":
                cells = dict(zip(call.__code__.co_freevars, (c.cell_contents for c in call.__closure__), strict=True))
                for method in route.methods:
                    found[(method.lower(), route.path)] = cells["role"]
            walk(route, sub)

    def routes(found_in: Any) -> Iterator[APIRoute]:  # routers included in the app, however FastAPI wraps them
        for route in found_in:
            if isinstance(route, APIRoute):
                yield route
            inner = getattr(route, "original_router", None)
            if inner is not None:
                yield from routes(inner.routes)

    for route in routes(client.app.routes):  # type: ignore[attr-defined]
        walk(route, route.dependant)
    return {(m, p if p.startswith("/api/v1/") else "/api/v1" + p): role for (m, p), role in found.items()}


def test_the_isolation_matrix(two_programs: TestClient, admin: dict[str, str], acme_text: str) -> None:
    """Every route under /programs/{program} × who calls (no key, a TV or participant link's token, a read,
    ingest or admin key of A) × A or B: B's routes refuse A's keys (403, never confirming what exists),
    a key below the route's role gets 403, no key or a link token 401, and the rest succeed."""
    routes = [r for r in program_routes(two_programs) if r not in VENDOR_AUTH]
    routes.sort(key=lambda route: route[0] == "delete")  # deletes last: the others still find what they delete
    assert len(routes) >= 30  # every route under /programs/{program}, as the OpenAPI document lists them
    needed = required_roles(two_programs)
    assert {needed[r] for r in routes} == {"read", "ingest", "admin"}, set(routes) - set(needed)
    keys = {role: bearer(create_key(two_programs, admin, role, ["acme-sales"])["key"]) for role in RANK}
    draft = "  - {key: trial, metric: deals_won, target: 2, every: week, reward: {coins: 5}, draft: true}\n"
    with_kudos = acme_text.replace("challenges:\n", "challenges:\n" + draft, 1)
    with_kudos = with_kudos.replace("rewards:\n", "rewards:\n  - {key: sticker, name: Sticker, cost: {coins: 1}}\n", 1)
    with_kudos += "kudos: {currency: coins, budget: {amount: 10, per: week}}\n"
    with_kudos += "tiers: {metric: revenue, window: year, steps: [{name: Base, at: 0}, {name: Pro, at: 100000}]}\n"
    applied = two_programs.put(A, content=with_kudos, headers={**admin, "Content-Type": "application/yaml"})
    assert applied.status_code == 200  # A gets kudos, a draft, a sticker and tiers, so those routes can succeed
    for n in (1, 2):  # redemptions 1 (to cancel) and 2 (to fulfil)
        made = two_programs.post(
            f"{A}/redemptions",
            json={"participant": "rep-17", "reward": "sticker", "idempotency_key": f"s{n}"},
            headers=admin,
        )
        assert made.status_code == 201 and made.json()["id"] == n, made.text
    made_ids = {}  # A's webhook and link, deleted below by A's admin
    tokens = []  # what links hand out: a page's token, never an API key
    for path, body in (
        ("webhooks", {"url": "http://127.0.0.1:9/first", "events": ["level.changed"]}),
        ("links", {"kind": "tv"}),
        ("links", {"kind": "participant", "participant": "rep-17"}),
    ):
        made = two_programs.post(f"{A}/{path}", json=body, headers=admin)
        assert made.status_code == 201, made.text
        made_ids.setdefault(f"{{{path[:-1]}_id}}", str(made.json()["id"]))
        tokens += [bearer(made.json()["token"])] if path == "links" else []
    for method, template in routes:
        where = (method, template)
        for nobody in ({}, *tokens):
            refused = send(two_programs, method, template, "acme-sales", with_kudos, nobody, made_ids)
            assert refused.status_code == 401, (*where, nobody, refused.text)
        for role, key in keys.items():
            denied = send(two_programs, method, template, "acme-west", with_kudos, key, made_ids)
            assert denied.status_code == 403, (*where, role, denied.text)
            assert denied.headers["content-type"] == PROBLEM
        for role, key in keys.items():  # read, ingest, admin: a route allowed to one is allowed to the next
            answer = send(two_programs, method, template, "acme-sales", with_kudos, key, made_ids)
            if RANK[role] >= RANK[needed[where]]:
                assert answer.status_code < 300, (*where, role, answer.text)
            else:
                assert answer.status_code == 403, (*where, role, answer.text)
    key = keys["admin"]
    # B is untouched: no version, no event, no participant change, no team, no adjustment
    state = two_programs.get(B, headers=admin).json()
    assert state["version"] == 1
    assert two_programs.get(f"{B}/events/won-2", headers=admin).status_code == 404
    west = two_programs.get(f"{B}/participants/rep-17", headers=admin).json()
    assert (west["name"], west["balances"]) == (None, {"xp": 220, "coins": 12})
    # and keys: A's admin can neither make nor revoke a key for B
    assert (
        two_programs.post("/api/v1/keys", json={"role": "read", "programs": ["acme-west"]}, headers=key).status_code
        == 403
    )
    west_key = create_key(two_programs, admin, "read", ["acme-west"])
    assert two_programs.delete(f"/api/v1/keys/{west_key['id']}", headers=key).status_code == 403
    assert two_programs.get(B, headers=bearer(west_key["key"])).status_code == 200


def test_a_key_for_every_program_sees_both(two_programs: TestClient, admin: dict[str, str]) -> None:
    key = bearer(create_key(two_programs, admin, "read", ["acme-sales", "acme-west"])["key"])
    assert two_programs.get(A, headers=key).status_code == 200
    assert two_programs.get(B, headers=key).status_code == 200


def test_revoked_key_is_401(acme: TestClient, admin: dict[str, str]) -> None:
    created = create_key(acme, admin, "read", ["acme-sales"])
    key = bearer(created["key"])
    assert acme.get(A, headers=key).status_code == 200
    revoked = acme.delete(f"/api/v1/keys/{created['id']}", headers=admin)
    assert revoked.status_code in (200, 204)
    response = acme.get(A, headers=key)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert acme.delete(f"/api/v1/keys/{created['id']}", headers=admin).status_code == 404


def test_a_read_key_cannot_make_or_revoke_keys(acme: TestClient, admin: dict[str, str]) -> None:
    reader = bearer(create_key(acme, admin, "read", ["acme-sales"])["key"])
    other = create_key(acme, admin, "read", ["acme-sales"])
    assert (
        acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=reader).status_code == 403
    )
    assert acme.delete(f"/api/v1/keys/{other['id']}", headers=reader).status_code == 403
    assert acme.get(A, headers=bearer(other["key"])).status_code == 200


def test_invalid_key_request_is_422(acme: TestClient, admin: dict[str, str]) -> None:
    response = acme.post("/api/v1/keys", json={"role": "root", "programs": ["acme-sales"]}, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert "role" in [e["path"] for e in response.json()["errors"]]
