"""Program documents over HTTP (docs/api.md): apply, version, read back, validate every error at once."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from levelup.runtime import Runtime
from levelup.storage import tables as t

PROBLEM = "application/problem+json"
ACME = "/api/v1/programs/acme-sales"
BREWHOUSE = "/api/v1/programs/brewhouse-rewards"


def put_yaml(client: TestClient, url: str, text: str, headers: dict[str, str]) -> Any:
    return client.put(url, content=text, headers={**headers, "Content-Type": "application/yaml"})


def error_paths(response: Any) -> dict[str, str]:
    """``{path: message}`` of a problem+json validation response."""
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == response.status_code
    assert body["title"] and body["detail"]
    return {e["path"]: e["message"] for e in body["errors"]}


def test_both_spec_examples_apply_as_version_1(
    client: TestClient, admin: dict[str, str], acme_text: str, brewhouse_text: str
) -> None:
    for url, text, key in ((ACME, acme_text, "acme-sales"), (BREWHOUSE, brewhouse_text, "brewhouse-rewards")):
        response = put_yaml(client, url, text, admin)
        assert response.status_code == 201, response.text
        assert response.json()["program"] == key
        assert response.json()["version"] == 1


def test_reapplying_the_same_document_is_200_and_makes_no_version(
    client: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    assert put_yaml(client, ACME, acme_text, admin).status_code == 201
    again = put_yaml(client, ACME, acme_text, admin)
    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert again.json()["changed"] is False
    assert client.get(ACME, headers=admin).json()["version"] == 1


def test_a_changed_document_makes_a_new_version_and_keeps_the_old(
    acme: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    changed = put_yaml(acme, ACME, acme_text.replace("Acme Sales Arena", "Acme Arena"), admin)
    assert changed.status_code == 200
    assert changed.json()["version"] == 2
    current = acme.get(ACME, headers=admin).json()
    assert (current["version"], current["document"]["name"]) == (2, "Acme Arena")
    first = acme.get(ACME, params={"version": 1}, headers=admin).json()
    assert first["document"]["name"] == "Acme Sales Arena"


def test_get_returns_the_document_in_force(acme: TestClient, admin: dict[str, str], acme_text: str) -> None:
    body = acme.get(ACME, headers=admin).json()
    assert body["program"] == "acme-sales"
    assert body["version"] == 1
    document = body["document"]
    source = yaml.safe_load(acme_text)
    assert document["program"] == source["program"]
    assert document["timezone"] == "America/New_York"
    assert [r["key"] for r in document["rules"]] == ["call-logged", "follow-up-on-time", "deal-won"]
    assert document["rules"][2]["award"] == {"xp": "100 + data.amount / 100", "coins": "data.amount / 1000"}
    assert document["rules"][0]["cap"] == {"max": 20, "per": "day"}
    assert [b["key"] for b in document["leaderboards"]] == [b["key"] for b in source["leaderboards"]]
    # the document read back means the same: applying it again changes nothing
    again = acme.put(ACME, json=document, headers=admin)
    assert (again.status_code, again.json()["version"]) == (200, 1)


def test_json_body_is_accepted(client: TestClient, admin: dict[str, str], brewhouse_text: str) -> None:
    document = yaml.safe_load(brewhouse_text)
    response = client.put(BREWHOUSE, json=document, headers=admin)
    assert response.status_code == 201, response.text
    stored = client.get(BREWHOUSE, headers=admin).json()["document"]
    assert stored["currencies"][0]["expires_after"] == "P365D"
    assert [r["key"] for r in stored["rules"]] == ["purchase", "review", "referral", "profile"]
    assert [s["name"] for s in stored["tiers"]["steps"]] == ["Green", "Gold", "Reserve"]


def test_a_broken_document_lists_every_error_with_its_path(
    client: TestClient, admin: dict[str, str], acme_text: str
) -> None:
    broken = (
        acme_text.replace("award: {xp: 5}", "award: {xpp: 5}")  # rules[0]: unknown currency
        .replace(
            "if: timestamp(data.completed_at) <= timestamp(data.due_at)",
            "if: timestamp(data.completed_at) <=> timestamp(data.due_at)",  # rules[1]: CEL syntax
        )
        .replace("aggregate: sum", "aggregate: summ")  # metrics[1]: wrong aggregate
        .replace("metric: revenue, window: month}", "metric: revenue, windw: month}")  # an unknown key
    )
    response = put_yaml(client, ACME, broken, admin)
    assert response.status_code == 422
    errors = error_paths(response)
    assert set(errors) == {"rules[0].award.xpp", "rules[1].if", "metrics[1].aggregate", "leaderboards[0].windw"}
    assert "unknown currency" in errors["rules[0].award.xpp"]
    assert "xpp" in errors["rules[0].award.xpp"]
    # "timestamp(data.completed_at) <=> ..." : the stray ">" is the 32nd character
    assert "column 32" in errors["rules[1].if"]
    assert "unknown key" in errors["leaderboards[0].windw"]
    assert "sum" in errors["metrics[1].aggregate"]
    assert client.get(ACME, headers=admin).status_code == 404  # nothing applied


def test_cross_reference_errors_are_all_listed(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    broken = (
        acme_text.replace("levels:", "levels:\n  metric: deals_won")  # both a currency and a metric
        .replace("{key: xp-all, currency: xp, window: all}", "{key: xp-all, currency: gems, window: all}")
        .replace("metric: deals_won, window: week, at_least: 3", "metric: deal_won, window: week, at_least: 3")
        .replace("challenges:", "challenges:\n  - {key: five-a-week, metric: deals_won, target: 5, every: week}")
    )
    response = put_yaml(client, ACME, broken, admin)
    assert response.status_code == 422
    errors = error_paths(response)
    assert set(errors) == {
        "levels",
        "leaderboards[3].currency",
        "badges[1].grades[0].when[0].metric",
        "challenges[1].key",
    }
    assert "gems" in errors["leaderboards[3].currency"]
    assert "deal_won" in errors["badges[1].grades[0].when[0].metric"]
    assert "five-a-week" in errors["challenges[1].key"]  # a duplicate key


def test_program_key_must_equal_the_url(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    response = put_yaml(client, "/api/v1/programs/acme-west", acme_text, admin)
    assert response.status_code == 422
    assert "program" in error_paths(response)
    assert client.get("/api/v1/programs/acme-west", headers=admin).status_code == 404
    assert client.get(ACME, headers=admin).status_code == 404


def test_unparseable_bodies_are_422_problems(client: TestClient, admin: dict[str, str]) -> None:
    not_json = client.put(ACME, content=b"{program: ", headers={**admin, "Content-Type": "application/json"})
    not_yaml = put_yaml(client, ACME, "program: [acme", admin)
    not_a_mapping = client.put(ACME, json=["program", "acme-sales"], headers=admin)
    for response in (not_json, not_yaml, not_a_mapping):
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["status"] == 422
    assert client.get(ACME, headers=admin).status_code == 404


def test_unknown_program_is_404(client: TestClient, admin: dict[str, str]) -> None:
    response = client.get("/api/v1/programs/nope", headers=admin)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_program_schema_is_a_json_schema(client: TestClient) -> None:
    response = client.get("/api/v1/schema/program")
    assert response.status_code == 200
    schema = response.json()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False  # unknown keys are errors
    assert {"program", "name", "currencies"} <= set(schema["required"])
    assert {"program", "timezone", "currencies", "metrics", "rules", "levels", "leaderboards"} <= set(
        schema["properties"]
    )
    rule = schema["$defs"]["Rule"]
    assert rule["additionalProperties"] is False
    assert {"key", "event", "if", "award", "cap", "explain"} <= set(rule["properties"])
    aggregate = schema["$defs"]["Metric"]["properties"]["aggregate"]
    assert set(aggregate["enum"]) == {"count", "sum", "max", "distinct"}


def test_openapi_document_describes_the_api(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body = response.json()
    assert body["openapi"].startswith("3.")
    paths = body["paths"]
    assert {"put", "get"} <= set(paths["/api/v1/programs/{program}"])
    assert "post" in paths["/api/v1/programs/{program}/events"]
    assert "get" in paths["/api/v1/programs/{program}/leaderboards/{key}"]
    assert "post" in paths["/api/v1/keys"]


def test_rules_list_every_way_to_earn_with_caps(acme: TestClient, admin: dict[str, str]) -> None:
    response = acme.get(f"{ACME}/rules", headers=admin)
    assert response.status_code == 200
    body = response.json()
    assert body["program"] == "acme-sales"
    ways = {w["rule"]: w for w in body["ways_to_earn"]}
    assert list(ways) == ["call-logged", "follow-up-on-time", "deal-won"]
    call = ways["call-logged"]
    assert call["event"] == "activity.logged"
    assert call["cap"] == {"max": 20, "per": "day"}
    assert call["explain"] == "5 XP per call of a minute or more, up to 20 calls a day"
    assert ways["deal-won"]["cap"] is None
    assert ways["deal-won"]["awards"] == {"xp": "100 + data.amount / 100", "coins": "data.amount / 1000"}
    # a rule without its own explanation still gets a plain-language one
    assert ways["follow-up-on-time"]["explain"]


def test_generated_explanations_mention_caps(client: TestClient, admin: dict[str, str], brewhouse_text: str) -> None:
    assert put_yaml(client, BREWHOUSE, brewhouse_text, admin).status_code == 201
    ways = {w["rule"]: w for w in client.get(f"{BREWHOUSE}/rules", headers=admin).json()["ways_to_earn"]}
    assert ways["purchase"]["explain"] == "1 bean per pound spent"
    assert ways["review"]["cap"] == {"max": 3, "per": "month"}
    assert "3" in ways["review"]["explain"] and "month" in ways["review"]["explain"]
    assert ways["profile"]["cap"] == {"max": 1, "per": "all"}
    assert "at most 1" in ways["profile"]["explain"]


def test_reapplying_to_a_database_stored_before_a_new_field_makes_no_version(
    client: TestClient, admin: dict[str, str], acme_text: str, runtime: Runtime
) -> None:
    """A version stored before ``sources`` existed holds no ``sources: []``: the same document applied again is
    still the same once both are read by the current model."""
    assert put_yaml(client, ACME, acme_text, admin).status_code == 201
    v = t.program_versions.c
    with runtime.db.write() as connection:
        stored = connection.execute(select(v.document)).scalar_one()
        assert stored.pop("sources") == []
        connection.execute(update(t.program_versions).values(document=stored))
    again = put_yaml(client, ACME, acme_text, admin)
    assert (again.status_code, again.json()["version"], again.json()["changed"]) == (200, 1, False)
    changed = put_yaml(client, ACME, acme_text.replace("per: day", "per: week", 1), admin)
    assert (changed.json()["version"], changed.json()["changed"]) == (2, True)
