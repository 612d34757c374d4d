"""CRM sources over HTTP (docs/integrations.md): each kind's check, mapping, duplicates and reversals.

Deliveries are written here after the shapes the vendors document (see SOURCE.md of the shared
webhook samples): a HubSpot array of propertyChange items, Pipedrive webhooks v1 and v2, a
Salesforce Outbound Message and a Change Data Capture event, a Zoho notification, any JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import yaml
from fastapi.testclient import TestClient

from tests.fake_hubspot import FakeHubSpot

P = "/api/v1/programs/acme-sales"
WON_AT_MS = 1_763_651_045_000  # 2025-11-20T15:04:05Z
SECRET = "s3cret-for-tests"
ORG = "00D5g000000AbCdEAF"


def hubspot_signature(method: str, url: str, body: bytes, timestamp: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), method.encode() + url.encode() + body + timestamp.encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def levelup_signature(body: bytes, at: int, secret: str = SECRET) -> str:
    return f"t={at},v1={hmac.new(secret.encode(), f'{at}.'.encode() + body, hashlib.sha256).hexdigest()}"


# ------------------------------------------------------------------------------------------- sources


HUBSPOT = {
    "key": "hubspot",
    "kind": "hubspot",
    "secret": {"env": "T_HUBSPOT_SECRET"},
    "fetch": {
        "object": "deal",
        "properties": ["amount", "hubspot_owner_id", "dealname"],
        "token": {"env": "T_HUBSPOT_TOKEN"},
        "base_url": {"env": "T_HUBSPOT_API_URL"},
    },
    "events": [
        {
            "when": 'item.propertyName == "dealstage" && item.propertyValue == "closedwon"',
            "type": "deal.won",
            "id": '"hubspot-deal-" + string(item.objectId) + "-won"',
            "participant": '"rep-" + object.properties.hubspot_owner_id',
            "occurred_at": "item.occurredAt",
            "data": {"amount": "double(object.properties.amount)", "deal_id": "string(item.objectId)"},
        },
        {
            "when": 'item.propertyName == "dealstage" && item.propertyValue != "closedwon"',
            "type": "deal.reopened",
            "id": '"hubspot-deal-" + string(item.objectId) + "-" + string(item.eventId)',
            "participant": '"rep-" + object.properties.hubspot_owner_id',
            "reverses": '"hubspot-deal-" + string(item.objectId) + "-won"',
        },
    ],
}
PIPEDRIVE = {
    "key": "pipedrive",
    "kind": "pipedrive",
    "secret": {"env": "T_PIPEDRIVE_CREDENTIALS"},
    "events": [
        {
            "when": 'item.meta.entity == "deal" && item.data.status == "won" && item.previous.status != "won"',
            "type": "deal.won",
            "id": '"pipedrive-deal-" + string(item.data.id) + "-won"',
            "participant": '"rep-" + string(item.data.owner_id)',
            "occurred_at": "item.data.won_time",
            "data": {"amount": "item.data.value", "deal_id": "string(item.data.id)"},
        },
        {
            "when": 'item.meta.entity == "deal" && item.previous.status == "won" && item.data.status != "won"',
            "type": "deal.reopened",
            "id": '"pipedrive-deal-" + string(item.data.id) + "-" + item.meta.id',
            "participant": '"rep-" + string(item.data.owner_id)',
            "reverses": '"pipedrive-deal-" + string(item.data.id) + "-won"',
        },
    ],
}
SALESFORCE_OM = {
    "key": "salesforce",
    "kind": "salesforce",
    "secret": {"env": "T_SALESFORCE_SECRET"},
    "organization": {"env": "T_SALESFORCE_ORG"},
    "events": [
        {
            "when": 'item.StageName == "Closed Won"',
            "type": "deal.won",
            "id": '"salesforce-opp-" + item.Id + "-won"',
            "participant": '"rep-" + item.Owner_Rep__c',
            "occurred_at": "item.LastModifiedDate",
            "data": {"amount": "double(item.Amount)", "deal_id": "item.Id"},
        },
        {
            "when": 'item.StageName != "Closed Won"',  # an Outbound Message has no previous values
            "type": "deal.reopened",
            "id": '"salesforce-opp-" + item.Id + "-" + item.LastModifiedDate',
            "participant": '"rep-" + item.Owner_Rep__c',
            "reverses": '"salesforce-opp-" + item.Id + "-won"',
        },
    ],
}
SALESFORCE_CDC = {
    "key": "salesforce-cdc",
    "kind": "salesforce",
    "secret": {"env": "T_SALESFORCE_SECRET"},
    "events": [
        {
            "when": 'item.ChangeEventHeader.entityName == "Opportunity" && item.StageName == "Closed Won"',
            "type": "deal.won",
            "id": '"salesforce-opp-" + item.ChangeEventHeader.recordIds[0] + "-won"',
            "participant": '"rep-" + item.Owner_Rep__c',
            "occurred_at": "item.ChangeEventHeader.commitTimestamp",
            "data": {"amount": "item.Amount"},
        },
        {
            "when": 'item.ChangeEventHeader.entityName == "Opportunity" && item.StageName != "Closed Won"',
            "type": "deal.reopened",
            "id": '"salesforce-opp-" + item.ChangeEventHeader.transactionKey',
            "participant": '"rep-" + item.Owner_Rep__c',
            "reverses": '"salesforce-opp-" + item.ChangeEventHeader.recordIds[0] + "-won"',
        },
    ],
}
ZOHO = {
    "key": "zoho",
    "kind": "zoho",
    "secret": {"env": "T_ZOHO_TOKEN"},
    "events": [
        {
            "when": 'item.module == "Deals" && item.values.Stage == "Closed Won"',
            "type": "deal.won",
            "id": '"zoho-deal-" + item.id + "-won"',
            "participant": '"rep-" + item.values.Owner.id',
            "occurred_at": "item.server_time",
            "data": {"amount": "item.values.Amount"},
        },
        {
            "when": 'item.module == "Deals" && item.values.Stage != "Closed Won"',
            "type": "deal.reopened",
            "id": '"zoho-deal-" + item.id + "-" + string(item.server_time)',
            "participant": '"rep-" + item.values.Owner.id',
            "reverses": '"zoho-deal-" + item.id + "-won"',
        },
    ],
}
WEBHOOK = {
    "key": "billing",
    "kind": "webhook",
    "secret": {"env": "T_WEBHOOK_SECRET"},
    "events": [
        {
            "when": 'item.deal.stage == "won"',
            "type": "deal.won",
            "id": '"billing-deal-" + item.deal.id + "-won"',
            "participant": "item.deal.owner",
            "occurred_at": "item.at",
            "data": {"amount": "item.deal.amount"},
        },
        {
            "when": 'item.deal.stage != "won"',
            "type": "deal.reopened",
            "id": '"billing-deal-" + item.deal.id + "-" + item.at',
            "participant": "item.deal.owner",
            "reverses": '"billing-deal-" + item.deal.id + "-won"',
        },
    ],
}
SOURCES = [HUBSPOT, PIPEDRIVE, SALESFORCE_OM, SALESFORCE_CDC, ZOHO, WEBHOOK]
ENV = {
    "T_HUBSPOT_SECRET": SECRET,
    "T_HUBSPOT_TOKEN": "pat-na1-test",
    "T_HUBSPOT_API_URL": "http://hubspot.test",
    "T_PIPEDRIVE_CREDENTIALS": f"levelup:{SECRET}",
    "T_SALESFORCE_SECRET": SECRET,
    "T_SALESFORCE_ORG": ORG,
    "T_ZOHO_TOKEN": SECRET,
    "T_WEBHOOK_SECRET": SECRET,
}


# ------------------------------------------------------------------------------------------- deliveries


@dataclass(frozen=True)
class Request:
    content: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Kind:
    """How one source is delivered to: ``deliver(stage, secret, at)`` builds a request for deal 88
    moving to ``stage`` ("won" or another), signed with ``secret`` at unix time ``at``."""

    source: str
    deliver: Callable[[str, str, int], Request]
    dated: bool  # the scheme signs a time, so a stale delivery is refused
    soap: bool = False


def _hubspot(stage: str, secret: str, at: int) -> Request:
    value = "closedwon" if stage == "won" else "appointmentscheduled"
    body = orjson.dumps(
        [
            {
                "eventId": 1228532628 if stage == "won" else 1228532700 + at % 97,
                "subscriptionId": 92894,
                "portalId": 5799819,
                "appId": 186886,
                "occurredAt": WON_AT_MS,
                "subscriptionType": "deal.propertyChange",
                "attemptNumber": 0,
                "objectId": 88,
                "changeSource": "CRM_UI",
                "propertyName": "dealstage",
                "propertyValue": value,
            }
        ]
    )
    timestamp = str(at * 1000)
    url = f"http://testserver{P}/sources/hubspot"
    signature = hubspot_signature("POST", url, body, timestamp, secret)
    return Request(body, {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp})


def _pipedrive(stage: str, secret: str, at: int) -> Request:
    won = stage == "won"
    body = {
        "meta": {
            "action": "change",
            "entity": "deal",
            "entity_id": "88",
            "id": f"delivery-{at}-{stage}",
            "timestamp": "2025-11-20T15:04:05.000Z",
            "version": "2.0",
            "attempt": 1,
        },
        "data": {
            "id": 88,
            "owner_id": 17,
            "status": "won" if won else "open",
            "value": 12000,
            "won_time": "2025-11-20T15:04:05Z" if won else None,
        },
        "previous": {"status": "open" if won else "won"},
    }
    credentials = base64.b64encode(f"levelup:{secret}".encode()).decode()
    return Request(orjson.dumps(body), {"Authorization": f"Basic {credentials}"})


def _outbound_message(stage: str, secret: str, at: int) -> Request:
    organization = ORG if secret == SECRET else "00D5g000000ZzZzEAF"
    name = "Closed Won" if stage == "won" else "Negotiation/Review"
    modified = "2025-11-20T15:04:05.000Z" if stage == "won" else f"2025-11-21T09:00:{at % 60:02d}.000Z"
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{organization}</OrganizationId>
   <ActionId>04k5g000000TestAAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/61.0/00D5g000000AbCd</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/61.0/00D5g000000AbCd</PartnerUrl>
   <Notification>
    <Id>04l5g00000{at % 100000:05d}AAA</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0065g00000Deal88AAA</sf:Id>
     <sf:Amount>12000.0</sf:Amount>
     <sf:LastModifiedDate>{modified}</sf:LastModifiedDate>
     <sf:Owner_Rep__c>17</sf:Owner_Rep__c>
     <sf:StageName>{name}</sf:StageName>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""
    return Request(body.encode(), {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})


def _cdc(stage: str, secret: str, at: int) -> Request:
    body = orjson.dumps(
        {
            "ChangeEventHeader": {
                "entityName": "Opportunity",
                "recordIds": ["0065g00000Deal88AAA"],
                "changeType": "UPDATE",
                "changeOrigin": "com/salesforce/api/soap/61.0;client=SfdcInternalAPI/",
                "transactionKey": f"0001a2b3-{at}-{stage}",
                "sequenceNumber": 1,
                "commitTimestamp": WON_AT_MS,
                "commitUser": "0055g00000AbCdEAAV",
                "changedFields": ["StageName", "LastModifiedDate"],
            },
            "StageName": "Closed Won" if stage == "won" else "Negotiation/Review",
            "Amount": 12000.0,
            "Owner_Rep__c": "17",
        }
    )
    return Request(body, {"Content-Type": "application/json", "Levelup-Signature": levelup_signature(body, at, secret)})


def _zoho(stage: str, secret: str, at: int) -> Request:
    values = {"Stage": "Closed Won" if stage == "won" else "Negotiation", "Amount": 12000, "Owner": {"id": "17"}}
    body = {
        "server_time": WON_AT_MS if stage == "won" else WON_AT_MS + at,
        "query_params": {},
        "module": "Deals",
        "resource_uri": "https://www.zohoapis.com/crm/v2/Deals",
        "ids": ["88"],
        "affected_values": [{"record_id": "88", "values": values}],
        "affected_fields": [{"88": ["Stage"]}],
        "operation": "update",
        "channel_id": "1105420521999070702",
        "token": secret,
    }
    return Request(orjson.dumps(body), {"Content-Type": "application/json"})


def _webhook(stage: str, secret: str, at: int) -> Request:
    when = "2025-11-20T15:04:05Z" if stage == "won" else f"2025-11-21T09:00:{at % 60:02d}Z"
    body = orjson.dumps({"deal": {"id": "88", "stage": stage, "amount": 12000, "owner": "rep-17"}, "at": when})
    return Request(body, {"Content-Type": "application/json", "Levelup-Signature": levelup_signature(body, at, secret)})


KINDS = {
    "hubspot": Kind("hubspot", _hubspot, dated=True),
    "pipedrive": Kind("pipedrive", _pipedrive, dated=False),
    "salesforce-om": Kind("salesforce", _outbound_message, dated=False, soap=True),
    "salesforce-cdc": Kind("salesforce-cdc", _cdc, dated=True),
    "zoho": Kind("zoho", _zoho, dated=False),
    "webhook": Kind("billing", _webhook, dated=True),
}


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def hubspot_api() -> FakeHubSpot:
    return FakeHubSpot("pat-na1-test", {"88": {"amount": "12000", "hubspot_owner_id": "17", "dealname": "Big one"}})


@pytest.fixture
def crm(
    acme: TestClient, admin: dict[str, str], acme_text: str, hubspot_api: FakeHubSpot, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    """acme-sales with every kind of source, their secrets in the environment, HubSpot's API faked."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    document = acme_text + yaml.safe_dump({"sources": SOURCES})
    response = acme.put(P, content=document, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 200, response.text
    acme.app.state.sources_http = httpx.AsyncClient(transport=httpx.ASGITransport(hubspot_api.app))
    return acme


def post(client: TestClient, kind: Kind, request: Request) -> httpx.Response:
    return client.post(f"{P}/sources/{kind.source}", content=request.content, headers=request.headers)


def balances(client: TestClient, admin: dict[str, str], participant: str = "rep-17") -> dict[str, int]:
    response = client.get(f"{P}/participants/{participant}", headers=admin)
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    found: dict[str, int] = response.json()["balances"]
    return found


def stored(client: TestClient, admin: dict[str, str], event_id: str) -> bool:
    return client.get(f"{P}/events/{event_id}", headers=admin).status_code == 200


WON_IDS = {
    "hubspot": "hubspot-deal-88-won",
    "pipedrive": "pipedrive-deal-88-won",
    "salesforce-om": "salesforce-opp-0065g00000Deal88AAA-won",
    "salesforce-cdc": "salesforce-opp-0065g00000Deal88AAA-won",
    "zoho": "zoho-deal-88-won",
    "webhook": "billing-deal-88-won",
}
WON = [{"currency": "xp", "amount": 220, "rule": "deal-won"}, {"currency": "coins", "amount": 12, "rule": "deal-won"}]


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(KINDS))
def test_each_kind_signed_refused_duplicate_and_reopened(crm: TestClient, admin: dict[str, str], name: str) -> None:
    kind, won_id = KINDS[name], WON_IDS[name]
    now = int(time.time())

    def results(response: httpx.Response) -> list[dict[str, Any]]:
        assert response.status_code == 200, response.text
        if kind.soap:  # Salesforce wants its acknowledgement, nothing else
            assert response.headers["content-type"].startswith("text/xml")
            assert b"<Ack>true</Ack>" in response.content
            return []
        found: list[dict[str, Any]] = response.json()["results"]
        return found

    # refused: a wrong secret, and (where the scheme signs a time) a stale delivery; nothing stored
    bad = post(crm, kind, kind.deliver("won", "not-the-secret", now))
    assert bad.status_code == 401, bad.text
    assert bad.headers["content-type"] == "application/problem+json"
    if kind.dated:
        stale = post(crm, kind, kind.deliver("won", SECRET, now - 301))
        assert stale.status_code == 401, stale.text
        assert "300 s" in stale.json()["detail"]
    assert not stored(crm, admin, won_id)
    assert balances(crm, admin) == {}

    # signed: the deal won is an event with its awards
    first = results(post(crm, kind, kind.deliver("won", SECRET, now)))
    if not kind.soap:
        assert first == [{"id": won_id, "status": "accepted", "awards": WON}]
    assert balances(crm, admin) == {"xp": 220, "coins": 12}

    # the CRM's retry (and for an unsigned time, a replay) is a duplicate
    again = results(post(crm, kind, kind.deliver("won", SECRET, now + 1)))
    if not kind.soap:
        assert again == [{"id": won_id, "status": "duplicate", "awards": []}]
    assert balances(crm, admin) == {"xp": 220, "coins": 12}

    # the deal leaves "won": a reversal; moving on again has nothing left to reverse
    reopened = results(post(crm, kind, kind.deliver("open", SECRET, now + 2)))
    if not kind.soap:
        assert [r["status"] for r in reopened] == ["accepted"]
    assert balances(crm, admin) == {"xp": 0, "coins": 0}
    explained = crm.get(f"{P}/events/{won_id}", headers=admin).json()
    assert explained["reversed_by"] is not None
    assert results(post(crm, kind, kind.deliver("open", SECRET, now + 3))) == []
    assert balances(crm, admin) == {"xp": 0, "coins": 0}


