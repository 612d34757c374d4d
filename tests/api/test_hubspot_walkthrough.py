"""HubSpot to a team's receiver, end to end (docs/integrations.md): a signed delivery of deals moved to
``closedwon`` → the deals read from a fake HubSpot API on loopback → events → XP → ``badge.awarded``
delivered to a local receiver, its ``Levelup-Signature`` verified. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
import yaml

from levelup.api.app import create_app
from levelup.client import Client
from levelup.runtime import Runtime
from levelup.webhooks.delivery import Settings
from tests.api.test_sources import HUBSPOT, SECRET, hubspot_signature
from tests.conftest import ADMIN_KEY
from tests.fake_hubspot import FakeHubSpot, serving
from tests.live import Receiver, served

P = "acme-sales"
RECEIVER_SECRET = "team-receiver-secret"
FAST = Settings(attempts=3, backoff=0.05, max_backoff=0.2, timeout=2.0, lease=10.0)


@pytest.fixture
def base_url(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    deals = {str(d): {"amount": "1000", "hubspot_owner_id": "17", "dealname": f"Deal {d}"} for d in range(1, 6)}
    with serving(FakeHubSpot("pat-na1-walkthrough", deals)) as hubspot_url:
        monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
        monkeypatch.setenv("T_HUBSPOT_SECRET", SECRET)
        monkeypatch.setenv("T_HUBSPOT_TOKEN", "pat-na1-walkthrough")
        monkeypatch.setenv("T_HUBSPOT_API_URL", hubspot_url)
        with served(create_app(runtime, deliver=FAST)) as url:
            yield url


def test_closed_won_deals_in_hubspot_reach_the_team_as_a_signed_badge(base_url: str, acme_text: str) -> None:
    with Client(base_url, ADMIN_KEY) as levelup, Receiver(RECEIVER_SECRET) as receiver:
        levelup.apply_program(P, acme_text + yaml.safe_dump({"sources": [HUBSPOT]}))
        levelup.put_participant(P, "rep-17", name="Dana", teams=["east"])
        levelup.create_webhook(P, receiver.url, ["badge.awarded"], secret=RECEIVER_SECRET)

        items = [
            {
                "eventId": 7000 + deal,
                "subscriptionId": 92894,
                "portalId": 5799819,
                "occurredAt": 1_763_651_045_000 + deal * 60_000,
                "subscriptionType": "deal.propertyChange",
                "attemptNumber": 0,
                "objectId": deal,
                "propertyName": "dealstage",
                "propertyValue": "closedwon",
            }
            for deal in range(1, 6)
        ]
        body = orjson.dumps(items)
        url = f"{base_url}/api/v1/programs/{P}/sources/hubspot"
        at = str(int(time.time() * 1000))
        signature = hubspot_signature("POST", url, body, at)
        answer = httpx.post(
            url, content=body, headers={"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": at}
        )
        assert answer.status_code == 200, answer.text
        assert [(r["id"], r["status"]) for r in answer.json()["results"]] == [
            (f"hubspot-deal-{d}-won", "accepted") for d in range(1, 6)
        ]
        # 5 × (100 + 1000 / 100) XP, 5 × 1 coin and 100 coins for five deals in a week (five-a-week)
        assert levelup.get_participant(P, "rep-17").balances == {"xp": 550, "coins": 105}

        deadline = time.monotonic() + 20
        while not any(r.body["data"].get("badge") == "top-closer" for r in receiver.received):
            assert time.monotonic() < deadline, [r.body for r in receiver.received]
            time.sleep(0.05)
    badge = next(r for r in receiver.received if r.body["data"].get("badge") == "top-closer")
    assert badge.signed
    assert badge.body["type"] == "badge.awarded"
    assert badge.body["participant"] == "rep-17"
    assert badge.body["data"] == {
        "badge": "top-closer",
        "grade": "Bronze",
        "period": "all",
        "event": "hubspot-deal-5-won",
    }
