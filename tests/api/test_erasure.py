"""Erasure (``DELETE …/participants/{id}``): the person is gone from every stored row, the books are not.

One participant with a name, attributes, personal event fields, a reversal, kudos both ways, an adjustment
with a note, a redemption, a case and webhook notifications is erased; then every row of every table is
searched for anything they gave, every balance and the liability are compared with before, replay must
still equal the stored state, and the audit names only the pseudonym. Also: the opt-out from public boards.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from levelup.cases import service as cases
from levelup.cli.main import app as cli
from levelup.events.replay import replay
from levelup.participants import visibility
from levelup.participants.erasure import pseudonym
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

PERSON = "alice.smith@example.com"
SECRETS = (PERSON, "Alice Smith", "555-0100", "alice@home.example", "thanks Bob", "for Alice's lost deal", "my deal")
BASE = "/api/v1/programs/acme-sales"


def _apply(client: TestClient, admin: dict[str, str], acme_text: str, **extra: Any) -> Any:
    document = yaml.safe_load(acme_text) | extra
    return client.put(BASE, content=yaml.safe_dump(document), headers={**admin, "Content-Type": "application/yaml"})


def _figures(client: TestClient, admin: dict[str, str], runtime: Runtime) -> dict[str, Any]:
    """What erasure must not move: every position (by internal id), ledger sums, lots and the liability."""
    with runtime.db.read() as connection:
        positions = sorted(tuple(r) for r in connection.execute(select(t.positions)))
        entries = sorted(
            (r.participant_id, r.currency, r.amount, r.kind) for r in connection.execute(select(t.ledger_entries))
        )
        lots = sorted((r.participant_id, r.amount, r.remaining) for r in connection.execute(select(t.lots)))
    liability = client.get(f"{BASE}/reports/liability", headers=admin).json()["currencies"]
    return {"positions": positions, "entries": entries, "lots": lots, "liability": liability}


def _everything(runtime: Runtime) -> str:
    """Every stored row of every table, as text."""
    with runtime.db.read() as connection:
        return "\n".join(
            repr(tuple(row)) for table in t.metadata.sorted_tables for row in connection.execute(select(table))
        )


def test_erasure_leaves_nothing_of_the_person_and_every_figure_as_it_was(
    client: TestClient, admin: dict[str, str], acme_text: str, runtime: Runtime
) -> None:
    personal = {"deal.won": ["data.email"], "activity.logged": ["data.contact.phone"]}
    kudos = {"currency": "coins", "budget": {"amount": 100, "per": "month"}}
    assert _apply(client, admin, acme_text, personal=personal, kudos=kudos).status_code == 201
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["award.granted", "kudos.given"]}
    assert client.post(f"{BASE}/webhooks", json=hook, headers=admin).status_code == 201
    profile = {"name": "Alice Smith", "attributes": {"quota": 50000, "home": "alice@home.example"}, "teams": ["east"]}
    assert client.put(f"{BASE}/participants/{PERSON}", json=profile, headers=admin).status_code == 201
    sent = [
        event("e1", participant=PERSON, data={"amount": 600000, "email": "alice@home.example"}),
        event("e2", participant=PERSON, data={"amount": 24000, "email": "alice@home.example"}),
        event("e3", participant="bob", data={"amount": 12000, "email": "bob@work.example"}),
        event(
            "e4", "activity.logged", PERSON, data={"kind": "call", "duration_s": 90, "contact": {"phone": "555-0100"}}
        ),
        event("e5", participant=PERSON, reverses="e2", data={}),
    ]
    for body in sent:
        assert client.post(f"{BASE}/events", json=body, headers=admin).status_code == 200
    give = [{"from": PERSON, "to": "bob", "message": "thanks Bob"}, {"from": "bob", "to": PERSON, "message": "my deal"}]
    for body in give:
        assert client.post(f"{BASE}/kudos", json=body | {"amount": 5}, headers=admin).status_code == 201
    adjust = {"participant": PERSON, "currency": "coins", "amount": 400, "note": "for Alice's lost deal"}
    assert client.post(f"{BASE}/adjustments", json=adjust, headers=admin).status_code == 201
    redeem = {"participant": PERSON, "reward": "gift-card-25", "idempotency_key": "r1"}
    assert client.post(f"{BASE}/redemptions", json=redeem, headers=admin).status_code == 201
    with runtime.db.write() as connection:
        program = programs.find(connection, "acme-sales")
        internal = connection.execute(
            select(t.participants.c.id).where(t.participants.c.external_id == PERSON)
        ).scalar_one()
        cases.open_case(connection, program, internal, "Alice Smith here: my deal is missing")
    before = _figures(client, admin, runtime)
    assert all(secret in _everything(runtime) for secret in SECRETS)  # the search below would find them

    erased = client.delete(f"{BASE}/participants/{PERSON}", headers=admin)
    assert erased.status_code == 200, erased.text
    alias = erased.json()["participant"]
    assert alias == pseudonym(program.id, internal)
    stored = _everything(runtime)
    assert [secret for secret in SECRETS if secret in stored] == []
    assert "bob@work.example" in stored  # only their events lose personal fields
    assert _figures(client, admin, runtime) == before
    report = replay(runtime, "acme-sales")
    assert report.ok, report.mismatches
    assert client.get(f"{BASE}/participants/{alias}", headers=admin).json()["balances"]["coins"] == 600 + 5 + 400 - 500
    newest = client.get(f"{BASE}/audit", headers=admin).json()["entries"][0]
    expected = ("participant.erase", "bootstrap-admin", alias)
    assert (newest["action"], newest["actor"], newest["detail"]["participant"]) == expected

    again = client.delete(f"{BASE}/participants/{alias}", headers=admin)
    assert again.json() == {"participant": alias, "rewritten": {}}
    assert client.delete(f"{BASE}/participants/{PERSON}", headers=admin).status_code == 404
    # the old id is not known any more: a later event for it starts a new participant, with no history
    assert client.post(f"{BASE}/events", json=event("e6", participant=PERSON), headers=admin).status_code == 200
    assert client.get(f"{BASE}/participants/{PERSON}", headers=admin).json()["balances"]["coins"] == 12


def test_a_personal_field_scoring_reads_is_refused_at_its_path(
    client: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    personal = {"deal.won": ["data.amount", "data.email", "data.email"], "x": ["email"]}
    refused = _apply(client, admin, acme_text, personal=personal)
    assert refused.status_code == 422
    errors = {(e["path"], e["message"]) for e in refused.json()["errors"] if e["path"].startswith("personal.x")}
    assert errors == {
        ("personal.x[0]", "String should match pattern '^data(\\.[A-Za-z_][A-Za-z0-9_]*){1,8}$'"),
    }
    refused = _apply(client, admin, acme_text, personal={"deal.won": ["data.amount", "data.email", "data.email"]})
    assert {(e["path"], e["message"]) for e in refused.json()["errors"]} == {
        ("personal.deal.won[0]", "metrics[1].value reads it: erasure deletes a personal field, so scoring may not"),
        ("personal.deal.won[0]", "rules[2].award.xp reads it: erasure deletes a personal field, so scoring may not"),
        ("personal.deal.won[0]", "rules[2].award.coins reads it: erasure deletes a personal field, so scoring may not"),
        ("personal.deal.won[2]", '"data.email" is listed twice'),
    }
    assert client.get(BASE, headers=admin).status_code == 404  # nothing applied


def test_a_hidden_participant_keeps_the_rank_on_a_public_board_without_a_name(
    acme: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    for n, (who, amount) in enumerate((("ann", 3000), ("ben", 2000), ("cid", 1000))):
        assert (
            acme.post(
                f"{BASE}/events", json=event(f"h{n}", participant=who, data={"amount": amount}), headers=admin
            ).status_code
            == 200
        )
    hide = acme.put(f"{BASE}/participants/ben/visibility", json={"hidden": True}, headers=admin)
    assert hide.json() == {"participant": "ben", "hidden": True}
    bad = acme.put(f"{BASE}/participants/ben/visibility", json={"hidden": "maybe"}, headers=admin)
    assert (bad.status_code, [e["path"] for e in bad.json()["errors"]]) == (422, ["hidden"])
    assert acme.put(f"{BASE}/participants/nobody/visibility", json={"hidden": True}, headers=admin).status_code == 404
    board = acme.get(f"{BASE}/leaderboards/xp-all", headers=admin).json()["entries"]
    with runtime.db.read() as connection:
        shown = visibility.masked(connection, programs.find(connection, "acme-sales").id, board)
    assert [(e["rank"], e["id"]) for e in shown] == [(1, "ann"), (2, "hidden"), (3, "cid")]
    assert [e["value"] for e in shown] == [e["value"] for e in board]


def test_the_cli_erases_and_prints_the_pseudonym(acme: TestClient, admin: dict[str, str], db_url: str) -> None:
    assert acme.post(f"{BASE}/events", json=event("c1", participant="carl"), headers=admin).status_code == 200
    erase = ["participants", "erase", "acme-sales", "carl", "--database", db_url]
    done = CliRunner().invoke(cli, erase)
    assert done.exit_code == 0 and done.stdout.strip().startswith("erased-"), done.output
    profile = acme.get(f"{BASE}/participants/{done.stdout.strip()}", headers=admin).json()
    assert profile["balances"] == {"xp": 220, "coins": 12}
    again = CliRunner().invoke(cli, erase)
    assert again.exit_code == 1 and "no participant" in again.output
