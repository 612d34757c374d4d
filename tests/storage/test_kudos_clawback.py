"""Kudos clawback (issue 12, anti-gaming): an admin takes back what a ring's kudos paid, one by one, on SQLite
and PostgreSQL: compensating ledger entries of kind clawback, audited with the actor, once; what the receiver
spent becomes arrears; the giver's budget is not given back; replay still agrees with the stored balances."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from levelup.events.replay import replay
from levelup.runtime import Runtime

P = "/api/v1/programs/acme-sales"
PROBLEM = "application/problem+json"
KUDOS = "kudos: {currency: coins, budget: {amount: 100, per: week}}\n"
STICKER = "rewards:\n  - {key: sticker, name: Sticker, cost: {coins: 25}}\n"


def apply(client: TestClient, admin: dict[str, str], acme_text: str, key: str = "acme-sales") -> None:
    text = acme_text.replace("program: acme-sales", f"program: {key}").replace("rewards:\n", STICKER, 1) + KUDOS
    put = client.put(f"/api/v1/programs/{key}", content=text, headers={**admin, "Content-Type": "application/yaml"})
    assert put.status_code == 201, put.text


def give(client: TestClient, admin: dict[str, str], giver: str, receiver: str, amount: int = 10, url: str = P) -> int:
    body = {"from": giver, "to": receiver, "amount": amount, "message": "great call"}
    made = client.post(f"{url}/kudos", json=body, headers=admin)
    assert made.status_code == 201, made.text
    kudos_id: int = made.json()["id"]
    return kudos_id


def person(client: TestClient, admin: dict[str, str], who: str) -> tuple[int, dict[str, int]]:
    """Coins held, and arrears per currency."""
    body = client.get(f"{P}/participants/{who}", headers=admin).json()
    return body["balances"]["coins"], body["arrears"]


def clawback(client: TestClient, headers: dict[str, str], kudos_id: int, note: str = "kudos ring") -> Any:
    return client.post(f"{P}/kudos/{kudos_id}/clawback", json={"note": note}, headers=headers)


def audited(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    entries = client.get(f"{P}/audit?limit=100", headers=admin).json()["entries"]
    return [e for e in entries if e["action"] == "kudos.clawback"]


def rings(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    """The ``kudos_ring`` flags of the last day."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    window = f"from={(now - dt.timedelta(days=1)).isoformat()}&to={(now + dt.timedelta(days=1)).isoformat()}"
    window = window.replace("+00:00", "Z")
    found = client.get(f"{P}/insights/flags?{window}&kind=kudos_ring", headers=admin)
    assert found.status_code == 200, found.text
    flags: list[dict[str, Any]] = found.json()["flags"]
    return flags


def ring(client: TestClient, admin: dict[str, str]) -> list[int]:
    """The kudos the ``kudos_ring`` flag lists for eve and fay (of the last day)."""
    [flag] = rings(client, admin)
    assert flag["participants"] == ["eve", "fay"]
    kudos: list[int] = flag["kudos"]
    return kudos


