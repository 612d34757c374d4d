"""Partial refunds: an event with ``reverses`` and ``portion`` takes back that share of the reversed event."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from levelup.events.replay import replay
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

B = "/api/v1/programs/brewhouse-rewards"


def brewhouse(client: TestClient, admin: dict[str, str], text: str) -> TestClient:
    response = client.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    return client


def post(client: TestClient, admin: dict[str, str], body: dict[str, Any]) -> Any:
    return client.post(f"{B}/events", json=body, headers=admin)


def purchase(event_id: str, amount: float, **fields: Any) -> dict[str, Any]:
    return event(event_id, "purchase.completed", "cus-1", data={"amount": amount}, **fields)


def refund(event_id: str, of: str, portion: float | None = None) -> dict[str, Any]:
    body = event(event_id, "purchase.refunded", "cus-1", reverses=of, occurred_at="2026-11-21T10:00:00Z")
    if portion is not None:
        body["portion"] = portion
    return body


def state(client: TestClient, admin: dict[str, str]) -> tuple[int, float, float]:
    """(beans, spend metric over its days, purchases metric all-time): the periods brewhouse keeps, for
    its tier window (days) and its badges (all time)."""
    profile = client.get(f"{B}/participants/cus-1", headers=admin).json()
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    m = t.metric_totals.c
    with runtime.db.read() as connection:
        spend = connection.execute(
            select(func.sum(m.value)).where(m.metric == "spend", m.subject_kind == "p", func.length(m.period) == 10)
        ).scalar_one()
        purchases = connection.execute(
            select(m.value).where(m.metric == "purchases", m.subject_kind == "p", m.period == "all")
        ).scalar_one_or_none()
    return profile["balances"]["beans"], float(spend or 0.0), float(purchases or 0.0)


def test_partial_refunds_take_back_their_share_and_add_up_to_the_whole(
    client: TestClient, admin: dict[str, str], brewhouse_text: str
) -> None:
    brewhouse(client, admin, brewhouse_text)
    assert post(client, admin, purchase("p-1", 99)).json()["awards"] == [
        {"currency": "beans", "amount": 99, "rule": "purchase"}
    ]
    assert post(client, admin, refund("r-1", "p-1", 0.25)).json()["status"] == "accepted"
    # floor(99 × 0.25) = 24 taken back; spend scaled; the purchase still counts
    assert state(client, admin) == (75, 74.25, 1.0)
    assert post(client, admin, refund("r-2", "p-1", 0.5)).json()["status"] == "accepted"
    assert state(client, admin) == (99 - 74, 24.75, 1.0)  # floor(99 × 0.75) = 74 in all
    too_much = post(client, admin, refund("r-3", "p-1", 0.5))
    assert too_much.status_code == 422
    assert too_much.json()["errors"][0]["path"] == "portion"
    assert post(client, admin, refund("r-4", "p-1", 0.25)).json()["status"] == "accepted"
    beans, spend, purchases = state(client, admin)
    assert (beans, purchases) == (0, 0.0) and abs(spend) < 1e-9  # the whole: exactly what was awarded
    again = post(client, admin, refund("r-5", "p-1"))
    assert again.status_code == 422 and "already reversed" in again.text


def test_portion_needs_a_reversal_and_a_share_in_range(
    client: TestClient, admin: dict[str, str], brewhouse_text: str
) -> None:
    brewhouse(client, admin, brewhouse_text)
    lonely = post(client, admin, {**purchase("p-1", 10), "portion": 0.5})
    assert lonely.status_code == 422 and lonely.json()["errors"][0]["path"] == "portion"
    post(client, admin, purchase("p-2", 10))
    for bad in (0, 1.5, -0.1):
        response = post(client, admin, refund(f"r-{bad}", "p-2", bad))
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["path"] == "portion"


def test_a_retried_partial_refund_is_a_duplicate_and_replay_agrees(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    brewhouse(client, admin, brewhouse_text)
    post(client, admin, purchase("p-1", 40))
    post(client, admin, purchase("p-2", 60, occurred_at="2026-11-20T16:00:00Z"))
    assert post(client, admin, refund("r-1", "p-1", 0.5)).json()["status"] == "accepted"
    assert post(client, admin, refund("r-1", "p-1", 0.5)).json()["status"] == "duplicate"
    assert post(client, admin, refund("r-1", "p-1", 0.4)).status_code == 409  # same id, other content
    batch = {"events": [refund("r-2", "p-2", 0.3), refund("r-3", "p-2", 0.7), refund("r-4", "p-2", 0.1)]}
    results = client.post(f"{B}/events", json=batch, headers=admin).json()["results"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected"]
    assert state(client, admin)[0] == 20  # 40 − 20 + 60 − 18 − 42
    with runtime.db.read() as connection:
        refunded = dict(connection.execute(select(t.refunds.c.reversed_event, t.refunds.c.refunded)).all())
        full = connection.execute(select(func.count()).select_from(t.reversals)).scalar_one()
    assert refunded == {"p-1": 500_000, "p-2": 1_000_000} and full == 1
    assert replay(runtime, "brewhouse-rewards").mismatches == []


def test_a_partial_refund_takes_the_purchase_s_own_lot_first(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime
) -> None:
    brewhouse(client, admin, brewhouse_text)
    post(client, admin, purchase("p-1", 100))
    post(client, admin, purchase("p-2", 50, occurred_at="2026-11-20T17:00:00Z"))
    post(client, admin, refund("r-1", "p-2", 0.5))
    lot = t.lots.c
    with runtime.db.read() as connection:
        remaining = connection.execute(select(lot.amount, lot.remaining).order_by(lot.id)).all()
        available = connection.execute(select(t.positions.c.available).where(t.positions.c.currency == "beans"))
    assert [tuple(r) for r in remaining] == [(100, 100), (50, 25)]
    assert available.scalar_one() == 125
