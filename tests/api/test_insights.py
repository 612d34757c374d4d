"""Insight over HTTP: POST …/simulate (admin) and GET …/insights/{kind} (read), against hand-computed figures."""

from __future__ import annotations

import json
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.conftest import event

P = "/api/v1/programs/acme-sales"
WINDOW = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


def document(text: str) -> dict[str, Any]:
    """A YAML document as the JSON a client sends (dates as strings)."""
    loaded: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(text), default=str))
    return loaded


def send(client: TestClient, admin: dict[str, str], events: list[dict[str, Any]]) -> None:
    response = client.post(f"{P}/events", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}


def test_simulate_a_draft_beside_the_document_in_force(acme: TestClient, admin: dict[str, str], acme_text: str) -> None:
    send(acme, admin, [event("d1", data={"amount": 12000}), event("d2", participant="rep-9", data={"amount": 3000})])
    acme.put(f"{P}/participants/rep-17", json={"name": "Dana", "teams": ["east"]}, headers=admin)
    draft = document(acme_text)
    draft["rules"][2]["award"]["xp"] = "2 * (100 + data.amount / 100)"
    response = acme.post(f"{P}/simulate", json={"document": draft, **WINDOW}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window"] == {
        **WINDOW | {"from": "2026-11-01T00:00:00+00:00", "to": "2026-12-01T00:00:00+00:00"},
        "events": 2,
    }
    # 100 + 12000/100 = 220 XP and 100 + 3000/100 = 130 XP now; twice that in the draft
    assert body["current"]["participants"] == {"rep-17": {"xp": 220, "coins": 12}, "rep-9": {"xp": 130, "coins": 3}}
    assert body["draft"]["totals"] == {"xp": 700, "coins": 15}
    assert body["draft"]["distribution"]["xp"] | {} == {
        "p10": 260,
        "p25": 260,
        "p50": 260,
        "p75": 440,
        "p90": 440,
        "p99": 440,
        "min": 260,
        "max": 440,
        "mean": 350,
    }
    texts = [c["text"] for c in body["changes"]]
    assert texts == ["XP in all: 350 → 700 (+350)", "Dana: +220 XP", "rep-9: +130 XP"]
    board = next(b for b in body["draft"]["leaderboards"] if b["key"] == "xp-all")
    assert [(e["rank"], e["id"], e["value"]) for e in board["entries"]] == [(1, "rep-17", 440), (2, "rep-9", 260)]
    assert acme.get(f"{P}/participants/rep-17", headers=admin).json()["balances"] == {"xp": 220, "coins": 12}


def test_simulate_is_for_admins_and_says_what_is_wrong(acme: TestClient, admin: dict[str, str], acme_text: str) -> None:
    key = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()["key"]
    draft = document(acme_text)
    reader = {"Authorization": f"Bearer {key}"}
    assert acme.post(f"{P}/simulate", json={"document": draft, **WINDOW}, headers=reader).status_code == 403
    draft["rules"][0]["award"] = {"xpp": 5}
    bad = acme.post(f"{P}/simulate", json={"document": draft, **WINDOW}, headers=admin)
    assert bad.status_code == 422
    assert any(e["path"].startswith("rules[0].award") for e in bad.json()["errors"])
    backwards = {"document": document(acme_text), "from": WINDOW["to"], "to": WINDOW["from"]}
    assert acme.post(f"{P}/simulate", json=backwards, headers=admin).status_code == 422
