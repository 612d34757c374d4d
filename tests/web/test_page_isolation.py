"""The pages' isolation matrix: every page route of a program (the links' pages and the admin studio's) ×
who opens it (nobody, a participant link, a TV link, a link of another program, an API key, an admin
session for every program or for another program only) × this program, another one, one that does not
exist → the expected status; a refusal never tells an existing program from a missing one, and nothing
that was refused changed anything. The routes are read from the app, so a new page is in the matrix the
day it is added (a path parameter the matrix does not know fails here, saying which)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from levelup.web import sessions
from tests.conftest import ADMIN_KEY, event
from tests.web.conftest import KUDOS, Game, P

OTHER = "other-game"
MISSING = "no-such-game"
LINK_PAGES = re.compile(r"^/p/\{program\}/(?P<page>[a-z]+)")
STUDIO_PAGES = re.compile(r"^/admin/p/\{program\}")


def page_routes(client: TestClient) -> Iterator[tuple[str, str]]:
    """(method, path template) of every page of a program, as the app routes them (FastAPI keeps an
    included router whole: its routes are read from it)."""
    app: Any = client.app
    routes = [r for top in app.routes for r in getattr(getattr(top, "original_router", None), "routes", [top])]
    for route in routes:
        if isinstance(route, APIRoute) and (LINK_PAGES.match(route.path) or STUDIO_PAGES.match(route.path)):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path


def link_kind(template: str) -> str | None:
    """The kind of link a page opens with (``tv`` or ``participant``); None for the studio's."""
    found = LINK_PAGES.match(template)
    if found is None:
        return None
    return "tv" if found.group("page") == "tv" else "participant"


def fill(template: str, program: str, values: dict[str, str]) -> str:
    path = template.replace("{program}", program)
    unknown = set(re.findall(r"\{(\w+)\}", path)) - set(values)
    assert not unknown, f"{template}: add a value for {unknown} to the matrix"
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def session(client: TestClient, key: str) -> str:
    """A studio session cookie for ``key`` (signed in, then taken off the client so each call says whose)."""
    response = client.post("/admin/sign-in", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    cookie = client.cookies[sessions.COOKIE]
    client.cookies.clear()
    return cookie


def snapshot(client: TestClient, admin: dict[str, str]) -> dict[str, Any]:
    """What a refused request must not change: versions, balances, links, events, cases, redemptions."""
    seen: dict[str, Any] = {}
    for program in ("acme-sales", OTHER):
        base = f"/api/v1/programs/{program}"
        seen[program] = [
            client.get(base, headers=admin).json()["version"],
            [client.get(f"{base}/participants/{p}", headers=admin).json() for p in ("rep-17", "rep-9")],
            client.get(f"{base}/links", headers=admin).json(),
            client.get(f"{base}/events", headers=admin).json(),
            client.get(f"{base}/redemptions", headers=admin).json(),
            client.get(f"{base}/audit", headers=admin).json(),
        ]
    return seen


class Matrix(NamedTuple):
    game: Game
    callers: dict[str, dict[str, str]]  # name → how it calls, what it is (a link's kind…) and its program
    values: dict[str, str]  # path parameters of things made here


@pytest.fixture
def matrix(game: Game, acme_text: str) -> Matrix:
    """The game and another program with the same event id and team, its own links and admin."""
    client, admin = game.client, game.admin
    other = acme_text.replace("program: acme-sales", f"program: {OTHER}") + KUDOS
    made = client.put(f"/api/v1/programs/{OTHER}", content=other, headers={**admin, "Content-Type": "application/yaml"})
    assert made.status_code == 201, made.text
    client.put(f"/api/v1/programs/{OTHER}/participants/rep-17", json={"name": "O", "teams": ["east"]}, headers=admin)
    posted = client.post(f"/api/v1/programs/{OTHER}/events", json={"events": [event("d-1")]}, headers=admin)
    assert posted.status_code == 200, posted.text  # the same event id and team in both programs
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["level.changed"]}
    made = client.post(f"{P}/webhooks", json=hook, headers=admin)
    assert made.status_code == 201, made.text
    foreign = {
        kind: client.post(f"/api/v1/programs/{OTHER}/links", json=body, headers=admin).json()["token"]
        for kind, body in (("tv", {"kind": "tv"}), ("participant", {"kind": "participant", "participant": "rep-17"}))
    }
    other_admin = client.post("/api/v1/keys", json={"role": "admin", "programs": [OTHER]}, headers=admin).json()
    reader = client.post("/api/v1/keys", json={"role": "read", "programs": ["*"]}, headers=admin).json()
    callers = {
        "nobody": {"is": "nobody"},
        "participant link": {"token": game.dana["token"], "is": "participant", "home": "acme-sales"},
        "TV link": {"token": game.tv["token"], "is": "tv", "home": "acme-sales"},
        "other program's participant link": {"token": foreign["participant"], "is": "participant", "home": OTHER},
        "other program's TV link": {"token": foreign["tv"], "is": "tv", "home": OTHER},
        "API admin key": {"bearer": ADMIN_KEY, "is": "key"},
        "API read key": {"bearer": reader["key"], "is": "key"},
        "studio session": {"cookie": session(client, ADMIN_KEY), "is": "studio", "home": "*"},
        "other program's studio session": {
            "cookie": session(client, other_admin["key"]),
            "is": "studio",
            "home": OTHER,
        },
    }
    return Matrix(game, callers, {"webhook_id": str(made.json()["id"])})


