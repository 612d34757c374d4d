"""Kudos: within the giver's periodic budget, never to oneself, credited to the receiver's ledger."""

from __future__ import annotations

from fastapi.testclient import TestClient

P = "/api/v1/programs/acme-sales"
KUDOS = "kudos: {currency: coins, budget: {amount: 50, per: week}}\n"


def enable(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    response = client.put(P, content=acme_text + KUDOS, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text


def give(client: TestClient, admin: dict[str, str], amount: int, to: str = "bob", **extra: str) -> tuple[int, dict]:
    body = {"from": "ann", "to": to, "amount": amount, "message": "thanks for the demo", **extra}
    response = client.post(f"{P}/kudos", json=body, headers=admin)
    return response.status_code, response.json()


def test_kudos_within_budget_credit_the_receiver(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    enable(client, admin, acme_text)
    assert give(client, admin, 30)[0] == 201
    status, body = give(client, admin, 20)
    assert (status, body["budget_left"]) == (201, 0)
    status, body = give(client, admin, 1)  # 50 a week: the budget is spent
    assert status == 409 and body["code"] == "kudos_budget" and body["errors"][0]["path"] == "amount"
    bob = client.get(f"{P}/participants/bob", headers=admin).json()
    assert bob["balances"]["coins"] == 50
    assert bob["level"]["value"] == 0  # kudos do not count toward levels
    entries = client.get(f"{P}/participants/bob/ledger", headers=admin).json()["entries"]
    assert [(e["kind"], e["amount"]) for e in entries] == [("kudos", 20), ("kudos", 30)]
    ann = client.get(f"{P}/participants/ann", headers=admin).json()
    assert ann["balances"]["coins"] == 0  # the giver's budget is not their balance


def test_no_kudos_to_oneself_and_retries_are_safe(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    enable(client, admin, acme_text)
    status, body = give(client, admin, 5, to="ann")
    assert status == 422 and body["errors"][0]["path"] == "to"
    assert give(client, admin, 10, idempotency_key="k-1")[1]["status"] == "accepted"
    assert give(client, admin, 10, idempotency_key="k-1")[1]["status"] == "duplicate"
    assert give(client, admin, 11, idempotency_key="k-1")[0] == 409
    assert client.get(f"{P}/participants/bob", headers=admin).json()["balances"]["coins"] == 10


def test_kudos_need_the_program_to_define_them(acme: TestClient, admin: dict[str, str]) -> None:
    status, body = give(acme, admin, 5)
    assert status == 409 and body["code"] == "kudos_disabled"