def test_a_reopened_deal_never_won_is_ignored(crm: TestClient, admin: dict[str, str]) -> None:
    kind = KINDS["webhook"]
    response = post(crm, kind, kind.deliver("open", SECRET, int(time.time())))
    assert response.status_code == 200, response.text
    assert response.json() == {"results": []}
    assert balances(crm, admin) == {}


def test_hubspot_delivery_of_many_items_is_fetched_in_one_batch_read(
    crm: TestClient, admin: dict[str, str], hubspot_api: FakeHubSpot
) -> None:
    for deal in range(100, 103):
        hubspot_api.objects[str(deal)] = {"amount": "5000", "hubspot_owner_id": "17"}
    items = [
        {
            "eventId": 900 + deal,
            "subscriptionType": "deal.propertyChange",
            "portalId": 5799819,
            "occurredAt": WON_AT_MS,
            "objectId": deal,
            "propertyName": "dealstage",
            "propertyValue": "closedwon",
        }
        for deal in (100, 101, 102, 404)  # 404: HubSpot has no such deal
    ]
    items.insert(1, {**items[0], "eventId": 1, "propertyName": "amount", "propertyValue": "5000"})  # no mapping
    body = orjson.dumps(items)
    at = str(int(time.time() * 1000))
    url = f"http://testserver{P}/sources/hubspot"
    headers = {"X-HubSpot-Signature-v3": hubspot_signature("POST", url, body, at), "X-HubSpot-Request-Timestamp": at}
    response = crm.post(f"{P}/sources/hubspot", content=body, headers=headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        ("hubspot-deal-100-won", "accepted"),
        ("hubspot-deal-101-won", "accepted"),
        ("hubspot-deal-102-won", "accepted"),
        ("hubspot-deal-404-won", "rejected"),
    ]
    assert results[3]["errors"] == [
        {"path": "items[4].participant", "message": "reads object, but fetch found no object for this item"},
        {"path": "items[4].data.amount", "message": "reads object, but fetch found no object for this item"},
    ]
    assert len(hubspot_api.requests) == 1
    assert hubspot_api.requests[0]["kind"] == "deals"
    assert sorted(i["id"] for i in hubspot_api.requests[0]["inputs"]) == ["100", "101", "102", "404"]
    assert hubspot_api.requests[0]["properties"] == ["amount", "hubspot_owner_id", "dealname"]
    assert balances(crm, admin) == {"xp": 3 * 150, "coins": 3 * 5}


