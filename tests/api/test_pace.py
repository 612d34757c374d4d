"""Pace and personal targets where participants see their challenges: the profile and ``GET …/challenges``."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import yaml
from fastapi.testclient import TestClient

from tests.conftest import event

P = "/api/v1/programs/acme-sales"


def test_the_profile_and_the_challenge_list_show_one_pace(
    client: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    doc = yaml.safe_load(acme_text)
    goal = next(c for c in doc["challenges"] if c["key"] == "five-a-week")
    goal["target"], goal["auto"] = "auto", {"fallback": 4}
    assert client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin).status_code == 201
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sent = [event(f"d{i}", occurred_at=now.isoformat().replace("+00:00", "Z")) for i in range(2)]
    assert client.post(f"{P}/events", json={"events": sent}, headers=admin).status_code == 200
    today = now.astimezone(ZoneInfo("America/New_York")).date()
    elapsed = today.isoweekday() / 7  # Monday: 1 of 7 days gone
    share = 2 / 4  # no history, no team: the fallback, 4
    expected = "ahead" if share > elapsed + 0.1 else "on" if share >= elapsed - 0.1 else "behind"
    profile = client.get(f"{P}/participants/rep-17", headers=admin).json()
    mine = next(c for c in profile["challenges"] if c["key"] == "five-a-week")
    assert mine["target"] == 4 and mine["progress"] == 2 and mine["share"] == 0.5
    assert (
        mine["pace"] == expected
        and mine["elapsed"] == round(elapsed, 4)
        and mine["days_left"] == 7 - today.isoweekday()
    )
    listed = client.get(f"{P}/challenges", params={"participant": "rep-17"}, headers=admin).json()
    you = next(c for c in listed["challenges"] if c["key"] == "five-a-week")["you"]
    assert {k: you[k] for k in ("target", "share", "elapsed", "pace", "days_left")} == {
        k: mine[k] for k in ("target", "share", "elapsed", "pace", "days_left")
    }
