"""Leaderboards over HTTP (docs/api.md): periods, ties, paging, neighbours, scopes, teams, normalization."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from tests.conftest import event

PROBLEM = "application/problem+json"
P = "/api/v1/programs/acme-sales"
PEOPLE: dict[str, dict[str, Any]] = {
    "ann": {"name": "Ann", "teams": ["east"], "attributes": {"quota": 1000}},
    "bob": {"name": "Bob", "teams": ["west"], "attributes": {"quota": 500}},
    "cat": {"name": "Cat", "teams": ["east"], "attributes": {}},
    "dan": {"name": "Dan", "teams": [], "attributes": {"quota": 0}},
}
# (participant, amount, occurred_at)
DEALS = [
    ("ann", 500, "2026-11-03T15:00:00Z"),
    ("bob", 300, "2026-11-04T15:00:00Z"),
    ("cat", 300, "2026-11-05T15:00:00Z"),
    ("dan", 100, "2026-11-06T15:00:00Z"),
    ("ann", 200, "2026-10-20T15:00:00Z"),
    ("bob", 1000, "2026-09-10T15:00:00Z"),
]


@pytest.fixture
def standings(acme: TestClient, admin: dict[str, str]) -> TestClient:
    """November revenue: ann 500, bob 300, cat 300, dan 100; ann 200 in October; bob 1,000 in September."""
    for person, profile in PEOPLE.items():
        assert acme.put(f"{P}/participants/{person}", json=profile, headers=admin).status_code == 201
    acme.put(f"{P}/teams/east", json={"name": "East"}, headers=admin)
    acme.put(f"{P}/teams/west", json={"name": "West"}, headers=admin)
    batch = [event(f"won-{i}", participant=p, occurred_at=at, data={"amount": a}) for i, (p, a, at) in enumerate(DEALS)]
    results = acme.post(f"{P}/events", json={"events": batch}, headers=admin).json()["results"]
    assert {r["status"] for r in results} == {"accepted"}
    return acme


def get_board(client: TestClient, headers: dict[str, str], key: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"{P}/leaderboards/{key}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def rows(body: dict[str, Any]) -> list[tuple[int, str, Any]]:
    return [(e["rank"], e["id"], e["value"]) for e in body["entries"]]


def test_revenue_month_ties_share_a_rank(standings: TestClient, admin: dict[str, str]) -> None:
    body = get_board(standings, admin, "revenue-month", period="2026-11")
    assert body["key"] == "revenue-month"
    assert body["period"] == "2026-11"
    assert body["total"] == 4
    assert rows(body) == [(1, "ann", 500), (2, "bob", 300), (2, "cat", 300), (4, "dan", 100)]
    assert [e["name"] for e in body["entries"]] == ["Ann", "Bob", "Cat", "Dan"]


def test_other_periods_of_the_same_board(standings: TestClient, admin: dict[str, str]) -> None:
    assert rows(get_board(standings, admin, "revenue-month", period="2026-10")) == [(1, "ann", 200)]
    assert rows(get_board(standings, admin, "revenue-month", period="2026-09")) == [(1, "bob", 1000)]
    empty = get_board(standings, admin, "revenue-month", period="2025-11")
    assert (empty["total"], empty["entries"]) == (0, [])


def test_default_period_is_the_current_one(standings: TestClient, admin: dict[str, str]) -> None:
    before = dt.datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")
    body = get_board(standings, admin, "revenue-month")
    after = dt.datetime.now(ZoneInfo("America/New_York")).strftime("%Y-%m")
    assert body["period"] in {before, after}


def test_limit_and_offset(standings: TestClient, admin: dict[str, str]) -> None:
    page = get_board(standings, admin, "revenue-month", period="2026-11", limit=2, offset=1)
    assert page["total"] == 4
    assert rows(page) == [(2, "bob", 300), (2, "cat", 300)]
    assert rows(get_board(standings, admin, "revenue-month", period="2026-11", limit=2, offset=3)) == [(4, "dan", 100)]
    assert get_board(standings, admin, "revenue-month", period="2026-11", offset=4)["entries"] == []
    assert rows(get_board(standings, admin, "revenue-month", period="2026-11", limit=1)) == [(1, "ann", 500)]


@pytest.mark.parametrize("params", [{"limit": 0}, {"offset": -1}, {"limit": "ten"}])
def test_bad_paging_is_422(standings: TestClient, admin: dict[str, str], params: dict[str, Any]) -> None:
    response = standings.get(f"{P}/leaderboards/revenue-month", params={"period": "2026-11", **params}, headers=admin)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["errors"]


def test_around_a_participant(standings: TestClient, admin: dict[str, str]) -> None:
    # limit neighbours on each side of cat (third of four)
    around = get_board(standings, admin, "revenue-month", period="2026-11", around="cat", limit=1)
    assert rows(around) == [(2, "bob", 300), (2, "cat", 300), (4, "dan", 100)]
    top = get_board(standings, admin, "revenue-month", period="2026-11", around="ann", limit=1)
    assert rows(top) == [(1, "ann", 500), (2, "bob", 300)]
    wide = get_board(standings, admin, "revenue-month", period="2026-11", around="dan", limit=2)
    assert [r[1] for r in rows(wide)] == ["bob", "cat", "dan"]


def test_scope_to_a_team(standings: TestClient, admin: dict[str, str]) -> None:
    east = get_board(standings, admin, "revenue-month", period="2026-11", scope="team:east")
    assert east["total"] == 2
    assert rows(east) == [(1, "ann", 500), (2, "cat", 300)]
    west = get_board(standings, admin, "revenue-month", period="2026-11", scope="team:west")
    assert rows(west) == [(1, "bob", 300)]
    nobody = get_board(standings, admin, "revenue-month", period="2026-11", scope="team:north")
    assert (nobody["total"], nobody["entries"]) == (0, [])


def test_team_board_by_quarter(standings: TestClient, admin: dict[str, str]) -> None:
    # Q4: east = ann 500 + 200 + cat 300 = 1,000; west = bob 300 (his 1,000 was in Q3)
    q4 = get_board(standings, admin, "team-revenue", period="2026-Q4")
    assert q4["period"] == "2026-Q4"
    assert q4["total"] == 2
    assert [(e["rank"], e["id"], e["name"], e["value"]) for e in q4["entries"]] == [
        (1, "east", "East", 1000),
        (2, "west", "West", 300),
    ]
    assert rows(get_board(standings, admin, "team-revenue", period="2026-Q3")) == [(1, "west", 1000)]


def test_normalized_board_divides_by_quota_and_leaves_off_the_rest(
    standings: TestClient, admin: dict[str, str]
) -> None:
    # ann 500 / 1,000 = 0.5; bob 300 / 500 = 0.6; cat has no quota, dan's is 0: both left off
    body = get_board(standings, admin, "quota-month", period="2026-11")
    assert body["total"] == 2
    assert rows(body) == [(1, "bob", 0.6), (2, "ann", 0.5)]


def test_currency_board_over_all_time(standings: TestClient, admin: dict[str, str]) -> None:
    # XP per deal: 100 + amount / 100. ann 105 + 102 = 207; bob 103 + 110 = 213; cat 103; dan 101
    body = get_board(standings, admin, "xp-all", period="all")
    assert rows(body) == [(1, "bob", 213), (2, "ann", 207), (3, "cat", 103), (4, "dan", 101)]
    assert get_board(standings, admin, "xp-all") == body


def test_currency_board_follows_reversals(standings: TestClient, admin: dict[str, str]) -> None:
    undo = event("undo-0", "deal.reopened", "ann", data={}, reverses="won-0", occurred_at="2026-11-07T15:00:00Z")
    assert standings.post(f"{P}/events", json=undo, headers=admin).json()["status"] == "accepted"
    body = get_board(standings, admin, "xp-all", period="all")
    assert rows(body)[:2] == [(1, "bob", 213), (2, "cat", 103)]
    assert {e["id"]: e["value"] for e in body["entries"]}["ann"] == 102
    november = get_board(standings, admin, "revenue-month", period="2026-11")
    assert rows(november)[:2] == [(1, "bob", 300), (1, "cat", 300)]


@pytest.mark.parametrize(
    ("key", "period"),
    [
        ("revenue-month", "bogus"),
        ("revenue-month", "2026-Q4"),  # a quarter on a monthly board
        ("revenue-month", "2026-13"),  # no such month
        ("revenue-month", "2026-11-30"),  # a day on a monthly board
        ("team-revenue", "2026-Q5"),
        ("team-revenue", "2026-11"),
    ],
)
def test_bad_period_is_422_naming_period(standings: TestClient, admin: dict[str, str], key: str, period: str) -> None:
    response = standings.get(f"{P}/leaderboards/{key}", params={"period": period}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [e["path"] for e in response.json()["errors"]] == ["period"]


def test_unknown_board_is_404(standings: TestClient, admin: dict[str, str]) -> None:
    response = standings.get(f"{P}/leaderboards/nope", headers=admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == 404
