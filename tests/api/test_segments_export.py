"""RFM segment members and churn risk page through everyone: ``offset``, ``limit`` and ``total``, in a stable order
(segment members biggest first, churn riskiest first, ties by id), so a client exports them all a page at a time."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import event

P = "/api/v1/programs/acme-sales"
PROBLEM = "application/problem+json"
AS_OF = "2026-10-22T15:00:00Z"

# Seven reps each win one deal at the same instant: the same recency and frequency, so all score r=1, f=1 and are
# Lost; their members' order is the amount, biggest first, ties by id.
AMOUNTS = {"r1": 5000, "r2": 3000, "r3": 5000, "r4": 1000, "r5": 3000, "r6": 5000, "r7": 2000}
BY_MONEY = ["r1", "r3", "r6", "r2", "r5", "r7", "r4"]


def send(client: TestClient, admin: dict[str, str], events: list[dict[str, Any]]) -> None:
    response = client.post(f"{P}/events", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}


def get(client: TestClient, admin: dict[str, str], kind: str, **query: Any) -> dict[str, Any]:
    response = client.get(f"{P}/insights/{kind}", params=query, headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pages(client: TestClient, admin: dict[str, str], kind: str, rows: str, size: int, **query: Any) -> list[Any]:
    """Every page of ``size`` until one comes back short, each checked against the total."""
    found: list[Any] = []
    offset = 0
    while True:
        body = get(client, admin, kind, limit=size, offset=offset, **query)
        page = body[rows]
        found.append((body["total"], [r["id"] for r in page]))
        if len(page) < size:
            return found
        offset += size


def seven(client: TestClient, admin: dict[str, str]) -> TestClient:
    send(
        client,
        admin,
        [
            event(f"d-{rep}", participant=rep, occurred_at="2026-10-05T15:00:00Z", data={"amount": amount})
            for rep, amount in AMOUNTS.items()
        ],
    )
    return client


def test_segment_members_page_through_everyone_once_in_order(acme: TestClient, admin: dict[str, str]) -> None:
    seven(acme, admin)
    whole = get(acme, admin, "segments", as_of=AS_OF, segment="Lost")
    assert whole["participants"] == 7 and whole["total"] == 7
    assert [m["id"] for m in whole["members"]] == BY_MONEY
    assert [m["monetary"] for m in whole["members"]] == [5000.0, 5000.0, 5000.0, 3000.0, 3000.0, 2000.0, 1000.0]
    found = pages(acme, admin, "segments", "members", 2, as_of=AS_OF, segment="Lost")
    assert found == [(7, ["r1", "r3"]), (7, ["r6", "r2"]), (7, ["r5", "r7"]), (7, ["r4"])]
    assert [rep for _total, page in found for rep in page] == BY_MONEY  # everyone once, in order
    past = get(acme, admin, "segments", as_of=AS_OF, segment="Lost", offset=7)
    assert (past["total"], past["members"]) == (7, [])
    empty = get(acme, admin, "segments", as_of=AS_OF, segment="Champions", offset=3)
    assert (empty["total"], empty["members"]) == (0, [])
    summary = get(acme, admin, "segments", as_of=AS_OF)  # without ?segment= the answer is as before
    assert "total" not in summary and "members" not in summary
    assert {s["name"]: s["participants"] for s in summary["segments"] if s["participants"]} == {"Lost": 7}


def test_equal_risks_page_by_id(acme: TestClient, admin: dict[str, str]) -> None:
    seven(acme, admin)  # one event each, at the same instant: the same risk for all, so the id decides
    found = pages(acme, admin, "churn", "participants", 3, as_of=AS_OF)
    assert found == [(7, ["r1", "r2", "r3"]), (7, ["r4", "r5", "r6"]), (7, ["r7"])]
    first = get(acme, admin, "churn", as_of=AS_OF)
    assert first["total"] == 7 and len({r["risk"] for r in first["participants"]}) == 1


def test_churn_pages_riskiest_first(acme: TestClient, admin: dict[str, str]) -> None:
    # ann plays twice a week apart: her gap of 7 days is everyone's usual gap (the median of the only gap);
    # the others play once, on these days of October, so the risk falls as the day rises (ties by id)
    days = {"zed": 1, "bob": 3, "amy": 3, "cat": 8, "dan": 8, "eve": 8, "fay": 14, "gus": 20}
    events = [
        event(f"d-{rep}", participant=rep, occurred_at=f"2026-10-{day:02d}T15:00:00Z") for rep, day in days.items()
    ]
    events += [event(f"a-{day}", participant="ann", occurred_at=f"2026-10-{day:02d}T15:00:00Z") for day in (5, 12)]
    send(acme, admin, events)
    days["ann"] = 12
    expected = sorted(days, key=lambda rep: (-(22 - days[rep]), rep))
    assert expected == ["zed", "amy", "bob", "cat", "dan", "eve", "ann", "fay", "gus"]
    found = pages(acme, admin, "churn", "participants", 2, as_of=AS_OF)
    assert [total for total, _page in found] == [9] * 5
    assert [rep for _total, page in found for rep in page] == expected
    third = get(acme, admin, "churn", as_of=AS_OF, limit=2, offset=4)["participants"]
    assert [(r["id"], r["risk"], r["days_since_last"], r["usual_gap_days"]) for r in third] == [
        ("dan", round(1 - math.exp(-14 / 7), 4), 14.0, 7.0),
        ("eve", round(1 - math.exp(-14 / 7), 4), 14.0, 7.0),
    ]
    default = get(acme, admin, "churn", as_of=AS_OF)  # no offset, the default limit: everyone, as before
    assert default["total"] == 9 and [r["id"] for r in default["participants"]] == expected


@pytest.mark.parametrize("kind", ["segments", "churn"])
@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"offset": -1}, "query.offset"),
        ({"offset": "two"}, "query.offset"),
        ({"offset": 10**9 + 1}, "query.offset"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
    ],
)
def test_bad_paging_is_a_problem_naming_the_parameter(
    acme: TestClient, admin: dict[str, str], kind: str, params: dict[str, Any], path: str
) -> None:
    query = {"as_of": AS_OF, **params} | ({"segment": "Lost"} if kind == "segments" else {})
    response = acme.get(f"{P}/insights/{kind}", params=query, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [e["path"] for e in response.json()["errors"]] == [path]
