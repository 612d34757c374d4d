"""Each CRM's check and item split (levelup.sources.vendors) and HubSpot's fetch with retries, without a database."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx
import orjson
import pytest

from levelup.errors import Invalid, TooLarge, Unauthorized
from levelup.programs.document import Source, SourceFetch
from levelup.programs.validation import load_document
from levelup.sources import hubspot, vendors
from levelup.sources.mapping import CompiledSource, compiled_source, map_item
from tests.api.test_sources import SECRET, hubspot_signature, levelup_signature
from tests.conftest import EXAMPLES
from tests.fake_hubspot import FakeHubSpot

NOW = 1_800_000_000.0


def source(kind: str, **fields: Any) -> Source:
    return Source.model_validate(
        {
            "key": kind,
            "kind": kind,
            "secret": {"env": "T_SECRET"},
            "events": [{"type": "x", "id": "'x'", "participant": "'p'"}],
            **fields,
        }
    )


def delivery(body: bytes, headers: dict[str, str] | None = None, url: str = "https://l.example/s") -> vendors.Delivery:
    return vendors.Delivery("acme-sales", "POST", url, headers or {}, body, NOW)


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SECRET", SECRET)
    monkeypatch.setenv("T_ORG", "00D5g000000AbCd")


def test_hubspot_signs_the_uri_with_its_escapes_decoded_and_a_single_object_is_one_item() -> None:
    body = b'{"objectId": 1, "propertyName": "dealstage"}'
    sent = "https://l.example/api/v1/programs/acme-sales/sources/hubspot?next=%2Fdeals%3Fa%3Db"
    signed = "https://l.example/api/v1/programs/acme-sales/sources/hubspot?next=/deals?a%3Db"
    at = str(int(NOW * 1000))
    headers = {"x-hubspot-signature-v3": hubspot_signature("POST", signed, body, at), "x-hubspot-request-timestamp": at}
    received = vendors.receive(source("hubspot"), delivery(body, headers, sent))
    assert received.items == [{"objectId": 1, "propertyName": "dealstage"}]
    future = str(int((NOW + 301) * 1000))
    headers["x-hubspot-request-timestamp"] = future
    with pytest.raises(Unauthorized, match="300 s"):
        vendors.receive(source("hubspot"), delivery(body, headers, sent))


def test_levelup_signature_accepts_any_v1_of_a_rotation_and_refuses_a_malformed_header() -> None:
    body = b'{"a": 1}'
    good = levelup_signature(body, int(NOW))
    rotated = f"t={int(NOW)},v1={'0' * 64},{good.split(',')[1]}"
    assert vendors.receive(source("webhook"), delivery(body, {"levelup-signature": rotated})).items == [{"a": 1}]
    assert vendors.levelup_signature(SECRET, body, int(NOW)) == good
    for header in ("", "v1=abc", f"t=soon,{good.split(',')[1]}", f"t={int(NOW)},v1="):
        with pytest.raises(Unauthorized):
            vendors.receive(source("webhook"), delivery(body, {"levelup-signature": header}))


def test_pipedrive_v1_body_is_one_item_and_basic_credentials_are_checked() -> None:
    body = orjson.dumps(
        {
            "v": 1,
            "event": "updated.deal",
            "meta": {"action": "updated", "object": "deal", "id": 88, "timestamp": 1763651045, "v": 1},
            "current": {"id": 88, "status": "won", "value": 12000, "user_id": 17},
            "previous": {"id": 88, "status": "open", "value": 12000, "user_id": 17},
            "retry": 0,
        }
    )
    right = "Basic " + base64.b64encode(SECRET.encode()).decode()
    received = vendors.receive(source("pipedrive"), delivery(body, {"authorization": right}))
    assert received.items[0]["current"]["status"] == "won"
    for header in ("", "Basic !!!", "Bearer " + SECRET, "Basic " + base64.b64encode(b"x:y").decode()):
        with pytest.raises(Unauthorized):
            vendors.receive(source("pipedrive"), delivery(body, {"authorization": header}))


def test_zoho_notification_is_one_item_per_record_without_its_token() -> None:
    body = {
        "server_time": 1750102639787,
        "module": "Deals",
        "ids": ["1", "2"],
        "affected_values": [{"record_id": "1", "values": {"Stage": "Closed Won"}}],
        "affected_fields": [{"1": ["Stage"]}, {"2": ["Amount"]}],
        "operation": "update",
        "channel_id": "1105420521999070702",
        "token": SECRET,
    }
    items = vendors.receive(source("zoho"), delivery(orjson.dumps(body))).items
    assert items == [
        {
            "server_time": 1750102639787,
            "module": "Deals",
            "operation": "update",
            "channel_id": "1105420521999070702",
            "id": "1",
            "values": {"Stage": "Closed Won"},
            "fields": ["Stage"],
        },
        {
            "server_time": 1750102639787,
            "module": "Deals",
            "operation": "update",
            "channel_id": "1105420521999070702",
            "id": "2",
            "values": {},
            "fields": ["Amount"],
        },
    ]
    with pytest.raises(Unauthorized):
        vendors.receive(source("zoho"), delivery(orjson.dumps({**body, "token": None})))


OUTBOUND = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>
 <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
  <OrganizationId>{org}</OrganizationId>
  <Notification><Id>04l1</Id>
   <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
    <sf:Id>0011</sf:Id><sf:Name>Acme</sf:Name><sf:Phone xsi:nil="true"/><sf:Website/>
   </sObject></Notification>
  <Notification><Id>04l2</Id>
   <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>0012</sf:Id></sObject>
  </Notification>
 </notifications></soapenv:Body></soapenv:Envelope>"""


