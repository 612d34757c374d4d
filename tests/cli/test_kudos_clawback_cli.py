"""``levelup clawback PROGRAM --kudos ID --note TEXT``: a kudos clawback from the CLI, audited as ``cli``, once;
exactly one of an event id or ``--kudos``."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from levelup.cli.main import app as cli
from tests.conftest import event

P = "/api/v1/programs/acme-sales"
KUDOS = "kudos: {currency: coins, budget: {amount: 50, per: week}}\n"


def test_the_cli_claws_back_a_kudos_as_cli(
    client: TestClient, admin: dict[str, str], acme_text: str, db_url: str
) -> None:
    put = client.put(P, content=acme_text + KUDOS, headers={**admin, "Content-Type": "application/yaml"})
    assert put.status_code == 201, put.text
    assert client.post(f"{P}/events", json=event("d1"), headers=admin).json()["status"] == "accepted"
    body = {"from": "ann", "to": "rep-17", "amount": 20, "message": "thanks"}
    kudos_id = client.post(f"{P}/kudos", json=body, headers=admin).json()["id"]
    assert client.get(f"{P}/participants/rep-17", headers=admin).json()["balances"]["coins"] == 12 + 20

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["clawback", "acme-sales", *args, "--database", db_url])

    for args, says in (
        (["--note", "ring"], "give an event id or --kudos"),  # neither
        (["d1", "--kudos", str(kudos_id), "--note", "ring"], "not both"),  # both
        (["--kudos", str(kudos_id), "--note", "  "], "note"),
        (["--kudos", "0", "--note", "ring"], "kudos"),
        (["--kudos", "999", "--note", "ring"], "no kudos 999"),
    ):
        refused = run(*args)
        assert refused.exit_code == 1, (args, refused.output)
        assert says in refused.output, (args, refused.output)

    done = run("--kudos", str(kudos_id), "--note", "review 42")
    assert done.exit_code == 0, done.output
    assert f"kudos {kudos_id} clawed back from rep-17 as kudos-clawback:{kudos_id}: -20 coins" in " ".join(
        done.output.split()
    )
    assert client.get(f"{P}/participants/rep-17", headers=admin).json()["balances"]["coins"] == 12
    again = run("--kudos", str(kudos_id), "--note", "review 42", "--json")
    assert again.exit_code == 0, again.output
    answer = json.loads(again.output)
    assert (answer["status"], answer["by"], answer["note"], answer["taken"]) == (
        "duplicate",
        "cli",
        "review 42",
        {"coins": -20},
    )
    text = run("--kudos", str(kudos_id), "--note", "review 42")
    assert "already clawed back by cli" in text.output
    assert client.get(f"{P}/participants/rep-17", headers=admin).json()["balances"]["coins"] == 12
    entries = client.get(f"{P}/audit", headers=admin).json()["entries"]
    [audited] = [e for e in entries if e["action"] == "kudos.clawback"]
    assert audited["actor"] == "cli" and audited["detail"]["note"] == "review 42"
    # an event id alone still claws back an event
    event_done = run("d1", "--note", "same deal twice")
    assert event_done.exit_code == 0 and "clawback:d1" in event_done.output
    assert client.get(f"{P}/participants/rep-17", headers=admin).json()["balances"]["coins"] == 0
