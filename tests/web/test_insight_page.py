"""The studio's insight page: each analysis is the API's over the same window (its sentence, its rows), the
engagement chart has its words beside it, and the window ends after the last event unless told."""

from __future__ import annotations

import html
import re

from tests.conftest import event
from tests.web.conftest import Game, P
from tests.web.test_admin import sign_in
from tests.web.test_pages import text

STUDIO = "/admin/p/acme-sales/insights"
WINDOW = {"from": "2026-08-30T00:00:00Z", "to": "2026-11-29T00:00:00Z"}  # 13 weeks to 28 November


def _played(game: Game) -> None:
    """A week earlier (two weeks on the chart), and the same deal sent twice under two ids (a flag)."""
    earlier = event("d-early", occurred_at="2026-11-10T10:00:00Z", data={"amount": 5_000, "deal_id": "E-1"})
    twice = [event(f"dup-{i}", participant="rep-9", data={"amount": 777, "deal_id": "DUP"}) for i in range(2)]
    game.post(earlier, *twice)


def said(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def test_each_analysis_is_the_apis_over_the_same_window(game: Game) -> None:
    _played(game)
    sign_in(game.client)
    api = f"{P}/insights"
    expected = {
        "engagement": game.client.get(f"{api}/engagement", params=WINDOW, headers=game.admin).json(),
        "fairness": game.client.get(
            f"{api}/fairness", params={"period": "2026-11", "metric": "revenue"}, headers=game.admin
        ).json(),
        "segments": game.client.get(f"{api}/segments", params={"as_of": WINDOW["to"]}, headers=game.admin).json(),
        "churn": game.client.get(f"{api}/churn", params={"as_of": WINDOW["to"]}, headers=game.admin).json(),
        "flags": game.client.get(f"{api}/flags", params=WINDOW, headers=game.admin).json(),
        "experiments": game.client.get(f"{api}/experiments", params=WINDOW, headers=game.admin).json(),
    }
    for view, body in expected.items():
        response = game.client.get(STUDIO, params={"view": view, "to": "2026-11-28", "weeks": 13})
        assert response.status_code == 200, (view, response.text)
        shown = html.unescape(text(response.text))
        assert "sentence" in body, (view, body)
        assert said(body["sentence"]) in shown, (view, body["sentence"], shown)
        assert "2026-08-30 to 2026-11-28" in shown
    engagement = text(game.client.get(STUDIO, params={"view": "engagement", "to": "2026-11-28"}).text)
    weeks = {p["period"]: p for p in expected["engagement"]["periods"]}
    assert set(weeks) == {"2026-W46", "2026-W47"} and weeks["2026-W47"]["active"] == 2
    assert "2026-W46 1 active, 0% paid nothing; 2026-W47 2 active, 0% paid nothing." in engagement  # the chart's words
    flags = game.client.get(STUDIO, params={"view": "flags", "to": "2026-11-28"}).text
    assert expected["flags"]["kinds"]["repeated"] == 1
    assert 'href="/admin/p/acme-sales/events/dup-0"' in flags and 'href="/admin/p/acme-sales/events/dup-1"' in flags
    fairness = text(game.client.get(STUDIO, params={"view": "fairness", "to": "2026-11-28"}).text)
    assert said(expected["fairness"]["top3"]["sentence"]) in fairness and "east" in fairness
    churn = game.client.get(STUDIO, params={"view": "churn", "to": "2026-11-28"}).text
    assert all(p["id"] in churn for p in expected["churn"]["participants"])


def test_the_window_ends_after_the_last_event_and_bad_input_is_refused(game: Game) -> None:
    sign_in(game.client)
    page = game.client.get(STUDIO).text
    assert "2026-08-22 to 2026-11-20" in text(page)  # the last event is of 20 November: 13 weeks to that day
    assert re.search(r'<strong aria-current="page">Engagement</strong>', page)
    assert 'href="/admin/p/acme-sales/insights?view=churn&amp;to=2026-11-20&amp;weeks=13"' in page
    for bad in ({"view": "nope"}, {"weeks": "0"}, {"weeks": "105"}, {"to": "yesterday"}):
        assert game.client.get(STUDIO, params=bad).status_code == 422, bad
    assert game.client.get(STUDIO, params={"view": "fairness", "period": "2026-13"}).status_code == 422
    game.client.cookies.clear()
    assert game.client.get(STUDIO).status_code == 401
