"""Pace on every challenge of ``GET …/challenges?participant=`` (issue 12, item 4), on SQLite and PostgreSQL.

Quests: steps done plus the current step's share, over the steps (as the profile). Team goals: the
participant's team's value against the team's target, not their own value. Rankings: the share of the
period gone and the days left (no target to pace against). Computed by hand: the one-off challenges run
from seven days before today to seven days after (New York), so today is day 8 of 15: 8/15 gone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from fastapi.testclient import TestClient

from levelup.challenges.closing import close_periods
from levelup.challenges.service import quest_pace, time_left
from levelup.runtime import Runtime
from tests.conftest import event

P = "/api/v1/programs/acme-sales"
NEW_YORK = ZoneInfo("America/New_York")
GONE = round(8 / 15, 4)  # day 8 of 15


@contextmanager
def same_day() -> Iterator[dt.date]:
    """Today in New York; skips the test if New York's date changed while it ran."""
    today = dt.datetime.now(NEW_YORK).date()
    yield today
    if dt.datetime.now(NEW_YORK).date() != today:
        pytest.skip("New York midnight passed during the test: 'today' moved under it")


def challenges(today: dt.date) -> list[dict[str, Any]]:
    start, end = today - dt.timedelta(days=7), today + dt.timedelta(days=7)
    dates = {"start": start.isoformat(), "end": end.isoformat()}
    team = {"metric": "revenue", "mode": "team", **dates}
    steps = [{"metric": "deals_won", "target": 2}, {"metric": "calls", "target": 2}]
    prizes = [{"rank": 1, "award": {"coins": 100}}]
    return [
        {"key": "two-steps", "kind": "quest", "steps": steps, "reward": {"coins": 10}, **dates},
        {"key": "one-step", "kind": "quest", "steps": [{"metric": "deals_won", "target": 1}], **dates},
        {"key": "east-range", "target": 100_000, "teams": ["east"], "reward": {"coins": 50}, **team},
        {"key": "east-small", "target": 50_000, "teams": ["east"], "reward": {"coins": 20}, **team},
        {"key": "any-team", "target": 100_000, **team},
        {"key": "range-blitz", "kind": "competition", "metric": "revenue", "prizes": prizes, **dates},
        {"key": "team-blitz", "kind": "competition", "prizes": prizes, **team},
        {
            "key": "old-blitz",
            "kind": "competition",
            "metric": "revenue",
            "prizes": prizes,
            "start": (today - dt.timedelta(days=20)).isoformat(),
            "end": (today - dt.timedelta(days=10)).isoformat(),
        },
    ]


def yours(client: TestClient, admin: dict[str, str], who: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"{P}/challenges", params={"participant": who}, headers=admin)
    assert response.status_code == 200, response.text
    return {c["key"]: c.get("you", {}) for c in response.json()["challenges"]}


PACED = ("share", "elapsed", "pace", "days_left")


def test_quests_team_goals_and_rankings_are_paced(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    with same_day() as today:
        doc = yaml.safe_load(acme_text)
        doc["challenges"] = challenges(today)
        response = client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin)
        assert response.status_code == 201, response.text
        people = {"rep-17": ["east"], "rep-18": ["east"], "rep-19": ["west"], "rep-20": ["east", "west"]}
        for who, teams in people.items():
            response = client.put(f"{P}/participants/{who}", json={"teams": teams}, headers=admin)
            assert response.status_code in (200, 201), response.text
        now = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)).isoformat()
        sent = [
            event("dana-1", participant="rep-17", occurred_at=now, data={"amount": 2_500}),
            event("dana-2", participant="rep-17", occurred_at=now, data={"amount": 2_500}),
            event("eli-1", participant="rep-18", occurred_at=now, data={"amount": 50_000}),
            event("fay-1", participant="rep-19", occurred_at=now, data={"amount": 10_000}),
        ]
        response = client.post(f"{P}/events", json={"events": sent}, headers=admin)
        assert response.status_code == 200, response.text
        assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 4, response.text
        dana, fay, gus = (yours(client, admin, who) for who in ("rep-17", "rep-19", "rep-20"))
        profile = client.get(f"{P}/participants/rep-17", headers=admin).json()

    # a quest half done mid-period: step 1 (two deals) done, step 2 (calls) at 0 of 2 -> (1 + 0) / 2 = 0.5
    # against 8/15 = 0.533 gone: within a tenth, on track
    assert dana["two-steps"] == {
        "step": 2, "of": 2, "name": "calls", "metric": "calls", "progress": 0, "target": 2, "completed": False,
        "share": 0.5, "elapsed": GONE, "pace": "on", "days_left": 7,
    }  # fmt: skip
    on_profile = next(c for c in profile["challenges"] if c["key"] == "two-steps")
    assert {k: on_profile[k] for k in PACED} == {k: dana["two-steps"][k] for k in PACED}  # one pace
    # a finished quest: done
    assert dana["one-step"] == {
        "step": 1, "of": 1, "completed": True, "share": 1.0, "elapsed": GONE, "pace": "done", "days_left": 7
    }  # fmt: skip

    # a team goal: Dana's own 5,000 is 5% of 100,000 (behind, were it hers); east's 55,000 is 55%: on
    assert dana["east-range"] == {
        "name": "east", "progress": 55_000, "target": 100_000, "completed": False,
        "share": 0.55, "elapsed": GONE, "pace": "on", "days_left": 7,
    }  # fmt: skip
    # east reached 50,000: done (paid when the period closes)
    assert dana["east-small"] == {
        "name": "east", "progress": 55_000, "target": 50_000, "completed": True,
        "share": 1.0, "elapsed": GONE, "pace": "done", "days_left": 7,
    }  # fmt: skip
    # Fay's team (west) is not in east-range: her own value, nothing to pace
    assert fay["east-range"] == {"progress": 10_000, "target": 100_000, "completed": False}
    # on a team goal for any team, Fay's west: 10,000 is 10% of 100,000 against 53% gone: behind
    assert {k: fay["any-team"][k] for k in ("name", "progress", "share", "pace")} == {
        "name": "west", "progress": 10_000, "share": 0.1, "pace": "behind"
    }  # fmt: skip
    # Gus is in east and west: the team furthest along is shown (east, 55,000), though he did nothing
    assert {k: gus["any-team"][k] for k in ("name", "progress", "share", "pace")} == {
        "name": "east", "progress": 55_000, "share": 0.55, "pace": "on"
    }  # fmt: skip

    # a ranking: no target to pace against, the time only
    assert dana["range-blitz"] == {
        "progress": 5_000,
        "target": None,
        "completed": False,
        "elapsed": GONE,
        "days_left": 7,
    }
    # a team ranking: the team's value, and the time
    assert dana["team-blitz"] == {
        "name": "east", "progress": 55_000, "target": None, "completed": False, "elapsed": GONE, "days_left": 7
    }  # fmt: skip
    assert dana["old-blitz"] == {"progress": 0, "target": None, "completed": False, "elapsed": 1.0, "days_left": 0}


