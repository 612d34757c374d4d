"""A game in progress for the page tests: acme-sales with kudos, two reps with deals, and their links."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.conftest import event

P = "/api/v1/programs/acme-sales"
KUDOS = "kudos: {currency: coins, budget: {amount: 50, per: week}}\n"


@dataclass(frozen=True)
class Game:
    client: TestClient
    admin: dict[str, str]
    tv: dict
    dana: dict  # rep-17's participant link
    bob: dict  # rep-9's

    def link(self, **body: object) -> dict:
        response = self.client.post(f"{P}/links", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json()

    def post(self, *events: dict) -> None:
        response = self.client.post(f"{P}/events", json={"events": list(events)}, headers=self.admin)
        assert response.status_code == 200, response.text


def make_game(client: TestClient, admin: dict[str, str], acme_text: str) -> Game:
    """acme-sales with kudos; Dana (rep-17) won five deals, Bob (rep-9) one; a TV link and a link for each."""
    response = client.put(P, content=acme_text + KUDOS, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    client.put(f"{P}/participants/rep-17", json={"name": "Dana Scully", "teams": ["east"]}, headers=admin)
    client.put(f"{P}/participants/rep-9", json={"name": "Bob Marley"}, headers=admin)
    made = Game(client, admin, {}, {}, {})
    deals = [event(f"d-{i}", data={"amount": 120_000, "deal_id": f"D-{i}"}) for i in range(5)]
    deals[0]["occurred_at"] = "2026-11-19T15:04:05Z"  # two days of points: a chart to draw
    made.post(*deals, event("b-1", participant="rep-9", data={"amount": 30_000, "deal_id": "B-1"}))
    return Game(
        client,
        admin,
        made.link(kind="tv", tv={"top": 5}),
        made.link(kind="participant", participant="rep-17"),
        made.link(kind="participant", participant="rep-9"),
    )


@pytest.fixture
def game(client: TestClient, admin: dict[str, str], acme_text: str) -> Game:
    return make_game(client, admin, acme_text)