def test_an_item_the_mapping_cannot_turn_into_an_event_is_rejected_with_its_path(
    crm: TestClient, admin: dict[str, str]
) -> None:
    items = [
        {"deal": {"id": "1", "stage": "won", "amount": 1000, "owner": "rep-17"}, "at": "2025-11-20T15:04:05Z"},
        {"deal": {"id": "2", "stage": "won", "owner": "rep-17"}, "at": "2025-11-20T15:04:05Z"},  # no amount
        {"deal": {"id": "3", "stage": "won", "amount": 1000, "owner": "rep-17"}, "at": "yesterday"},
        {"deal": {"id": "4", "stage": "won", "amount": 2000, "owner": "rep-17"}, "at": "2025-11-20T15:04:05Z"},
    ]
    body = orjson.dumps(items)
    headers = {"Levelup-Signature": levelup_signature(body, int(time.time()))}
    response = crm.post(f"{P}/sources/billing", content=body, headers=headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["id"], r["status"]) for r in results] == [
        ("billing-deal-1-won", "accepted"),
        ("billing-deal-2-won", "rejected"),
        ("billing-deal-3-won", "rejected"),
        ("billing-deal-4-won", "accepted"),
    ]
    assert [e["path"] for e in results[1]["errors"]] == ["items[1].data.amount"]
    assert [e["path"] for e in results[2]["errors"]] == ["items[2].occurred_at"]
    assert balances(crm, admin) == {"xp": 110 + 120, "coins": 1 + 2}