def call(client: TestClient, method: str, path: str, caller: dict[str, str]) -> int:
    client.cookies.clear()
    if "cookie" in caller:
        client.cookies.set(sessions.COOKIE, caller["cookie"], path="/admin")
    headers = {"Authorization": f"Bearer {caller['bearer']}"} if "bearer" in caller else {}
    params = {"token": caller["token"]} if "token" in caller else {}
    form = {"csrf": "0" * 64, "document": "program: x", "message": "x", "reward": "gift-card-25"}
    response = client.request(
        method, path, params=params, headers=headers, data=form if method == "POST" else None, follow_redirects=False
    )
    client.cookies.clear()
    return response.status_code


def expected(template: str, method: str, caller: dict[str, str], program: str) -> int:
    """The status a page gives: a link's page 404 unless opened by a link of its program (403 for a link
    of the other kind); the studio 401 without a session, 403 for another program's admin or a form
    without its CSRF token, 404 for a program that does not exist or a thing (the webhook) of another."""
    kind, home = link_kind(template), caller.get("home")
    if kind is not None:
        if caller["is"] not in ("tv", "participant") or home != program:
            return 404
        if caller["is"] != kind:
            return 403
        return 200 if method == "GET" else 403
    if caller["is"] != "studio":
        return 401
    if home not in ("*", program) or method == "POST":
        return 403
    return 404 if program == MISSING or ("{webhook_id}" in template and program == OTHER) else 200


def test_every_page_refuses_who_may_not_open_it(matrix: Matrix) -> None:
    game, callers = matrix.game, matrix.callers
    client = game.client
    routes = sorted(set(page_routes(client)))
    assert len(routes) >= 20, routes  # the links' pages and the studio's, as the app routes them
    assert {link_kind(t) for _, t in routes} == {"tv", "participant", None}
    values = matrix.values | {
        "event_id": "d-1",
        "participant": "rep-17",
        "case_id": "1",
        "redemption_id": "1",
        "link_id": str(game.bob["id"]),
        "key_id": "1",
        "team": "east",
    }
    before = snapshot(client, game.admin)
    programs = {"this": "acme-sales", "other": OTHER, "missing": MISSING}
    wrong = []
    for method, template in routes:
        if method == "GET" and template.endswith("/feed"):
            continue  # an endless stream: its refusals are below, its own link's answer in test_browser
        for caller, credentials in callers.items():
            answers = {}
            for where, program in programs.items():
                path = fill(template, program, values)
                answers[where] = got = call(client, method, path, credentials)
                want = expected(template, method, credentials, program)
                if got != want:
                    wrong.append(f"{method} {path} by {caller}: {got}, expected {want}")
            foreign = {"acme-sales": "other", OTHER: "this"}.get(credentials.get("home", ""))
            if foreign:  # a program not one's own answers as one that does not exist: nothing confirmed
                assert answers[foreign] == answers["missing"], (method, template, caller, answers)
    assert not wrong, "\n".join(wrong)
    assert snapshot(client, game.admin) == before  # refused, so nothing changed


def test_the_tv_feed_opens_for_its_own_tv_link_only(matrix: Matrix) -> None:
    for caller in ("nobody", "participant link", "other program's TV link", "API admin key", "studio session"):
        want = 403 if caller == "participant link" else 404
        assert call(matrix.game.client, "GET", "/p/acme-sales/tv/feed", matrix.callers[caller]) == want, caller
