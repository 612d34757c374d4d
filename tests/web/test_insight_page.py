"""The studio's insight page: it only reads; "Compute" (a POST with the session's CSRF token) runs an analysis
and keeps it, which is then the API's over the same window (its sentence, its rows), with when and by whom;
the engagement chart has its words beside it; the window ends after the last event unless told; an erasure
drops what was kept (it may name the erased)."""

from __future__ import annotations

import html
import re
from typing import Any

from fastapi.testclient import TestClient

from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event
from tests.web.conftest import Game, P
from tests.web.test_admin import sign_in
from tests.web.test_pages import text

STUDIO = "/admin/p/acme-sales/insights"
WINDOW = {"from": "2026-08-30T00:00:00Z", "to": "2026-11-29T00:00:00Z"}  # 13 weeks to 28 November
CHOSEN = {"to": "2026-11-28", "weeks": "13"}


def _played(game: Game) -> None:
    """A week earlier (two weeks on the chart), and the same deal sent twice under two ids (a flag)."""
    earlier = event("d-early", occurred_at="2026-11-10T10:00:00Z", data={"amount": 5_000, "deal_id": "E-1"})
    twice = [event(f"dup-{i}", participant="rep-9", data={"amount": 777, "deal_id": "DUP"}) for i in range(2)]
    game.post(earlier, *twice)


def said(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def computed(client: TestClient, csrf: str, view: str, **chosen: str) -> str:
    """Compute one analysis over CHOSEN (or ``chosen``) and read the page it goes back to."""
    posted = client.post(STUDIO, data={"csrf": csrf, "view": view} | (chosen or CHOSEN), follow_redirects=False)
    assert posted.status_code == 303, posted.text
    shown = client.get(posted.headers["location"])
    assert shown.status_code == 200
    return shown.text


def test_each_analysis_once_computed_is_the_apis_over_the_same_window(game: Game) -> None:
    _played(game)
    csrf = sign_in(game.client)
    api = f"{P}/insights"

    def answer(kind: str, params: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = game.client.get(f"{api}/{kind}", params=params, headers=game.admin).json()
        assert "sentence" in body, (kind, body)
        return body

    expected = {
        "engagement": answer("engagement", WINDOW),
        "fairness": answer("fairness", {"period": "2026-11", "metric": "revenue"}),
        "segments": answer("segments", {"as_of": WINDOW["to"]}),
        "churn": answer("churn", {"as_of": WINDOW["to"]}),
        "flags": answer("flags", WINDOW),
        "experiments": answer("experiments", WINDOW),
    }
    pages = {}
    for view, body in expected.items():
        before = text(game.client.get(STUDIO, params={"view": view} | CHOSEN).text)
        assert "Not computed for this window yet" in before and body["sentence"] not in before  # a page only reads
        pages[view] = computed(game.client, csrf, view)
        shown = html.unescape(text(pages[view]))
        assert said(body["sentence"]) in shown, (view, body["sentence"], shown)
        assert "2026-08-30 to 2026-11-28" in shown
        assert re.search(r"Computed \d{4}-\d\d-\d\d \d\d:\d\d UTC by bootstrap-admin", shown), shown
    engagement = text(pages["engagement"])
    weeks = {p["period"]: p for p in expected["engagement"]["periods"]}
    assert set(weeks) == {"2026-W46", "2026-W47"} and weeks["2026-W47"]["active"] == 2
    assert "2026-W46 1 active, 0% paid nothing; 2026-W47 2 active, 0% paid nothing." in engagement  # the chart's words
    assert expected["flags"]["kinds"]["repeated"] == 1
    for dup in ("dup-0", "dup-1"):
        assert f'href="/admin/p/acme-sales/events/{dup}"' in pages["flags"]
    fairness = html.unescape(text(pages["fairness"]))
    assert said(expected["fairness"]["top3"]["sentence"]) in fairness and "east" in fairness
    assert all(p["id"] in pages["churn"] for p in expected["churn"]["participants"])
    october = html.unescape(text(computed(game.client, csrf, "fairness", **CHOSEN, period="2026-10")))
    assert "in 2026-10" in october and "in 2026-11" not in october


def test_the_window_ends_after_the_last_event_and_bad_input_is_refused(game: Game) -> None:
    csrf = sign_in(game.client)
    page = game.client.get(STUDIO).text
    assert "2026-08-22 to 2026-11-20" in text(page)  # the last event is of 20 November: 13 weeks to that day
    assert re.search(r'<strong aria-current="page">Engagement</strong>', page)
    assert 'href="/admin/p/acme-sales/insights?view=churn&amp;to=2026-11-20&amp;weeks=13"' in page
    for bad in ({"view": "nope"}, {"weeks": "0"}, {"weeks": "105"}, {"to": "yesterday"}):
        assert game.client.get(STUDIO, params=bad).status_code == 422, bad
    for field, value in (("view", "nope"), ("to", "yesterday"), ("weeks", "105"), ("period", "2026-13")):
        form = {"csrf": csrf, "view": "fairness"} | CHOSEN | {field: value}
        refused = game.client.post(STUDIO, data=form)
        assert refused.status_code == 422 and field in text(refused.text), (field, text(refused.text))
    assert game.client.post(STUDIO, data={"csrf": "0" * 64, "view": "churn"} | CHOSEN).status_code == 403
    game.client.cookies.clear()
    assert game.client.get(STUDIO).status_code == 401


def test_an_erasure_drops_the_kept_analyses(game: Game, runtime: Runtime) -> None:
    csrf = sign_in(game.client)
    assert "Bob Marley" in computed(game.client, csrf, "churn")
    erased = game.client.delete(f"{P}/participants/rep-9", headers=game.admin)
    assert erased.status_code == 200, erased.text
    with runtime.db.read() as connection:
        assert connection.execute(t.insight_snapshots.select()).first() is None
    page = text(game.client.get(STUDIO, params={"view": "churn"} | CHOSEN).text)
    assert "Not computed for this window yet" in page and "Bob Marley" not in page