def test_a_closed_team_goal_is_done_as_closing_judged_it(
    client: TestClient, runtime: Runtime, admin: dict[str, str], acme_text: str
) -> None:
    """East reached 50,000 in a range that ended and was closed (and paid); a deal reversed afterwards
    lowers east's value, not what closing judged: still done."""
    with same_day() as today:
        doc = yaml.safe_load(acme_text)
        start, end, then = (today - dt.timedelta(days=n) for n in (20, 10, 15))
        doc["challenges"] = [
            {
                "key": "east-past",
                "metric": "revenue",
                "mode": "team",
                "teams": ["east"],
                "target": 50_000,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "reward": {"coins": 20},
            }
        ]
        response = client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin)
        assert response.status_code == 201, response.text
        response = client.put(f"{P}/participants/rep-18", json={"teams": ["east"]}, headers=admin)
        assert response.status_code in (200, 201), response.text
        noon = dt.datetime.combine(then, dt.time(12), NEW_YORK).isoformat()
        sent = [event("eli-old", participant="rep-18", occurred_at=noon, data={"amount": 60_000})]
        assert client.post(f"{P}/events", json={"events": sent}, headers=admin).status_code == 200
        before = yours(client, admin, "rep-18")["east-past"]
        closed = close_periods(runtime, program_keys=["acme-sales"])
        assert [(c.challenge, c.paid) for c in closed] == [("east-past", 1)]
        back = [event("eli-back", "deal.lost", participant="rep-18", occurred_at=noon, reverses="eli-old")]
        assert client.post(f"{P}/events", json={"events": back}, headers=admin).status_code == 200
        after = yours(client, admin, "rep-18")["east-past"]
    ended = {"elapsed": 1.0, "days_left": 0, "pace": "done", "completed": True, "name": "east", "target": 50_000}
    assert before == ended | {"progress": 60_000, "share": 1.0}
    assert after == ended | {"progress": 0, "share": 0.0}  # paid at close: done, though the value fell


def test_quest_pace_and_time_left_by_hand() -> None:
    mid_november = dt.date(2026, 11, 15)  # 15 of November's 30 days gone
    half = {"step": 2, "of": 2, "progress": 0.0, "target": 2.0, "completed": False}
    assert quest_pace(half, "2026-11", mid_november) == {"share": 0.5, "elapsed": 0.5, "pace": "on", "days_left": 15}
    # step 2 of 4 half done: (1 + 0.5) / 4 = 0.375, more than a tenth under 0.5
    quarter_on = {"step": 2, "of": 4, "progress": 1.0, "target": 2.0, "completed": False}
    assert quest_pace(quarter_on, "2026-11", mid_november)["share"] == 0.375
    assert quest_pace(quarter_on, "2026-11", mid_november)["pace"] == "behind"
    finished = {"step": 4, "of": 4, "completed": True}
    assert quest_pace(finished, "2026-11", mid_november) == {
        "share": 1.0, "elapsed": 0.5, "pace": "done", "days_left": 15
    }  # fmt: skip
    assert quest_pace(half, "all", mid_november) == {}  # all time: no end, no pace
    assert time_left("2026-11", mid_november) == {"elapsed": 0.5, "days_left": 15}
    assert time_left("2026-11", dt.date(2026, 12, 2)) == {"elapsed": 1.0, "days_left": 0}
    assert time_left("all", mid_november) == {}
