"""Insight over HTTP: POST …/simulate (admin) and GET …/insights/{kind} (read), against hand-computed figures."""

from __future__ import annotations

import json
import math
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.conftest import event

P = "/api/v1/programs/acme-sales"
WINDOW = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


def document(text: str) -> dict[str, Any]:
    """A YAML document as the JSON a client sends (dates as strings)."""
    loaded: dict[str, Any] = json.loads(json.dumps(yaml.safe_load(text), default=str))
    return loaded


def send(client: TestClient, admin: dict[str, str], events: list[dict[str, Any]]) -> None:
    response = client.post(f"{P}/events", json={"events": events}, headers=admin)
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}


def test_simulate_a_draft_beside_the_document_in_force(acme: TestClient, admin: dict[str, str], acme_text: str) -> None:
    send(acme, admin, [event("d1", data={"amount": 12000}), event("d2", participant="rep-9", data={"amount": 3000})])
    acme.put(f"{P}/participants/rep-17", json={"name": "Dana", "teams": ["east"]}, headers=admin)
    draft = document(acme_text)
    draft["rules"][2]["award"]["xp"] = "2 * (100 + data.amount / 100)"
    response = acme.post(f"{P}/simulate", json={"document": draft, **WINDOW}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["window"] == {
        **WINDOW | {"from": "2026-11-01T00:00:00+00:00", "to": "2026-12-01T00:00:00+00:00"},
        "events": 2,
    }
    # 100 + 12000/100 = 220 XP and 100 + 3000/100 = 130 XP now; twice that in the draft
    assert body["current"]["participants"] == {"rep-17": {"xp": 220, "coins": 12}, "rep-9": {"xp": 130, "coins": 3}}
    assert body["draft"]["totals"] == {"xp": 700, "coins": 15}
    assert body["draft"]["distribution"]["xp"] | {} == {
        "p10": 260,
        "p25": 260,
        "p50": 260,
        "p75": 440,
        "p90": 440,
        "p99": 440,
        "min": 260,
        "max": 440,
        "mean": 350,
    }
    texts = [c["text"] for c in body["changes"]]
    assert texts == ["XP in all: 350 → 700 (+350)", "Dana: +220 XP", "rep-9: +130 XP"]
    board = next(b for b in body["draft"]["leaderboards"] if b["key"] == "xp-all")
    assert [(e["rank"], e["id"], e["value"]) for e in board["entries"]] == [(1, "rep-17", 440), (2, "rep-9", 260)]
    assert acme.get(f"{P}/participants/rep-17", headers=admin).json()["balances"] == {"xp": 220, "coins": 12}


def test_simulate_is_for_admins_and_says_what_is_wrong(acme: TestClient, admin: dict[str, str], acme_text: str) -> None:
    key = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()["key"]
    draft = document(acme_text)
    reader = {"Authorization": f"Bearer {key}"}
    assert acme.post(f"{P}/simulate", json={"document": draft, **WINDOW}, headers=reader).status_code == 403
    draft["rules"][0]["award"] = {"xpp": 5}
    bad = acme.post(f"{P}/simulate", json={"document": draft, **WINDOW}, headers=admin)
    assert bad.status_code == 422
    assert any(e["path"].startswith("rules[0].award") for e in bad.json()["errors"])
    backwards = {"document": document(acme_text), "from": WINDOW["to"], "to": WINDOW["from"]}
    assert acme.post(f"{P}/simulate", json=backwards, headers=admin).status_code == 422


# ---------------------------------------------------------------------------- analytics on a small, hand-computed case
#
# Four reps in October 2026 (New York): ann wins 9,000 on Mon 5 and 1,000 on Mon 12, bob 5,000 on the 6th,
# cat 3,000 on the 7th; dan logs one short call on the 8th (counted, never paid). XP per deal: 100 + amount/100.

OCTOBER = [
    event("a1", participant="ann", occurred_at="2026-10-05T15:00:00Z", data={"amount": 9000}),
    event("b1", participant="bob", occurred_at="2026-10-06T15:00:00Z", data={"amount": 5000}),
    event("c1", participant="cat", occurred_at="2026-10-07T15:00:00Z", data={"amount": 3000}),
    event("d1", "activity.logged", "dan", occurred_at="2026-10-08T15:00:00Z", data={"kind": "call", "duration_s": 30}),
    event("a2", participant="ann", occurred_at="2026-10-12T15:00:00Z", data={"amount": 1000}),
]
AS_OF = "2026-10-22T15:00:00Z"


def october(client: TestClient, admin: dict[str, str]) -> TestClient:
    for rep, team in (("ann", "east"), ("bob", "east"), ("cat", "west"), ("dan", "west")):
        client.put(f"{P}/participants/{rep}", json={"name": rep.title(), "teams": [team]}, headers=admin)
    send(client, admin, OCTOBER)
    return client


def get(client: TestClient, admin: dict[str, str], kind: str, **query: Any) -> dict[str, Any]:
    response = client.get(f"{P}/insights/{kind}", params=query, headers=admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_fairness_of_revenue_in_october(acme: TestClient, admin: dict[str, str]) -> None:
    body = get(october(acme, admin), admin, "fairness", metric="revenue", period="2026-10")
    # active: ann 10,000, bob 5,000, cat 3,000, dan 0 → Gini 2·(0 + 2·3,000 + 3·5,000 + 4·10,000)/(4·18,000) − 5/4
    assert (body["participants"], body["gini"], body["top10_share"]) == (4, 0.4444, 0.5556)
    assert body["sentence"].startswith("the top 10% (1 of 4 active) earned 56% of the revenue in 2026-10; Gini 0.44")
    assert body["teams"] == [
        {"team": "east", "participants": 2, "gini": 0.1667, "top10_share": 0.6667},
        {"team": "west", "participants": 2, "gini": 0.5, "top10_share": 1.0},
    ]
    assert body["top3"]["periods"][-1] == {"period": "2026-10", "top": ["ann", "bob", "cat"]}
    assert body["top3"]["repeat_share"] == 0.0
    assert body["never_rewarded"] | {"sentence": ""} == {
        "participants": 4,
        "never_rewarded": 1,
        "share": 0.25,
        "sentence": "",
    }
    assert body["inflation"]["months"][-1] == {
        "month": "2026-10",
        "events": 5,
        "per_event": {"xp": 116.0, "coins": 3.6},
    }
    assert {(b["badge"], b["grade"], b["holders"]) for b in body["badges"]} == {
        ("top-closer", "Bronze", 0),
        ("top-closer", "Gold", 0),
        ("hot-week", "Hot", 0),
    }
    quarter = get(acme, admin, "fairness", metric="revenue", period="2026-Q4")  # its months added up
    assert (quarter["participants"], quarter["gini"], quarter["top10_share"]) == (4, 0.4444, 0.5556)
    xp = get(acme, admin, "fairness", currency="xp", period="2026-10")  # 300, 150, 130, 0
    assert (xp["gini"], xp["top10_share"]) == (round(2 * (2 * 130 + 3 * 150 + 4 * 300) / (4 * 580) - 5 / 4, 4), 0.5172)


def test_fairness_refuses_what_it_cannot_answer(acme: TestClient, admin: dict[str, str]) -> None:
    for query in (
        {"period": "2026-10"},
        {"period": "2026-13", "metric": "revenue"},
        {"period": "2026-10", "metric": "revenue", "currency": "xp"},
        {"period": "2026-10", "metric": "deals_won"},
    ):
        assert acme.get(f"{P}/insights/fairness", params=query, headers=admin).status_code == 422, query


def test_engagement_by_week(acme: TestClient, admin: dict[str, str]) -> None:
    window = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    body = get(october(acme, admin), admin, "engagement", grain="week", **window)
    assert body["periods"] == [
        {"period": "2026-W41", "active": 4, "events": 4, "awards": 6, "awards_per_active": 1.5, "earned_nothing": 0.25},
        {"period": "2026-W42", "active": 1, "events": 1, "awards": 2, "awards_per_active": 2.0, "earned_nothing": 0.0},
    ]
    assert (body["active"], body["earned_nothing"]) == (4, 0.25)
    assert body["retention"] == [{"cohort": "2026-W41", "participants": 4, "active_share": [1.0, 0.25]}]
    assert body["first_award"] == {"newcomers": 4, "awarded": 3, "median_days": 0.0}
    assert {c["challenge"]: c["completed_by"] for c in body["challenges"]} == {
        "five-a-week": 0,
        "east-quarter": 0,
        "october-blitz": 0,
    }
    assert body["sentence"].startswith("4 participants were active; 25% of them earned nothing")


def test_segments_and_churn(acme: TestClient, admin: dict[str, str]) -> None:
    body = get(october(acme, admin), admin, "segments", as_of=AS_OF)
    # recency 10, 16, 15 days; frequency 2, 1, 1; revenue 10,000, 5,000, 3,000 → scores (4,4,4), (1,1,2), (2,1,1)
    assert body["metric"] == "revenue" and body["participants"] == 3
    assert {s["name"]: s["participants"] for s in body["segments"] if s["participants"]} == {
        "Champions": 1,
        "Lost": 1,
        "Hibernating": 1,
    }
    lost = get(acme, admin, "segments", as_of=AS_OF, segment="Lost")["members"]
    assert lost == [{"id": "bob", "name": "Bob", "recency_days": 16.0, "frequency": 1, "monetary": 5000.0}]
    risk = get(acme, admin, "churn", as_of=AS_OF)
    # ann's usual gap is 7 days (her two events), and the population's median gap for the others
    expected = [("bob", 16.0), ("cat", 15.0), ("dan", 14.0), ("ann", 10.0)]
    assert [(r["id"], r["risk"], r["days_since_last"], r["usual_gap_days"]) for r in risk["participants"]] == [
        (rep, round(1 - math.exp(-days / 7), 4), days, 7.0) for rep, days in expected
    ]
    assert acme.get(f"{P}/insights/segments", params={"segment": "Whales"}, headers=admin).status_code == 422


def test_suggested_personal_targets(acme: TestClient, admin: dict[str, str]) -> None:
    for rep, team in (("ann", "east"), ("bob", "east"), ("cat", "west")):
        acme.put(f"{P}/participants/{rep}", json={"name": rep.title(), "teams": [team]}, headers=admin)
    days = {"W41": (5, 6), "W42": (12, 13, 14, 15), "W43": (19, 20, 21, 22, 23, 24)}  # ann: 2, 4, 6 deals; W44 none
    send(
        acme,
        admin,
        [
            event(f"a-{day}", participant="ann", occurred_at=f"2026-10-{day:02d}T15:00:00Z")
            for week in days.values()
            for day in week
        ],
    )
    body = get(acme, admin, "targets", challenge="five-a-week", as_of="2026-11-02T15:00:00Z", periods=4)
    assert body["periods"] == ["2026-W41", "2026-W42", "2026-W43", "2026-W44"]
    # ann: median of 2, 4, 6, 0 = 3, × 1.1 → 4; bob has no history: east's median 3 → 4; cat: the challenge's 5
    assert [(r["id"], r["median"], r["target"], r["source"]) for r in body["participants"]] == [
        ("ann", 3.0, 4, "own"),
        ("bob", 3.0, 4, "team"),
        ("cat", None, 5, "challenge"),
    ]
    assert (
        body["sentence"]
        == "the median suggested target is 4 (the challenge asks 5); 2 of 3 participants would get a lower, "
        "reachable one"
    )
    wrong = acme.get(f"{P}/insights/targets", params={"challenge": "october-blitz"}, headers=admin)
    assert wrong.status_code == 422