def test_a_ring_clawed_back_kudos_by_kudos(
    client: TestClient, admin: dict[str, str], acme_text: str, runtime: Runtime
) -> None:
    apply(client, admin, acme_text)
    # eve and fay trade 10 coins of kudos three times each way: 30 each; fay spends 25 on a sticker (5 left)
    given = [give(client, admin, "eve", "fay") for _ in range(3)] + [
        give(client, admin, "fay", "eve") for _ in range(3)
    ]
    assert ring(client, admin) == sorted(given)
    spent = {"participant": "fay", "reward": "sticker", "idempotency_key": "s-1"}
    assert client.post(f"{P}/redemptions", json=spent, headers=admin).status_code == 201
    assert person(client, admin, "eve") == (30, {})
    assert person(client, admin, "fay") == (5, {})
    for role in ("read", "ingest"):  # an admin's act only
        key = client.post("/api/v1/keys", json={"role": role, "programs": ["acme-sales"]}, headers=admin).json()
        refused = clawback(client, {"Authorization": f"Bearer {key['key']}"}, given[0])
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM

    # clawed back one by one: eve's three kudos to fay take 10 each from fay (5 held: 5 taken, then arrears)
    expected = [("fay", 0, {"coins": 5}), ("fay", 0, {"coins": 15}), ("fay", 0, {"coins": 25})]
    expected += [("eve", 20, {}), ("eve", 10, {}), ("eve", 0, {})]  # then fay's three to eve
    firsts = {}
    for kudos_id, (receiver, coins, arrears) in zip(given, expected, strict=True):
        giver = "eve" if receiver == "fay" else "fay"
        done = clawback(client, admin, kudos_id, f"ring with {giver}")
        assert done.status_code == 201, done.text
        body = done.json()
        assert body | {"at": "-"} == {
            "status": "accepted",
            "kudos": kudos_id,
            "clawback": f"kudos-clawback:{kudos_id}",
            "giver": giver,
            "participant": receiver,
            "reason": "clawback",
            "note": f"ring with {giver}",
            "by": "bootstrap-admin",
            "at": "-",
            "taken": {"coins": -10},
        }
        assert person(client, admin, receiver) == (coins, arrears)
        firsts[kudos_id] = body
    assert person(client, admin, "eve") == (0, {})
    assert person(client, admin, "fay") == (0, {"coins": 25})  # she spent 25 of the 30 the ring paid her
    assert rings(client, admin) == []  # dealt with: the flag counts the kudos that stand

    # the ledger says what happened, entry by entry; nothing was deleted or rewritten
    for who, giver, kudos_ids in (("fay", "eve", given[:3]), ("eve", "fay", given[3:])):
        entries = client.get(f"{P}/participants/{who}/ledger", headers=admin).json()["entries"]
        taken = [(e["kind"], e["amount"], e["explain"]) for e in entries if e["kind"] == "clawback"]
        assert sorted(taken) == sorted(("clawback", -10, f"clawback of kudos {k} from {giver}") for k in kudos_ids)
        assert [e["amount"] for e in entries if e["kind"] == "kudos"] == [10, 10, 10]
    level = client.get(f"{P}/participants/fay", headers=admin).json()["level"]
    assert level["value"] == 0  # kudos never counted toward levels, nor does their clawback
    # one audit entry each, naming the key and the note
    entries = audited(client, admin)
    assert len(entries) == 6 and {e["actor"] for e in entries} == {"bootstrap-admin"}
    assert sorted((e["detail"]["kudos"], e["detail"]["note"]) for e in entries) == sorted(
        (k, f"ring with {'eve' if k in given[:3] else 'fay'}") for k in given
    )
    assert entries[-1]["detail"] == {
        "kudos": given[0],
        "clawback": f"kudos-clawback:{given[0]}",
        "giver": "eve",
        "participant": "fay",
        "note": "ring with eve",
        "taken": {"coins": -10},
    }

    # a second clawback changes nothing and answers the first
    for kudos_id in given:
        again = clawback(client, admin, kudos_id, "again")
        assert again.status_code == 200, again.text
        assert again.json() == firsts[kudos_id] | {"status": "duplicate"}
    assert person(client, admin, "eve") == (0, {})
    assert person(client, admin, "fay") == (0, {"coins": 25})
    assert len(audited(client, admin)) == 6
    fay_entries = client.get(f"{P}/participants/fay/ledger", headers=admin).json()["entries"]
    assert len([e for e in fay_entries if e["kind"] == "clawback"]) == 3

    # the giver's budget is not given back: eve gave 30 of her 100 this week, 70 are left
    over = client.post(f"{P}/kudos", json={"from": "eve", "to": "gus", "amount": 71, "message": "x"}, headers=admin)
    assert over.status_code == 409 and over.json()["code"] == "kudos_budget"
    # a later credit pays fay's arrears first, as after an event's clawback
    give(client, admin, "gus", "fay", 10)
    assert person(client, admin, "fay") == (0, {"coins": 15})
    give(client, admin, "gus", "fay", 20)
    assert person(client, admin, "fay") == (5, {})

    # balances are folds of the ledger: replay agrees with what is stored
    report = replay(runtime, "acme-sales")
    assert report.mismatches == []


def test_what_cannot_be_clawed_back(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    apply(client, admin, acme_text)
    apply(client, admin, acme_text, "acme-west")
    mine = give(client, admin, "ann", "bob")
    theirs = give(client, admin, "ann", "bob", url="/api/v1/programs/acme-west")
    assert theirs != mine
    for unknown in (theirs, 999):  # another program's kudos is not this program's
        missing = clawback(client, admin, unknown)
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
        assert str(unknown) in missing.json()["detail"]
    for body, path in (
        ({"note": ""}, "note"),
        ({"note": "x" * 501}, "note"),
        ({"note": 7}, "note"),
        ({}, "note"),
        ({"note": "x", "amount": 5}, "amount"),
    ):
        bad = client.post(f"{P}/kudos/{mine}/clawback", json=body, headers=admin)
        assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM, bad.text
        assert path in bad.json()["errors"][0]["path"], bad.text
    for number in ("0", "-1", "x", str(2**63)):
        bad = client.post(f"{P}/kudos/{number}/clawback", json={"note": "x"}, headers=admin)
        assert bad.status_code == 422 and "kudos_id" in bad.json()["errors"][0]["path"], bad.text
    # nothing was taken by any of these
    assert client.get(f"{P}/participants/bob", headers=admin).json()["balances"]["coins"] == 10
    assert audited(client, admin) == []
    west = client.get("/api/v1/programs/acme-west/participants/bob", headers=admin).json()
    assert west["balances"]["coins"] == 10
