"""Clawback over HTTP and the CLI: an audited reversal of reason clawback, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from levelup.cli.main import app as cli
from levelup.events.replay import replay
from levelup.runtime import Runtime
from tests.conftest import event

P = "/api/v1/programs/acme-sales"


def balances(client: TestClient, admin: dict[str, str], who: str = "rep-17") -> dict[str, int]:
    found: dict[str, int] = client.get(f"{P}/participants/{who}", headers=admin).json()["balances"]
    return found


def clawbacks(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    entries = client.get(f"{P}/audit", headers=admin).json()["entries"]
    return [e for e in entries if e["action"] == "events.clawback"]


def test_clawback_takes_the_awards_back_audited_visible_and_once(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    sent = acme.post(f"{P}/events", json={"events": [event("d1"), event("d2", data={"amount": 3000})]}, headers=admin)
    assert sent.status_code == 200, sent.text
    # 12,000 and 3,000: XP 100 + amount/100 = 220 + 130, coins amount/1000 = 12 + 3
    assert balances(acme, admin) == {"xp": 350, "coins": 15}
    reader = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()["key"]
    forbidden = acme.post(f"{P}/events/d1/clawback", json={"note": "x"}, headers={"Authorization": f"Bearer {reader}"})
    assert forbidden.status_code == 403

    done = acme.post(f"{P}/events/d1/clawback", json={"note": "same deal twice"}, headers=admin)
    assert done.status_code == 201, done.text
    body = done.json()
    assert {k: body[k] for k in ("status", "event", "clawback", "participant", "reason", "note", "by", "taken")} == {
        "status": "accepted",
        "event": "d1",
        "clawback": "clawback:d1",
        "participant": "rep-17",
        "reason": "clawback",
        "note": "same deal twice",
        "by": "bootstrap-admin",
        "taken": {"xp": -220, "coins": -12},
    }
    assert balances(acme, admin) == {"xp": 130, "coins": 3}
    [audited] = clawbacks(acme, admin)
    assert audited["actor"] == "bootstrap-admin"
    assert audited["detail"] == {
        "event": "d1",
        "clawback": "clawback:d1",
        "participant": "rep-17",
        "note": "same deal twice",
        "taken": {"xp": -220, "coins": -12},
    }
    ledger = acme.get(f"{P}/participants/rep-17/ledger", headers=admin).json()["entries"]
    taken = [e for e in ledger if e["event"] == "clawback:d1"]
    assert sorted((e["currency"], e["amount"], e["kind"]) for e in taken) == [
        ("coins", -12, "reversal"),
        ("xp", -220, "reversal"),
    ]
    assert all(e["explain"].startswith("clawback of event d1: ") for e in taken)
    assert acme.get(f"{P}/events/d1", headers=admin).json()["reversed_by"] == "clawback:d1"

    again = acme.post(f"{P}/events/d1/clawback", json={"note": "again"}, headers=admin)
    assert again.status_code == 200
    assert again.json() | {"status": "accepted"} == body  # the first clawback, unchanged
    assert again.json()["status"] == "duplicate"
    assert balances(acme, admin) == {"xp": 130, "coins": 3}
    assert len(clawbacks(acme, admin)) == 1
    report = replay(runtime, "acme-sales")
    assert report.mismatches == [] and report.events == 3


def test_clawback_refuses_what_it_cannot_take_back(acme: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    events = [event("d1"), event("d2"), event("r2", "deal.lost", reverses="d2"), event("d3")]
    events.append(event("r3", "deal.lost", reverses="d3", portion=0.5))
    assert acme.post(f"{P}/events", json={"events": events}, headers=admin).status_code == 200
    missing = acme.post(f"{P}/events/nope/clawback", json={"note": "x"}, headers=admin)
    assert missing.status_code == 404
    reversal = acme.post(f"{P}/events/r2/clawback", json={"note": "x"}, headers=admin)
    assert reversal.status_code == 422 and reversal.json()["errors"][0]["path"] == "event"
    reversed_already = acme.post(f"{P}/events/d2/clawback", json={"note": "x"}, headers=admin)
    assert reversed_already.status_code == 409 and "r2" in reversed_already.json()["detail"]
    forged = event("clawback:d1", "levelup.clawback", reverses="d1")  # only the audited way writes a clawback
    refused = acme.post(f"{P}/events", json={"events": [forged]}, headers=admin).json()["results"][0]
    assert refused["status"] == "rejected" and refused["errors"][0]["path"] == "type"
    empty = acme.post(f"{P}/events/d1/clawback", json={"note": ""}, headers=admin)
    assert empty.status_code == 422 and empty.json()["errors"][0]["path"] == "note"
    # d3 (220 XP, 12 coins) was half refunded (110, 6): the clawback takes the other half
    assert balances(acme, admin) == {"xp": 220 + 110, "coins": 12 + 6}
    half = acme.post(f"{P}/events/d3/clawback", json={"note": "rest of it"}, headers=admin)
    assert half.status_code == 201 and half.json()["taken"] == {"xp": -110, "coins": -6}
    assert balances(acme, admin) == {"xp": 220, "coins": 12}
    assert replay(runtime, "acme-sales").mismatches == []


def test_the_cli_claws_back_as_cli(acme: TestClient, admin: dict[str, str], db_url: str) -> None:
    assert acme.post(f"{P}/events", json={"events": [event("d1")]}, headers=admin).status_code == 200
    url = db_url
    done = CliRunner().invoke(cli, ["clawback", "acme-sales", "d1", "--note", "review 42", "--database", url])
    assert done.exit_code == 0, done.output
    assert "clawback:d1" in done.output and "-220 xp" in done.output
    again = CliRunner().invoke(cli, ["clawback", "acme-sales", "d1", "--note", "review 42", "--database", url])
    assert again.exit_code == 0 and "already clawed back by cli" in again.output
    assert balances(acme, admin) == {"xp": 0, "coins": 0}
    [audited] = clawbacks(acme, admin)
    assert audited["actor"] == "cli" and audited["detail"]["note"] == "review 42"
