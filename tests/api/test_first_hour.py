"""The first hour of a new user (docs/api.md): a landing page, Swagger UI served locally, and lists of
programs, participants (search, paging), events and keys."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import event

A = "/api/v1/programs/acme-sales"


def test_the_landing_page_says_what_is_here(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for link in ("/docs", "/openapi.json", "/api/v1/schema/program", "/healthz"):
        assert f'href="{link}"' in page.text


def test_swagger_ui_is_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert sources and all(s.startswith("/") for s in sources), sources
    for asset in sources:
        assert client.get(asset).status_code == 200, asset


def test_programs_are_listed_as_far_as_a_key_may_read(acme: TestClient, admin: dict[str, str]) -> None:
    assert acme.get("/api/v1/programs", headers=admin).json() == {"programs": [{"program": "acme-sales", "version": 1}]}
    made = acme.post("/api/v1/keys", json={"role": "read", "programs": ["other"]}, headers=admin).json()
    other = {"Authorization": f"Bearer {made['key']}"}
    assert acme.get("/api/v1/programs", headers=other).json() == {"programs": []}


def test_participants_are_searched_and_paged(acme: TestClient, admin: dict[str, str]) -> None:
    for n in range(7):
        body = {"name": f"Rep {n}" if n % 2 else f"Closer {n}"}
        assert acme.put(f"{A}/participants/rep-{n}", json=body, headers=admin).status_code == 201
    seen: list[str] = []
    url: str | None = f"{A}/participants?limit=3"
    while url:
        page = acme.get(url, headers=admin).json()
        seen += [p["id"] for p in page["participants"]]
        url = page["next"]
    assert seen == [f"rep-{n}" for n in range(7)]
    found = acme.get(f"{A}/participants", params={"q": "CLOSER"}, headers=admin).json()["participants"]
    assert [p["id"] for p in found] == ["rep-0", "rep-2", "rep-4", "rep-6"]
    assert acme.get(f"{A}/participants", params={"q": "%"}, headers=admin).json()["participants"] == []


def test_events_are_listed_newest_first_and_paged(acme: TestClient, admin: dict[str, str]) -> None:
    for n in range(5):
        sent = acme.post(f"{A}/events", json=event(f"e-{n}", participant=f"rep-{n % 2}"), headers=admin)
        assert sent.status_code == 200
    seen: list[str] = []
    url: str | None = f"{A}/events?limit=2"
    while url:
        page = acme.get(url, headers=admin).json()
        seen += [e["id"] for e in page["events"]]
        url = page["next"]
    assert seen == ["e-4", "e-3", "e-2", "e-1", "e-0"]
    mine = acme.get(f"{A}/events", params={"participant": "rep-1"}, headers=admin).json()["events"]
    assert [e["id"] for e in mine] == ["e-3", "e-1"]


def test_keys_are_listed_without_their_secrets(acme: TestClient, admin: dict[str, str]) -> None:
    made = acme.post("/api/v1/keys", json={"role": "ingest", "programs": ["acme-sales"]}, headers=admin).json()
    listed = acme.get("/api/v1/keys", headers=admin)
    assert listed.status_code == 200
    assert [k["id"] for k in listed.json()["keys"]] == [made["id"]]
    assert made["key"] not in listed.text
    ingest = {"Authorization": f"Bearer {made['key']}"}
    assert acme.get("/api/v1/keys", headers=ingest).status_code == 403
