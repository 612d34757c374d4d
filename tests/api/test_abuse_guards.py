"""Abuse guards: referrals that cannot be farmed, value velocity caps, suspension."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from levelup.engine.experiments import draw
from levelup.events.replay import replay
from levelup.referrals.service import pay_due
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

B = "/api/v1/programs/brewhouse-rewards"
EXTRA = """referrals: {award: {beans: 200}, hold: P30D}
"""


def apply(client: TestClient, admin: dict[str, str], text: str) -> None:
    response = client.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code in (200, 201), response.text


def post(client: TestClient, admin: dict[str, str], *bodies: dict[str, Any]) -> list[Any]:
    return [client.post(f"{B}/events", json=b, headers=admin) for b in bodies]


def beans(client: TestClient, admin: dict[str, str], who: str) -> int:
    value: int = client.get(f"{B}/participants/{who}", headers=admin).json()["balances"]["beans"]
    return value


def referral(event_id: str, friend: str, referrer: str, at: str = "2026-11-01T10:00:00Z") -> dict[str, Any]:
    return event(event_id, "referral.made", friend, data={"referrer": referrer}, occurred_at=at)


def purchase(event_id: str, who: str, amount: float, at: str) -> dict[str, Any]:
    return event(event_id, "purchase.completed", who, data={"amount": amount}, occurred_at=at)


def statuses(runtime: Runtime) -> dict[int, str]:
    with runtime.db.read() as connection:
        return dict(connection.execute(select(t.referrals.c.referred_id, t.referrals.c.status)).all())


def test_self_referral_is_refused_and_changes_nothing(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    apply(client, admin, brewhouse_text + EXTRA)
    [response] = post(client, admin, referral("ref-1", "amy", "amy"))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "data.referrer", "message": "a participant cannot refer themselves"}]
    [missing] = post(client, admin, event("ref-2", "referral.made", "amy", data={}))
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "data.referrer"
    assert statuses(runtime) == {}
    assert client.get(f"{B}/participants/amy", headers=admin).status_code == 404


def test_referrer_is_paid_only_after_the_first_purchase_stood_unrefunded(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    apply(client, admin, brewhouse_text + EXTRA)
    post(client, admin, referral("ref-1", "bea", "amy"))
    assert list(statuses(runtime).values()) == ["waiting"]
    assert pay_due(runtime, now=dt.datetime(2027, 6, 1, tzinfo=dt.UTC)) == 0  # no purchase: nothing
    post(client, admin, purchase("p-1", "bea", 12, "2026-11-02T10:00:00Z"))
    assert list(statuses(runtime).values()) == ["qualified"]
    # refunded inside the hold: back to waiting, nothing paid even long after
    post(
        client, admin, event("p-1-back", "purchase.refunded", "bea", reverses="p-1", occurred_at="2026-11-05T10:00:00Z")
    )
    assert list(statuses(runtime).values()) == ["waiting"]
    assert pay_due(runtime, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == 0
    post(client, admin, purchase("p-2", "bea", 30, "2026-11-10T10:00:00Z"))
    assert pay_due(runtime, now=dt.datetime(2026, 12, 9, tzinfo=dt.UTC)) == 0  # hold: 30 days from 10 Nov
    assert beans(client, admin, "amy") == 0
    assert pay_due(runtime, now=dt.datetime(2026, 12, 10, 11, tzinfo=dt.UTC)) == 1
    assert pay_due(runtime, now=dt.datetime(2026, 12, 11, tzinfo=dt.UTC)) == 0  # once
    assert beans(client, admin, "amy") == 200
    assert list(statuses(runtime).values()) == ["paid"]
    ledger = client.get(f"{B}/participants/amy/ledger", headers=admin).json()["entries"]
    assert [(e["kind"], e["amount"]) for e in ledger] == [("referral", 200)]
    assert replay(runtime, "brewhouse-rewards").mismatches == []


def test_an_existing_customer_cannot_be_referred_and_the_first_referral_stands(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    apply(client, admin, brewhouse_text + EXTRA)
    post(client, admin, purchase("p-0", "cal", 5, "2026-10-01T10:00:00Z"))
    post(
        client, admin, referral("ref-1", "cal", "amy"), referral("ref-2", "dan", "amy"), referral("ref-3", "dan", "eve")
    )
    post(client, admin, purchase("p-1", "cal", 50, "2026-11-02T10:00:00Z"))
    post(client, admin, purchase("p-2", "dan", 50, "2026-11-02T10:00:00Z"))
    assert sorted(statuses(runtime).values()) == ["qualified", "void"]
    assert pay_due(runtime, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == 1
    assert (beans(client, admin, "amy"), beans(client, admin, "eve")) == (200, 0)


def test_velocity_cap_limits_value_per_period_not_just_count(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    capped = brewhouse_text.replace(
        "spendable: true, expires_after: P365D}",
        "spendable: true, expires_after: P365D, velocity: {max: 500, per: day}}",
    )
    assert capped != brewhouse_text
    apply(client, admin, capped)
    responses = post(
        client,
        admin,
        purchase("p-1", "fay", 300, "2026-11-02T10:00:00Z"),
        purchase("p-2", "fay", 300, "2026-11-02T11:00:00Z"),
        purchase("p-3", "fay", 300, "2026-11-02T12:00:00Z"),
        purchase("p-4", "fay", 300, "2026-11-03T09:00:00Z"),
    )
    assert [r.json()["awards"][0]["amount"] if r.json()["awards"] else 0 for r in responses] == [
        300,
        200,
        0,
        375,
    ]  # Gold (×1.25) from 600 spent
    explained = client.get(f"{B}/events/p-2", headers=admin).json()
    assert any("velocity cap of 500 beans per day" in note for note in explained.get("notes") or [])
    # reversing a capped day's award frees its budget for that day
    post(client, admin, event("back-1", "purchase.refunded", "fay", reverses="p-1", occurred_at="2026-11-02T13:00:00Z"))
    [late] = post(client, admin, purchase("p-5", "fay", 400, "2026-11-02T14:00:00Z"))
    assert late.json()["awards"][0]["amount"] == 300  # 500 (400 × 1.25) clipped to the 300 left that day
    assert beans(client, admin, "fay") == 200 + 375 + 300
    assert replay(runtime, "brewhouse-rewards").mismatches == []


def test_a_suspended_participant_earns_and_spends_nothing_visibly(
    client: TestClient, admin: dict[str, str], brewhouse_text: str
) -> None:
    apply(client, admin, brewhouse_text)
    post(client, admin, purchase("p-1", "gus", 200, "2026-11-02T10:00:00Z"))
    suspended = client.put(f"{B}/participants/gus/status", json={"status": "suspended", "note": "fraud"}, headers=admin)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    [response] = post(client, admin, purchase("p-2", "gus", 200, "2026-11-03T10:00:00Z"))
    assert response.json()["awards"] == []
    assert "participant is suspended: no awards" in client.get(f"{B}/events/p-2", headers=admin).json()["notes"]
    redeem = {"participant": "gus", "reward": "free-coffee", "idempotency_key": "k1"}
    refused = client.post(f"{B}/redemptions", json=redeem, headers=admin)
    assert refused.status_code == 409 and refused.json()["code"] == "participant_suspended"
    assert beans(client, admin, "gus") == 200
    client.put(f"{B}/participants/gus/status", json={"status": "active", "note": "cleared"}, headers=admin)
    assert client.post(f"{B}/redemptions", json=redeem, headers=admin).status_code == 201


def test_a_suspended_participant_gets_no_kudos_and_gives_none(
    client: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    a = "/api/v1/programs/acme-sales"
    text = acme_text + "kudos: {currency: coins, budget: {amount: 10, per: week}}\n"
    assert client.put(a, content=text, headers={**admin, "Content-Type": "application/yaml"}).status_code == 201
    for who in ("ann", "bob"):
        assert client.put(f"{a}/participants/{who}", json={"name": who}, headers=admin).status_code == 201
    client.put(f"{a}/participants/bob/status", json={"status": "suspended", "note": "x"}, headers=admin)
    for giver, receiver in (("ann", "bob"), ("bob", "ann")):
        body = {"from": giver, "to": receiver, "amount": 1, "message": "thanks"}
        refused = client.post(f"{a}/kudos", json=body, headers=admin)
        assert refused.status_code == 409 and refused.json()["code"] == "participant_suspended"
    assert client.get(f"{a}/participants/ann", headers=admin).json()["balances"]["coins"] == 0


def test_a_referrer_held_out_of_the_program_is_paid_nothing(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    """A program holdout keeps its members from every award, referral payments too: that referral is void."""
    experiment = "experiments: [{key: ab, holdout: 0.5, applies_to: {program: true}, metric: spend}]\n"
    apply(client, admin, brewhouse_text + EXTRA + experiment)
    held, kept = "amy", "cat"
    assert draw("ab", held) < 0.5 <= draw("ab", kept)  # the experiment's draw: amy held out, cat not
    post(
        client,
        admin,
        referral("ref-1", "bea", held),
        referral("ref-2", "dot", kept),
        purchase("p-1", "bea", 12, "2026-11-02T10:00:00Z"),
        purchase("p-2", "dot", 12, "2026-11-02T10:00:00Z"),
    )
    assert pay_due(runtime, now=dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == 1
    assert (beans(client, admin, held), beans(client, admin, kept)) == (0, 200)
    assert sorted(statuses(runtime).values()) == ["paid", "void"]
    assert pay_due(runtime, now=dt.datetime(2027, 2, 1, tzinfo=dt.UTC)) == 0
