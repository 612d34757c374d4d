"""Still possible over HTTP: the gap to each prize rank and the chance at one's own pace, computed by hand."""

from __future__ import annotations

import math
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import event

P = "/api/v1/programs/acme-sales"
# 22 October 2026, midnight in New York: 21 days of october-blitz behind, 10 ahead
AS_OF = "as_of=2026-10-22T04:00:00Z"
RACE = (
    "  - {key: first-to-3, kind: competition, format: race, metric: deals_won, target: 3, start: 2026-10-01,\n"
    "     end: 2026-10-31, prizes: [{rank: 1, award: {coins: 50}}, {rank: 2, award: {coins: 20}}]}\n"
)


TEAM_RANKING = (
    "  - {key: team-october, kind: competition, mode: team, metric: revenue, start: 2026-10-01, end: 2026-10-31,\n"
    "     prizes: [{rank: 1, award: {coins: 10}}]}\n"
)


def deal(event_id: str, who: str, day: int, amount: int) -> dict[str, Any]:
    return event(event_id, participant=who, occurred_at=f"2026-10-{day:02d}T15:00:00Z", data={"amount": amount})


def at_least(k: int, mu: float) -> float:
    """P(N ≥ k), N ~ Poisson(mu), written out."""
    return 1 - sum(math.exp(-mu) * mu**i / math.factorial(i) for i in range(k))


def competition(client: TestClient, admin: dict[str, str], query: str) -> dict[str, Any]:
    response = client.get(f"{P}/insights/possible?{AS_OF}&{query}", headers=admin)
    assert response.status_code == 200, response.text
    [found] = response.json()["competitions"]
    assert isinstance(found, dict)
    return found


def chances(row: dict[str, Any]) -> list[tuple[int, float, float, bool]]:
    return [(p["rank"], p["needed"], p["chance"], p["holds"]) for p in row["prizes"]]


def test_the_gap_to_each_prize_and_the_chance_at_one_s_pace(acme: TestClient, admin: dict[str, str]) -> None:
    events = [deal("a1", "ann", 5, 9000), deal("b1", "bob", 6, 5000), deal("c1", "cat", 7, 3000)]
    events += [deal("a2", "ann", 12, 1000)]
    events += [{"id": "d1", "type": "activity.logged", "participant": "dan", "occurred_at": "2026-10-08T15:00:00Z"}]
    assert acme.post(f"{P}/events", json={"events": events}, headers=admin).status_code == 200
    key = acme.post("/api/v1/keys", json={"role": "read", "programs": ["acme-sales"]}, headers=admin).json()["key"]
    blitz = competition(acme, {"Authorization": f"Bearer {key}"}, "challenge=october-blitz")
    assert (blitz["period"], blitz["days_elapsed"], blitz["days_left"], blitz["entrants"]) == (
        "20261001-20261031",
        21.0,
        10.0,
        3,
    )
    assert blitz["prizes"] == [
        {"rank": 1, "holder": "ann", "value": 10000.0},
        {"rank": 2, "holder": "bob", "value": 5000.0},
        {"rank": 3, "holder": "cat", "value": 3000.0},
    ]
    rows = {r["id"]: r for r in blitz["participants"]}
    assert list(rows) == ["ann", "bob", "cat"]  # the board's order
    mu = 10 / 21  # one deal in 21 days, over the 10 left
    # bob (5,000 in one deal): rank 1 is 5,000 away, one more deal of his average: P(N ≥ 1)
    assert chances(rows["bob"]) == [(1, 5000, round(at_least(1, mu), 4), False), (2, 0, 1, True), (3, 0, 1, True)]
    assert rows["bob"]["sentence"] == "bob holds rank 2 now; 5,000 more revenue would take rank 1 (38% at their pace)."
    # cat (3,000 a deal): rank 1 takes ⌈7,000 / 3,000⌉ = 3 deals, rank 2 one; the third prize has no one else
    assert chances(rows["cat"]) == [
        (1, 7000, round(at_least(3, mu), 4), False),
        (2, 2000, round(at_least(1, mu), 4), False),
        (3, 0, 1, True),
    ]
    assert (rows["ann"]["events"], rows["ann"]["per_day"]) == (2, round(2 / 21, 4))
    assert rows["ann"]["sentence"] == "ann holds rank 1 now."
    # dan has no deal yet: everything is out of reach at his pace
    dan = competition(acme, admin, "challenge=october-blitz&participant=dan")["participants"]
    assert [chances(r) for r in dan] == [[(1, 10000, 0, False), (2, 5000, 0, False), (3, 3000, 0, False)]]
    assert dan[0]["sentence"] == "dan has no prize within reach at their pace."


