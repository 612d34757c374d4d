"""Participants, teams, the ledger and manual adjustments over HTTP (docs/api.md, docs/architecture.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import event

PROBLEM = "application/problem+json"
P = "/api/v1/programs/acme-sales"
DANA = {"name": "Dana", "teams": ["east"], "attributes": {"quota": 50000, "region": "NE"}}


def profile(client: TestClient, headers: dict[str, str], participant: str = "rep-17") -> dict[str, Any]:
    response = client.get(f"{P}/participants/{participant}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ledger(client: TestClient, headers: dict[str, str], participant: str = "rep-17") -> list[dict[str, Any]]:
    response = client.get(f"{P}/participants/{participant}/ledger", params={"limit": 500}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["next"] is None
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def adjust(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"{P}/adjustments", json={"participant": "rep-17", "note": "test", **body}, headers=headers)


def make_key(client: TestClient, headers: dict[str, str], role: str) -> dict[str, str]:
    response = client.post("/api/v1/keys", json={"role": role, "programs": ["acme-sales"]}, headers=headers)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def test_put_then_get_participant(acme: TestClient, admin: dict[str, str]) -> None:
    created = acme.put(f"{P}/participants/rep-17", json=DANA, headers=admin)
    assert created.status_code == 201
    updated = acme.put(f"{P}/participants/rep-17", json={**DANA, "name": "Dana S."}, headers=admin)
    assert updated.status_code == 200
    body = profile(acme, admin)
    assert body["id"] == "rep-17"
    assert body["name"] == "Dana S."
    assert body["teams"] == ["east"]
    assert body["attributes"] == {"quota": 50000, "region": "NE"}
    assert body["balances"] == {"xp": 0, "coins": 0}  # every currency, even with nothing earned
    assert body["level"]["name"] == "Rookie"
    assert body["level"]["next"] == "Closer"
    assert body["level"]["progress"] == 0
    assert body["tier"] is None
    assert isinstance(body["badges"], list)
    assert isinstance(body["streaks"], list)
    assert isinstance(body["challenges"], list)


def test_profile_shows_balances_and_level_progress(acme: TestClient, admin: dict[str, str]) -> None:
    acme.put(f"{P}/participants/rep-17", json=DANA, headers=admin)
    # six deals of 12,000 in ISO week 2026-W46: 6 × 220 = 1,320 XP and 6 × 12 = 72 coins,
    # plus 100 coins for the five-a-week challenge reached at the fifth deal
    batch = {"events": [event(f"won-{i}", occurred_at=f"2026-11-{10 + i}T15:00:00Z") for i in range(6)]}
    assert acme.post(f"{P}/events", json=batch, headers=admin).status_code == 200
    body = profile(acme, admin)
    assert body["balances"] == {"xp": 1320, "coins": 172}
    # Closer at 1,000, Legend at 10,000: (1320 - 1000) / 9000 = 0.0356 → 0.036
    assert body["level"]["name"] == "Closer"
    assert body["level"]["next"] == "Legend"
    assert body["level"]["progress"] == pytest.approx(0.036, abs=0.0005)


def test_spending_never_lowers_a_level(acme: TestClient, admin: dict[str, str]) -> None:
    batch = {"events": [event(f"won-{i}", occurred_at=f"2026-11-{10 + i}T15:00:00Z") for i in range(5)]}
    acme.post(f"{P}/events", json=batch, headers=admin)  # 1,100 XP, 60 coins + 100 for five-a-week
    assert adjust(acme, admin, currency="coins", amount=-160).status_code == 201
    body = profile(acme, admin)
    assert body["balances"] == {"xp": 1100, "coins": 0}
    assert body["level"]["name"] == "Closer"


def test_partial_put_keeps_omitted_fields(acme: TestClient, admin: dict[str, str]) -> None:
    acme.put(f"{P}/participants/rep-17", json=DANA, headers=admin)
    acme.put(f"{P}/participants/rep-17", json={"name": "Dana S."}, headers=admin)
    body = profile(acme, admin)
    assert (body["name"], body["teams"], body["attributes"]["quota"]) == ("Dana S.", ["east"], 50000)
    acme.put(f"{P}/participants/rep-17", json={"teams": ["west", "closers"]}, headers=admin)
    assert profile(acme, admin)["teams"] == ["closers", "west"]


@pytest.mark.parametrize(
    ("body", "path"),
    [({"teams": "east"}, "teams"), ({"nmae": "Dana"}, "nmae"), ({"attributes": [1]}, "attributes")],
)
def test_invalid_participant_body_is_a_problem(
    acme: TestClient, admin: dict[str, str], body: dict[str, Any], path: str
) -> None:
    response = acme.put(f"{P}/participants/rep-17", json=body, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert path in [e["path"] for e in response.json()["errors"]]
    assert acme.get(f"{P}/participants/rep-17", headers=admin).status_code == 404


def test_unknown_participant_is_404(acme: TestClient, admin: dict[str, str]) -> None:
    for url in (f"{P}/participants/nobody", f"{P}/participants/nobody/ledger"):
        response = acme.get(url, headers=admin)
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 404


def test_participant_is_created_on_first_event(acme: TestClient, admin: dict[str, str]) -> None:
    assert acme.get(f"{P}/participants/rep-42", headers=admin).status_code == 404
    acme.post(f"{P}/events", json=event("e-1", participant="rep-42"), headers=admin)
    body = profile(acme, admin, "rep-42")
    assert body["id"] == "rep-42"
    assert body["teams"] == []
    assert body["balances"] == {"xp": 220, "coins": 12}
    # known afterwards: a PUT updates it (200, not 201) and keeps its points
    response = acme.put(f"{P}/participants/rep-42", json={"name": "Sam"}, headers=admin)
    assert response.status_code == 200
    assert response.json()["balances"] == {"xp": 220, "coins": 12}


def test_put_team(acme: TestClient, admin: dict[str, str]) -> None:
    response = acme.put(f"{P}/teams/east", json={"name": "East Coast"}, headers=admin)
    assert response.status_code == 200
    assert response.json() == {"id": "east", "name": "East Coast"}
    acme.put(f"{P}/participants/rep-17", json=DANA, headers=admin)
    acme.post(f"{P}/events", json=event("e-1"), headers=admin)
    team_board = acme.get(f"{P}/leaderboards/team-revenue", params={"period": "2026-Q4"}, headers=admin).json()
    assert team_board["entries"] == [{"rank": 1, "id": "east", "name": "East Coast", "value": 12000}]
    renamed = acme.put(f"{P}/teams/east", json={"name": "East"}, headers=admin)
    assert renamed.json() == {"id": "east", "name": "East"}
    missing_name = acme.put(f"{P}/teams/west", json={}, headers=admin)
    assert missing_name.status_code == 422
    assert "name" in [e["path"] for e in missing_name.json()["errors"]]


def test_ledger_is_newest_first_with_its_reasons(acme: TestClient, admin: dict[str, str]) -> None:
    acme.post(f"{P}/events", json=event("won-1", occurred_at="2026-11-20T15:00:00Z"), headers=admin)
    data = {"kind": "call", "duration_s": 61}
    call = event("call-1", "activity.logged", occurred_at="2026-11-21T15:00:00Z", data=data)
    acme.post(f"{P}/events", json=call, headers=admin)
    entries = ledger(acme, admin)
    assert [(e["currency"], e["amount"], e["rule"], e["event"]) for e in entries] == [
        ("xp", 5, "call-logged", "call-1"),
        ("coins", 12, "deal-won", "won-1"),
        ("xp", 220, "deal-won", "won-1"),
    ]
    assert entries[0]["explain"] == "5 XP per call of a minute or more, up to 20 calls a day"
    assert all(e["explain"] and e["at"] for e in entries)
    assert entries[0]["at"].startswith("2026-11-21T15:00:00")


def test_ledger_pagination_follows_next_until_null(acme: TestClient, admin: dict[str, str]) -> None:
    # 11 deals, one a week (so no weekly challenge pays), make 22 entries; pages of 5 are 5, 5, 5, 5, 2
    weeks = [(dt.date(2026, 8, 3) + dt.timedelta(weeks=i)).isoformat() for i in range(11)]
    batch = {
        "events": [
            event(f"won-{i:02d}", data={"amount": 1000 * (i + 1)}, occurred_at=f"{weeks[i]}T15:00:00Z")
            for i in range(11)
        ]
    }
    acme.post(f"{P}/events", json=batch, headers=admin)
    everything = ledger(acme, admin)
    assert len(everything) == 22

    seen: list[dict[str, Any]] = []
    url: str | None = f"{P}/participants/rep-17/ledger?limit=5"
    pages = 0
    while url is not None:
        response = acme.get(url, headers=admin)
        assert response.status_code == 200
        page = response.json()
        assert len(page["entries"]) <= 5
        seen.extend(page["entries"])
        url = page["next"]
        pages += 1
        assert pages <= 10, "pagination does not end"
    assert pages == 5
    assert seen == everything  # same entries, same order: nothing lost, nothing repeated
    assert [e["event"] for e in seen[:2]] == ["won-10", "won-10"]
    assert [e["event"] for e in seen[-2:]] == ["won-00", "won-00"]
    assert sum(e["amount"] for e in seen if e["currency"] == "xp") == profile(acme, admin)["balances"]["xp"]


def test_ledger_page_size_exactly_the_remaining_entries_ends_with_null(acme: TestClient, admin: dict[str, str]) -> None:
    acme.post(f"{P}/events", json={"events": [event("won-1"), event("won-2")]}, headers=admin)
    first = acme.get(f"{P}/participants/rep-17/ledger", params={"limit": 2}, headers=admin).json()
    assert len(first["entries"]) == 2
    assert first["next"] is not None
    second = acme.get(first["next"], headers=admin).json()
    assert len(second["entries"]) == 2
    assert second["next"] is None
    assert {e["id"] for e in first["entries"]}.isdisjoint({e["id"] for e in second["entries"]})


def test_adjustment_credit_and_debit(acme: TestClient, admin: dict[str, str]) -> None:
    acme.post(f"{P}/events", json=event("won-1"), headers=admin)  # 220 XP, 12 coins
    credit = adjust(acme, admin, currency="coins", amount=30, note="contest prize")
    assert credit.status_code == 201
    assert profile(acme, admin)["balances"] == {"xp": 220, "coins": 42}
    debit = adjust(acme, admin, currency="coins", amount=-40, note="correction")
    assert debit.status_code == 201
    assert profile(acme, admin)["balances"] == {"xp": 220, "coins": 2}
    entries = ledger(acme, admin)
    assert [(e["currency"], e["amount"]) for e in entries[:2]] == [("coins", -40), ("coins", 30)]
    assert "correction" in entries[0]["explain"]
    assert "contest prize" in entries[1]["explain"]
    assert entries[0]["event"] is None
    # a balance is the sum of its ledger entries
    assert sum(e["amount"] for e in entries if e["currency"] == "coins") == 2


def test_debit_beyond_the_balance_is_409_and_writes_nothing(acme: TestClient, admin: dict[str, str]) -> None:
    acme.post(f"{P}/events", json=event("won-1"), headers=admin)  # 12 coins
    response = adjust(acme, admin, currency="coins", amount=-13)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 409
    assert profile(acme, admin)["balances"] == {"xp": 220, "coins": 12}
    assert len(ledger(acme, admin)) == 2
    # and for someone never seen: no participant is made either
    stranger = adjust(acme, admin, participant="rep-99", currency="coins", amount=-1)
    assert stranger.status_code == 409
    assert acme.get(f"{P}/participants/rep-99", headers=admin).status_code == 404


def test_adjustment_idempotency_key_repeat_is_a_duplicate(acme: TestClient, admin: dict[str, str]) -> None:
    first = adjust(acme, admin, currency="xp", amount=50, idempotency_key="bonus-2026-11")
    assert first.status_code == 201
    assert first.json()["status"] == "accepted"
    again = adjust(acme, admin, currency="xp", amount=50, idempotency_key="bonus-2026-11")
    assert again.status_code in (200, 201)
    assert again.json()["status"] == "duplicate"
    assert profile(acme, admin)["balances"]["xp"] == 50
    assert len(ledger(acme, admin)) == 1
    different = adjust(acme, admin, currency="xp", amount=70, idempotency_key="bonus-2026-11")
    assert different.status_code == 409
    assert profile(acme, admin)["balances"]["xp"] == 50


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"currency": "gems", "amount": 5}, "currency"),
        ({"currency": "xp", "amount": 0}, "amount"),
        ({"currency": "xp", "amount": "5 please"}, "amount"),
        ({"currency": "xp"}, "amount"),
    ],
    ids=["unknown-currency", "zero", "not-a-number", "missing-amount"],
)
def test_invalid_adjustment_is_422(acme: TestClient, admin: dict[str, str], body: dict[str, Any], path: str) -> None:
    response = adjust(acme, admin, **body)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert path in [e["path"] for e in response.json()["errors"]]
    assert acme.get(f"{P}/participants/rep-17", headers=admin).status_code == 404


@pytest.mark.parametrize("role", ["ingest", "read"])
def test_adjustment_requires_the_admin_role(acme: TestClient, admin: dict[str, str], role: str) -> None:
    acme.post(f"{P}/events", json=event("won-1"), headers=admin)
    key = make_key(acme, admin, role)
    response = adjust(acme, key, currency="coins", amount=100)
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM
    assert profile(acme, admin)["balances"] == {"xp": 220, "coins": 12}
    assert adjust(acme, make_key(acme, admin, "admin"), currency="coins", amount=100).status_code == 201
