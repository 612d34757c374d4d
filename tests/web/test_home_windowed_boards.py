"""The participant home shows a rolling board and a currency board over a window once their rows are kept
(``leaderboards.windows``), with the rank a read of the board gives; before that it leaves them out rather than
rank every participant afresh for one page."""

from __future__ import annotations

import datetime as dt

import yaml
from fastapi.testclient import TestClient

from levelup.leaderboards import windows
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES, event

P = "/api/v1/programs/acme-sales"


def test_the_home_shows_windowed_boards_once_kept(client: TestClient, admin: dict[str, str], runtime: Runtime) -> None:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["leaderboards"] += [
        {"key": "revenue-week-rolling", "name": "Revenue, last 7 days", "metric": "revenue", "window": "last_7_days"},
        {"key": "xp-this-week", "name": "XP this week", "currency": "xp", "window": "week"},
    ]
    applied = client.put(P, content=yaml.safe_dump(doc), headers={**admin, "Content-Type": "application/yaml"})
    assert applied.status_code == 201, applied.text
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    deals = [
        event(
            f"d-{who}", participant=who, data={"amount": amount}, occurred_at=(now - dt.timedelta(hours=1)).isoformat()
        )
        for who, amount in (("rep-1", 9_000), ("rep-2", 4_000), ("rep-3", 6_000))
    ]
    assert client.post(f"{P}/events", json={"events": deals}, headers=admin).status_code == 200
    link = client.post(f"{P}/links", json={"kind": "participant", "participant": "rep-3"}, headers=admin).json()
    home = link["url"].replace("http://testserver", "")

    before = client.get(home).text
    assert "Revenue, last 7 days" not in before and "XP this week" not in before  # would be ranked afresh
    assert "Revenue month" in before  # a plain board, read by index

    windows.slide(runtime, now=now)
    after = client.get(home).text
    assert "Revenue, last 7 days" in after and "XP this week" in after
    board = client.get(f"{P}/leaderboards/revenue-week-rolling", params={"around": "rep-3", "limit": 1}, headers=admin)
    mine = next(e for e in board.json()["entries"] if e["id"] == "rep-3")
    assert mine["rank"] == 2 and board.json()["total"] == 3
    rolling = after[after.index("Revenue, last 7 days") :]
    assert 'aria-label="rank 2 of 3"' in rolling[: rolling.index("</li>")]  # the home says what the board says