def test_salesforce_outbound_message_items_and_organization() -> None:
    salesforce = source("salesforce", organization={"env": "T_ORG"})
    body = OUTBOUND.format(org="00D5g000000AbCdEAF").encode()  # the 18-character form of the configured id
    received = vendors.receive(salesforce, delivery(body, {"content-type": "text/xml"}))
    assert received.soap
    assert received.items == [{"Id": "0011", "Name": "Acme", "Phone": None, "Website": ""}, {"Id": "0012"}]
    with pytest.raises(Unauthorized, match="OrganizationId"):
        vendors.receive(salesforce, delivery(OUTBOUND.format(org="00D5g000000ZzZz").encode()))
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    with pytest.raises(Invalid):
        vendors.receive(salesforce, delivery(bomb, {"content-type": "text/xml"}))


def test_salesforce_without_an_organization_setting_is_not_configured() -> None:
    body = OUTBOUND.format(org="00D5g000000AbCd").encode()
    with pytest.raises(vendors.NotConfigured):
        vendors.receive(source("salesforce"), delivery(body, {"content-type": "text/xml"}))


def test_organization_is_for_salesforce_sources_only() -> None:
    document = (EXAMPLES / "acme-sales.yaml").read_text() + (
        "sources:\n"
        "  - key: crm\n"
        "    kind: webhook\n"
        "    secret: {env: X}\n"
        "    organization: {env: Y}\n"
        "    events: [{type: deal.won, id: item.id, participant: item.owner}]\n"
    )
    with pytest.raises(Invalid) as refused:
        load_document(document.encode())
    assert [e.path for e in refused.value.errors] == ["sources[0].organization"]


def _mapped(mapping: dict[str, Any], item: Any) -> list[Any]:
    program = type(
        "Program", (), {"key": "p", "doc": type("Doc", (), {"sources": [source("webhook", events=[mapping])]})}
    )
    compiled: CompiledSource = compiled_source(program, "webhook")  # type: ignore[arg-type]
    return map_item(compiled, item, None, {"x-crm": "yes"}, "items[0]")


def test_mapping_values_times_and_when() -> None:
    mapping = {
        "when": "item.stage == 'won'",
        "type": "deal.won",
        "id": "item.id",
        "participant": "headers['x-crm'] == 'yes' ? 'rep-' + item.owner : 'nobody'",
        "occurred_at": "item.at",
        "data": {"amount": "item.amount", "when": "timestamp('2026-11-20T15:04:05Z')", "took": "duration('90s')"},
    }
    [one] = _mapped(mapping, {"stage": "won", "id": 88, "owner": "17", "at": "1763651045000", "amount": 12.5})
    assert one.event == {
        "type": "deal.won",
        "id": "88",
        "participant": "rep-17",
        "occurred_at": "2025-11-20T15:04:05+00:00",
        "data": {"amount": 12.5, "when": "2026-11-20T15:04:05+00:00", "took": 90.0},
    }
    assert _mapped(mapping, {"id": 88}) == []  # when reads a missing field: the mapping does not apply
    [bad] = _mapped({**mapping, "when": "item.stage"}, {"stage": "won"})
    assert bad.rejected.errors[0].path == "items[0].when"
    [no_id] = _mapped(mapping, {"stage": "won", "id": 1.5, "owner": "17", "at": True, "amount": 1})
    assert [e.path for e in no_id.rejected.errors] == ["items[0].id", "items[0].occurred_at"]


# ------------------------------------------------------------------------------------------- fetch

FETCH = SourceFetch.model_validate({"object": "deal", "properties": ["amount"], "token": {"env": "T"}})


def _fetch(fake: FakeHubSpot, ids: list[str], token: str = "tok") -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(fake.app)) as client:
            return await hubspot.fetch_objects(client, FETCH, token, "http://hubspot.test", ids)

    return asyncio.run(run())


def test_fetch_reads_in_batches_of_100_and_leaves_unknown_ids_out() -> None:
    fake = FakeHubSpot("tok", {str(i): {"amount": str(i)} for i in range(150)})
    found = _fetch(fake, [str(i) for i in range(160)])
    assert sorted(found, key=int) == [str(i) for i in range(150)]
    assert found["7"]["properties"] == {"amount": "7"}
    assert [len(r["inputs"]) for r in fake.requests] == [100, 60]
    assert hubspot.object_path("company") == "companies"


def test_fetch_retries_429_after_retry_after() -> None:
    fake = FakeHubSpot("tok", {"1": {"amount": "5"}}, throttle=2, retry_after="0.2")
    started = time.monotonic()
    assert _fetch(fake, ["1"])["1"]["properties"] == {"amount": "5"}
    assert time.monotonic() - started >= 0.4  # waited Retry-After twice
    assert len(fake.requests) == 3


def test_fetch_gives_up_within_its_budget_and_on_a_refused_token() -> None:
    fake = FakeHubSpot("tok", {"1": {}}, throttle=100, retry_after="10")  # longer than the budget
    started = time.monotonic()
    with pytest.raises(hubspot.Unavailable, match="in time"):
        _fetch(fake, ["1"])
    assert time.monotonic() - started < 1
    assert len(fake.requests) == 1
    with pytest.raises(hubspot.Unavailable, match="401"):
        _fetch(FakeHubSpot("other", {}), ["1"])


def test_a_delivery_holds_at_most_1000_items() -> None:
    body = orjson.dumps([{"n": i} for i in range(1001)])
    header = levelup_signature(body, int(NOW))
    with pytest.raises(TooLarge, match="1000 items"):
        vendors.receive(source("webhook"), delivery(body, {"levelup-signature": header}))
