"""The admin studio: an admin key for a session cookie (HttpOnly, SameSite=Strict), a CSRF token on every
form, rights as the API's (a key's programs), the editor's errors at their line, apply, cases, redemptions, links."""

from __future__ import annotations

import html
import re

import yaml
from fastapi.testclient import TestClient

from levelup.programs.validation import load_document
from levelup.web.editor import as_yaml
from levelup.web.render import csrf_token
from tests.conftest import ADMIN_KEY, EXAMPLES
from tests.web.conftest import Game, P
from tests.web.test_pages import at, text


def sign_in(client: TestClient, key: str = ADMIN_KEY) -> str:
    """Signs in; returns the CSRF token of the studio's forms."""
    response = client.post("/admin/sign-in", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/admin").text)
    assert found is not None
    return found.group(1)


def test_only_an_admin_key_opens_the_studio_and_only_its_programs(game: Game) -> None:
    client = game.client
    assert "Admin key" in client.get("/admin").text  # the sign-in form
    assert client.get("/admin/p/acme-sales").status_code == 401
    assert client.post("/admin/sign-in", data={"key": "nope"}).status_code == 401
    reader = client.post("/api/v1/keys", json={"role": "read", "programs": ["*"]}, headers=game.admin).json()["key"]
    assert client.post("/admin/sign-in", data={"key": reader}).status_code == 401
    other = client.post("/api/v1/keys", json={"role": "admin", "programs": ["other"]}, headers=game.admin).json()
    sign_in(client, other["key"])
    assert "acme-sales" not in client.get("/admin").text
    assert client.get("/admin/p/acme-sales").status_code == 403
    assert client.delete(f"/api/v1/keys/{other['id']}", headers=game.admin).status_code == 204
    assert "Admin key" in client.get("/admin").text  # a revoked key's session is over


def test_every_studio_form_needs_the_csrf_token(game: Game) -> None:
    csrf = sign_in(game.client)
    document = game.client.get(f"{P}", headers=game.admin).json()
    for path in ("/apply", "/links", "/cases/1", "/redemptions/1", "/check"):
        assert game.client.post(f"/admin/p/acme-sales{path}", data={"document": str(document)}).status_code == 403
    assert game.client.post("/admin/sign-out", data={"csrf": "0" * 64}).status_code == 403
    assert game.client.post("/admin/sign-out", data={"csrf": csrf}).status_code == 200  # redirected to sign in
    assert "Admin key" in game.client.get("/admin").text


def test_the_editor_shows_errors_at_their_line_and_applies_a_fixed_document(game: Game) -> None:
    csrf = sign_in(game.client)
    page = game.client.get("/admin/p/acme-sales").text
    found = re.search(r'<textarea id="document"[^>]*>(.*?)</textarea>', page, re.S)
    assert found is not None
    document = html.unescape(found.group(1))
    broken = document.replace("per: day", "per: fortnight", 1)
    line = broken.splitlines().index(next(x for x in broken.splitlines() if "fortnight" in x)) + 1
    checked = game.client.post("/admin/p/acme-sales/check", data={"csrf": csrf, "document": broken}).json()
    assert [(e["path"], e["line"]) for e in checked["errors"]] == [("rules[0].cap.per", line)]
    assert "-    per: day" in checked["diff"] and "+    per: fortnight" in checked["diff"]
    refused = game.client.post("/admin/p/acme-sales/apply", data={"csrf": csrf, "document": broken})
    assert refused.status_code == 422 and f"Line {line}:" in text(refused.text)
    assert game.client.get(P, headers=game.admin).json()["version"] == 1
    fixed = broken.replace("per: fortnight", "per: week")
    assert game.client.post("/admin/p/acme-sales/check", data={"csrf": csrf, "document": fixed}).json()["errors"] == []
    applied = game.client.post("/admin/p/acme-sales/apply", data={"csrf": csrf, "document": fixed})
    assert "Applied: version 2 is in force." in text(applied.text)
    assert game.client.get(P, headers=game.admin).json()["document"]["rules"][0]["cap"]["per"] == "week"


def test_cases_redemptions_and_links_from_the_studio(game: Game) -> None:
    dana = game.dana
    body = {"message": "I closed D-91 on 20 Nov", "csrf": csrf_token(dana["token"])}
    game.client.post(at(dana["url"], "me/cases"), data=body)
    redeem = {"reward": "gift-card-25", "key": "k1", "csrf": csrf_token(dana["token"])}
    assert game.client.post(at(dana["url"], "store/redeem"), data=redeem).status_code == 200
    csrf = sign_in(game.client)
    page = text(game.client.get("/admin/p/acme-sales").text)
    assert "rep-17 : “I closed D-91 on 20 Nov”" in page and "gift-card-25 for rep-17" in page
    answer = {"csrf": csrf, "reply": "Added, thanks", "amount": "250", "currency": "coins", "decision": "resolve"}
    assert "Case 1 resolved." in text(game.client.post("/admin/p/acme-sales/cases/1", data=answer).text)
    assert "Added, thanks +250 Coins added to your balance" in text(game.client.get(dana["url"]).text)
    again = game.client.post("/admin/p/acme-sales/cases/1", data=answer)
    assert again.status_code == 409  # answered once
    fulfilled = game.client.post("/admin/p/acme-sales/redemptions/1", data={"csrf": csrf, "action": "fulfil"})
    assert "Redemption 1 fulfilled." in text(fulfilled.text)
    assert "delivered" in text(game.client.get(at(dana["url"], "store")).text)
    made = game.client.post(
        "/admin/p/acme-sales/links", data={"csrf": csrf, "kind": "tv", "top": "3", "days": "7", "participant": ""}
    )
    url = re.search(r'id="made-link">([^<]+)<', made.text)
    assert url is not None and game.client.get(url.group(1)).status_code == 200
    link_id = url.group(1).split("token=")[1].split(".")[0]
    revoked = game.client.post(f"/admin/p/acme-sales/links/{link_id}/revoke", data={"csrf": csrf})
    assert f"Link {link_id} revoked." in text(revoked.text) and game.client.get(url.group(1)).status_code == 404


def test_participants_events_and_adjustments_in_the_studio(game: Game) -> None:
    csrf = sign_in(game.client)
    found = text(game.client.get("/admin/p/acme-sales/participants?q=marl").text)
    assert "Bob Marley rep-9 active" in found and "Dana" not in found
    body = {"csrf": csrf, "participant": "rep-9", "currency": "coins", "amount": "-10", "note": "duplicate deal"}
    adjusted = text(game.client.post("/admin/p/acme-sales/adjustments", data=body).text)
    assert "Adjusted rep-9 by -10 coins." in adjusted
    assert "-10 Coins — manual adjustment by bootstrap-admin: duplicate deal" in text(
        game.client.get(game.bob["url"]).text
    )
    assert game.client.post("/admin/p/acme-sales/adjustments", data=body | {"csrf": "x"}).status_code == 403
    suspend = {"csrf": csrf, "status": "suspended", "note": "under review"}
    suspended = game.client.post("/admin/p/acme-sales/participants/rep-9/status", data=suspend)
    assert "rep-9 is suspended." in text(suspended.text)
    assert "Your account is paused" in text(game.client.get(game.bob["url"]).text)
    listed = text(game.client.get("/admin/p/acme-sales/events?participant=rep-17&type=deal.won").text)
    assert "d-4 deal.won rep-17" in listed and "b-1" not in listed
    explained = text(game.client.get("/admin/p/acme-sales/events/d-4").text)
    assert "+1,300 xp" in explained and "(rule deal-won v1)" in explained and "deals_won: 1 (all time)" in explained
    assert game.client.get("/admin/p/acme-sales/events/nope").status_code == 404


def test_the_editor_simulates_a_draft_on_past_events_and_writes_nothing(game: Game) -> None:
    csrf = sign_in(game.client)
    found = re.search(
        r'<textarea id="document"[^>]*>(.*?)</textarea>', game.client.get("/admin/p/acme-sales").text, re.S
    )
    assert found is not None
    document = html.unescape(found.group(1))
    draft = document.replace("100 + data.amount / 100", "200 + data.amount / 100")
    assert draft != document
    shown = game.client.post("/admin/p/acme-sales/simulate", data={"csrf": csrf, "document": draft, "days": "366"})
    said = text(shown.text)
    assert shown.status_code == 200 and "The draft on 6 events of the last 366 days" in said
    assert "XP in all: 6,900 → 7,500 (+600) Dana Scully: +500 XP Bob Marley: +100 XP" in said
    assert game.client.get(P, headers=game.admin).json()["version"] == 1


def test_keys_are_made_shown_once_and_revoked_in_the_studio(game: Game) -> None:
    csrf = sign_in(game.client)
    body = {"csrf": csrf, "role": "read", "programs": "acme-sales", "note": "wallboard"}
    assert game.client.post("/admin/keys", data=body | {"csrf": "no"}).status_code == 403
    made = game.client.post("/admin/keys", data=body)
    secret = re.search(r'<code id="new-key">([^<]+)</code>', made.text)
    assert made.status_code == 200 and secret is not None and "Key made: read on acme-sales." in text(made.text)
    reader = {"Authorization": f"Bearer {secret.group(1)}"}
    assert game.client.get(f"{P}/participants/rep-17", headers=reader).status_code == 200
    key_id = secret.group(1).split("_")[1]
    assert secret.group(1) not in game.client.get("/admin").text  # shown that once
    assert "wallboard" in game.client.get("/admin").text
    revoked = game.client.post(f"/admin/keys/{key_id}/revoke", data={"csrf": csrf})
    assert f"Key {key_id} revoked." in text(revoked.text)
    assert game.client.get(f"{P}/participants/rep-17", headers=reader).status_code == 401


def test_the_editor_shows_the_text_pure_python_yaml_would() -> None:
    """The editor's YAML comes from libyaml's emitter (for speed); it is the text PyYAML's own writes, here for
    every example and a document with long, accented and quoted values."""
    documents = [
        load_document(path.read_text()).model_dump(mode="json", by_alias=True, exclude_none=True)
        for path in sorted(EXAMPLES.glob("*.yaml"))
    ]
    odd = ["a: b", "#c", "", None, "Ünïcode “quotes” — " + "long " * 40]
    documents.append({"program": "café", "list": odd})
    assert len(documents) >= 3
    for document in documents:
        assert as_yaml(document) == yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
