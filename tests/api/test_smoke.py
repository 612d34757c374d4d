"""The acme-sales example end to end through HTTP, on both databases."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import event


def test_deal_won_awards_xp_and_coins(acme: TestClient, admin: dict[str, str]) -> None:
    response = acme.post("/api/v1/programs/acme-sales/events", json=event("e-1"), headers=admin)
    assert response.status_code == 200
    assert response.json() == {
        "id": "e-1",
        "status": "accepted",
        "awards": [
            {"currency": "xp", "amount": 220, "rule": "deal-won"},
            {"currency": "coins", "amount": 12, "rule": "deal-won"},
        ],
    }
    profile = acme.get("/api/v1/programs/acme-sales/participants/rep-17", headers=admin).json()
    assert profile["balances"] == {"xp": 220, "coins": 12}