def test_a_race_s_places_are_won_once(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    text = acme_text.replace("leaderboards:\n", RACE + "leaderboards:\n", 1)
    assert client.put(P, content=text, headers={**admin, "Content-Type": "application/yaml"}).status_code == 201
    events = [deal("a1", "ann", 5, 100), deal("a2", "ann", 6, 100), deal("a3", "ann", 7, 100)]
    events += [deal("b1", "bob", 6, 100)]
    assert client.post(f"{P}/events", json={"events": events}, headers=admin).status_code == 200
    race = competition(client, admin, "challenge=first-to-3")
    rows = {r["id"]: r for r in race["participants"]}
    assert chances(rows["ann"]) == [(1, 0, 1, True), (2, 0, 1, True)]  # finished first
    # bob needs 2 more deals: first place is gone; second takes P(N ≥ 2) at 1 deal in 21 days
    assert chances(rows["bob"]) == [(1, 2, 0, False), (2, 2, round(at_least(2, 10 / 21), 4), False)]


def test_a_team_competition_paces_each_team_by_its_members(
    client: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    text = acme_text.replace("leaderboards:\n", TEAM_RANKING + "leaderboards:\n", 1)
    assert client.put(P, content=text, headers={**admin, "Content-Type": "application/yaml"}).status_code == 201
    for rep, team in (("ann", "east"), ("bob", "east"), ("cat", "west")):
        client.put(f"{P}/participants/{rep}", json={"teams": [team]}, headers=admin)
    events = [deal("a1", "ann", 5, 9000), deal("b1", "bob", 6, 5000), deal("c1", "cat", 7, 3000)]
    assert client.post(f"{P}/events", json={"events": events}, headers=admin).status_code == 200
    teams = competition(client, admin, "challenge=team-october")
    assert (teams["mode"], teams["prizes"]) == ("team", [{"rank": 1, "holder": "east", "value": 14000.0}])
    rows = {r["id"]: r for r in teams["participants"]}
    # west: 11,000 behind, 3,000 a deal (its one member's one deal) → ⌈11,000 / 3,000⌉ = 4 deals at 1 in 21 days
    assert (rows["east"]["events"], chances(rows["east"])) == (2, [(1, 0, 1, True)])
    assert chances(rows["west"]) == [(1, 11000, round(at_least(4, 10 / 21), 4), False)]


def test_a_past_as_of_is_refused_once_the_board_holds_later_events(acme: TestClient, admin: dict[str, str]) -> None:
    """Regression: bob's deal of the 25th was in the board's 8,000 while his pace, counted to the 22nd, had
    none — "8,000 more" at an average of 8,000 a deal over no deal. A board read as it stands cannot be
    answered as of an earlier day: 422 naming as_of; as of the 26th it is what it is."""
    events = [deal("a1", "ann", 5, 9000), deal("b1", "bob", 25, 8000)]
    assert acme.post(f"{P}/events", json={"events": events}, headers=admin).status_code == 200
    refused = acme.get(f"{P}/insights/possible?{AS_OF}&challenge=october-blitz", headers=admin)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    [error] = refused.json()["errors"]
    assert error["path"] == "as_of" and "the last at 2026-10-25T15:00:00+00:00" in error["message"]
    later = acme.get(f"{P}/insights/possible?as_of=2026-10-26T04:00:00Z&challenge=october-blitz", headers=admin)
    assert later.status_code == 200
    rows = {r["id"]: r for r in later.json()["competitions"][0]["participants"]}
    # bob: 1,000 behind ann, 8,000 a deal → one deal in the 6 days left at 1 deal in 25 days
    assert chances(rows["bob"]) == [(1, 1000, round(at_least(1, 6 / 25), 4), False), (2, 0, 1, True), (3, 0, 1, True)]


def test_possible_says_what_is_wrong(acme: TestClient, admin: dict[str, str]) -> None:
    for query in ("challenge=five-a-week", "challenge=nope"):
        bad = acme.get(f"{P}/insights/possible?{query}", headers=admin)
        assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "challenge"
    assert acme.get(f"{P}/insights/possible?as_of=2026-10-22", headers=admin).status_code == 422
    # after the end of October nothing is open
    late = acme.get(f"{P}/insights/possible?as_of=2026-11-05T00:00:00Z", headers=admin)
    assert late.status_code == 200 and late.json()["competitions"] == []
