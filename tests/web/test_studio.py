"""The studio's teams, webhooks (and their delivery logs), audit log and tier overrides: each form needs the
session's CSRF token, each change is made through the API's own service and names the key that made it."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from levelup.runtime import Runtime
from levelup.webhooks.delivery import Settings, Worker
from tests.conftest import event
from tests.web.conftest import Game
from tests.web.test_admin import sign_in
from tests.web.test_pages import text

STUDIO = "/admin/p/acme-sales"


def test_teams_and_their_members(game: Game) -> None:
    sign_in(game.client)
    game.client.put("/api/v1/programs/acme-sales/teams/east", json={"name": "East Coast"}, headers=game.admin)
    listed = text(game.client.get(f"{STUDIO}/teams").text)
    assert "east East Coast 1" in listed
    members = text(game.client.get(f"{STUDIO}/teams/east").text)
    assert "team East Coast east" in members and "1 member Dana Scully rep-17 active" in members
    assert "Bob" not in members
    assert game.client.get(f"{STUDIO}/teams/west").status_code == 404


def _deliver(runtime: Runtime, answer: int) -> None:
    """One worker round whose receiver answers ``answer`` to everything."""
    transport = httpx.MockTransport(lambda _request: httpx.Response(answer))
    with httpx.Client(transport=transport) as client:
        worker = Worker(runtime, Settings(), client)
        try:
            worker.run_once()
        finally:
            worker.close()


def test_webhooks_are_subscribed_logged_and_deleted(game: Game, runtime: Runtime) -> None:
    csrf = sign_in(game.client)
    body = {"csrf": csrf, "url": "https://hooks.example.com/levelup", "format": "json", "type-badge.awarded": "1"}
    assert game.client.post(f"{STUDIO}/webhooks", data=body | {"csrf": "no"}).status_code == 403
    refused = game.client.post(f"{STUDIO}/webhooks", data=body | {"url": "ftp://nowhere"})
    assert refused.status_code == 422 and "Not subscribed: invalid webhook URL — url: must be an absolute" in text(
        refused.text
    )
    none = game.client.post(f"{STUDIO}/webhooks", data={k: v for k, v in body.items() if not k.startswith("type-")})
    assert none.status_code == 422 and "events: choose at least one" in text(none.text)
    made = game.client.post(f"{STUDIO}/webhooks", data=body)
    secret = re.search(r'<code id="webhook-secret">([^<]+)</code>', made.text)
    assert made.status_code == 200 and secret is not None and secret.group(1).startswith("whsec_")
    assert "Subscribed https://hooks.example.com/levelup to 1 notification types." in text(made.text)
    listed = text(game.client.get(f"{STUDIO}/webhooks").text)
    assert "1 https://hooks.example.com/levelup badge.awarded json" in listed and secret.group(1) not in listed
    assert "Nothing sent yet" in text(game.client.get(f"{STUDIO}/webhooks/1").text)
    # Bob's fifth deal wins him Top Closer (Bronze): a notification, refused (503) and tried again later
    game.post(*[event(f"b-more-{i}", participant="rep-9", data={"amount": 900_000}) for i in range(4)])
    assert "badge.awarded pending not tried yet" in text(game.client.get(f"{STUDIO}/webhooks/1").text)
    _deliver(runtime, 503)
    log = text(game.client.get(f"{STUDIO}/webhooks/1").text)
    assert re.search(r"badge\.awarded pending next try [0-9:]{8} [0-9-]{10} [0-9:]{8}: HTTP 503 \d+ ms", log), log
    deleted = game.client.post(f"{STUDIO}/webhooks/1/delete", data={"csrf": csrf})
    assert "Webhook 1 deleted." in text(deleted.text) and "No subscription" in text(deleted.text)
    assert game.client.get(f"{STUDIO}/webhooks/1").status_code == 404
    audit = text(game.client.get(f"{STUDIO}/audit").text)
    assert re.search(r"bootstrap-admin webhook\.delete id 1; url https://hooks\.example\.com/levelup", audit), audit
    assert "bootstrap-admin webhook.create" in audit and "program.apply" in audit


def test_the_audit_log_pages_newest_first(game: Game) -> None:
    csrf = sign_in(game.client)
    for i in range(51):
        body = {"csrf": csrf, "participant": "rep-9", "currency": "coins", "amount": "1", "note": f"note {i}"}
        game.client.post(f"{STUDIO}/adjustments", data=body)
    first = game.client.get(f"{STUDIO}/audit").text
    assert "note 50" in text(first) and "note 0" not in text(first)
    following = re.search(r'<a href="([^"]+)">Older entries</a>', first)
    assert following is not None
    older = text(game.client.get(following.group(1).replace("&amp;", "&")).text)
    assert "note 0" in older and "program.apply" in older and "note 50" not in older


def test_a_tier_is_overridden_and_lifted_from_the_studio(client: TestClient, admin: dict[str, str]) -> None:
    from tests.conftest import EXAMPLES

    loyalty = "/api/v1/programs/brewhouse-rewards"
    content = (EXAMPLES / "brewhouse-rewards.yaml").read_text()
    assert client.put(loyalty, content=content, headers={**admin, "Content-Type": "application/yaml"}).is_success
    client.put(f"{loyalty}/participants/cust-1", json={"name": "Ann"}, headers=admin)
    csrf = sign_in(client)
    studio = "/admin/p/brewhouse-rewards/participants"
    form = client.get(f"{studio}?q=cust-1").text
    assert 'action="/admin/p/brewhouse-rewards/participants/cust-1/tier"' in form and "<option>Reserve</option>" in form
    body = {"csrf": csrf, "tier": "Gold", "until": "2099-12-31", "note": "VIP guest"}
    assert client.post(f"{studio}/cust-1/tier", data=body | {"csrf": "x"}).status_code == 403
    assert "note : say why" in text(client.post(f"{studio}/cust-1/tier", data=body | {"note": " "}).text)
    assert "until : a date" in text(client.post(f"{studio}/cust-1/tier", data=body | {"until": "soon"}).text)
    held = client.post(f"{studio}/cust-1/tier", data=body)
    assert "cust-1 is held in Gold by hand." in text(held.text)
    tier = client.get(f"{loyalty}/participants/cust-1", headers=admin).json()["tier"]
    assert tier["name"] == "Gold" and tier["override"]["until"].startswith("2099-12-31T23:59:59")
    lifted = client.post(f"{studio}/cust-1/tier", data=body | {"tier": "", "until": "", "note": "visit over"})
    assert "Override of cust-1 lifted: Green." in text(lifted.text)
    audit = text(client.get("/admin/p/brewhouse-rewards/audit").text)
    assert "bootstrap-admin tier.override participant cust-1; tier null; until null; note visit over" in audit
    assert "tier Gold; until 2099-12-31T23:59:59+00:00; note VIP guest" in audit


def test_a_participant_is_erased_from_the_studio_once_confirmed(game: Game) -> None:
    csrf = sign_in(game.client)
    erase = f"{STUDIO}/participants/rep-9/erase"
    assert game.client.post(erase, data={"csrf": "x", "confirm": "rep-9"}).status_code == 403
    refused = game.client.post(erase, data={"csrf": csrf, "confirm": "rep-1"})
    assert refused.status_code == 422 and "confirm : type rep-9 to erase them" in text(refused.text)
    erased = text(game.client.post(erase, data={"csrf": csrf, "confirm": "rep-9"}).text)
    said = re.search(r"rep-9 erased: pseudonymised as (erased-\S+), every balance kept\.", erased)
    assert said is not None and "Bob Marley" not in erased
    assert game.client.get("/api/v1/programs/acme-sales/participants/rep-9", headers=game.admin).status_code == 404
    assert f"bootstrap-admin participant.erase participant {said.group(1)}" in text(
        game.client.get(f"{STUDIO}/audit").text
    )
