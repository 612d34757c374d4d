"""The audit log over HTTP and the CLI: who changed what, newest first, paged, admin only."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from levelup.cli.main import app
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES, event

A = "/api/v1/programs/acme-sales"


def test_admin_actions_are_listed_newest_first_and_paged(acme: TestClient, admin: dict[str, str]) -> None:
    for n in range(3):
        made = acme.post(
            f"{A}/adjustments",
            json={"participant": "rep-17", "currency": "coins", "amount": 5 + n, "note": f"bonus {n}"},
            headers=admin,
        )
        assert made.status_code == 201, made.text
    hook = acme.post(f"{A}/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["badge.awarded"]}, headers=admin)
    assert hook.status_code == 201, hook.text

    first = acme.get(f"{A}/audit?limit=2", headers=admin)
    assert first.status_code == 200, first.text
    body: dict[str, Any] = first.json()
    assert [e["action"] for e in body["entries"]] == ["webhook.create", "ledger.adjust"]
    assert body["entries"][1]["detail"]["note"] == "bonus 2"
    assert {e["actor"] for e in body["entries"]} == {"bootstrap-admin"}  # the key of LEVELUP_ADMIN_KEY
    rest = acme.get(f"{A}/audit?before={body['next_before']}&limit=50", headers=admin).json()
    assert [e["action"] for e in rest["entries"]] == ["ledger.adjust", "ledger.adjust", "program.apply"]
    assert rest["next_before"] is None
    ids = [e["id"] for e in body["entries"] + rest["entries"]]
    assert ids == sorted(ids, reverse=True)


def test_only_an_admin_reads_it(acme: TestClient, admin: dict[str, str]) -> None:
    made = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()
    denied = acme.get(f"{A}/audit", headers={"Authorization": f"Bearer {made['key']}"})
    assert denied.status_code == 403
    assert acme.get(f"{A}/audit").status_code == 401
    assert acme.get(f"{A}/audit?limit=0", headers=admin).status_code == 422


def test_the_cli_prints_it(acme: TestClient, admin: dict[str, str]) -> None:
    runtime: Runtime = acme.app.state.runtime  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, ["audit", "acme-sales", "--json", "--database", runtime.db.url])
    assert result.exit_code == 0, result.output
    (entry,) = [json.loads(line) for line in result.output.splitlines()]
    assert entry["action"] == "program.apply" and entry["detail"] == {"version": 1}
    table = CliRunner().invoke(app, ["audit", "acme-sales", "--database", runtime.db.url])
    assert table.exit_code == 0 and "program.apply" in table.output
    missing = CliRunner().invoke(app, ["audit", "nope", "--database", runtime.db.url])
    assert missing.exit_code != 0


def test_keys_links_and_redemptions_are_audited(acme: TestClient, admin: dict[str, str]) -> None:
    text = (
        (EXAMPLES / "acme-sales.yaml")
        .read_text()
        .replace("rewards:\n", "rewards:\n  - {key: pin, name: Pin, cost: {coins: 1}}\n")
    )
    assert acme.put(A, content=text, headers={**admin, "Content-Type": "application/yaml"}).status_code == 200
    key = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()
    assert acme.delete(f"/api/v1/keys/{key['id']}", headers=admin).status_code in (200, 204)
    link = acme.post(f"{A}/links", json={"kind": "tv"}, headers=admin).json()
    assert acme.delete(f"{A}/links/{link['id']}", headers=admin).status_code in (200, 204)
    acme.post(f"{A}/events", json=event("won-1"), headers=admin)
    for n, move in ((1, "cancel"), (2, "fulfil")):
        made = acme.post(
            f"{A}/redemptions",
            json={"participant": "rep-17", "reward": "pin", "idempotency_key": f"k{n}"},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        assert acme.post(f"{A}/redemptions/{made.json()['id']}/{move}", headers=admin).status_code == 200
    entries = acme.get(f"{A}/audit", headers=admin).json()["entries"]
    assert [e["action"] for e in entries][:6] == [
        "redemption.fulfil",
        "redemption.cancel",
        "link.revoke",
        "link.create",
        "key.revoke",
        "key.create",
    ]
    assert entries[0]["detail"] == {"id": 2, "participant": "rep-17", "reward": "pin"}
    assert entries[5]["detail"] == {"id": key["id"], "role": "read", "programs": ["acme-sales"]}
    assert entries[3]["detail"]["id"] == link["id"] and entries[3]["detail"]["kind"] == "tv"