def test_a_source_whose_secret_is_not_set_refuses_and_logs(
    crm: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("T_WEBHOOK_SECRET")
    kind = KINDS["webhook"]
    response = post(crm, kind, kind.deliver("won", SECRET, int(time.time())))
    assert response.status_code == 401
    problem = response.json()
    assert problem["code"] == "source_not_configured"
    assert "not configured" in problem["detail"]
    assert "T_WEBHOOK_SECRET" not in problem["detail"]  # the server's setup is for its log, not the caller
    assert "T_WEBHOOK_SECRET" in caplog.text
    assert not stored(crm, admin, "billing-deal-88-won")


def test_unknown_source_and_oversized_delivery(crm: TestClient) -> None:
    assert crm.post(f"{P}/sources/nope", content=b"[]").status_code == 404
    response = crm.post(f"{P}/sources/billing", content=b"[" + b"1," * 1_100_000 + b"1]")
    assert response.status_code == 413


def test_hubspot_behind_a_proxy_signs_the_public_url(crm: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEVELUP_PUBLIC_URL", "https://levelup.example.com/")
    body = b"[]"
    at = str(int(time.time() * 1000))
    url = f"https://levelup.example.com{P}/sources/hubspot?portal=1"
    headers = {"X-HubSpot-Signature-v3": hubspot_signature("POST", url, body, at), "X-HubSpot-Request-Timestamp": at}
    response = crm.post(f"{P}/sources/hubspot?portal=1", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": []}


def test_hubspot_api_throttling_past_the_budget_answers_503_and_stores_nothing(
    crm: TestClient, admin: dict[str, str], hubspot_api: FakeHubSpot
) -> None:
    hubspot_api.throttle, hubspot_api.retry_after = 100, "30"
    kind = KINDS["hubspot"]
    response = post(crm, kind, kind.deliver("won", SECRET, int(time.time())))
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "source_unavailable"
    assert not stored(crm, admin, "hubspot-deal-88-won")
    hubspot_api.throttle, hubspot_api.retry_after = 1, "0.1"  # HubSpot's retry, once the limit has passed
    response = post(crm, kind, kind.deliver("won", SECRET, int(time.time())))
    assert response.json()["results"][0]["status"] == "accepted"
