"""Bad input never hurts (docs/api.md, Limits): generated hostile values in documents, events, bodies,
paths and query strings get a 4xx problem+json naming the field, and change nothing; on SQLite and
PostgreSQL (the ``client`` fixture runs each test on both)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from levelup.jobs import registry as jobs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES, event

B = "/api/v1/programs/brewhouse-rewards"
PROBLEM = "application/problem+json"
HOSTILE = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
TABLES = (t.events, t.ledger_entries, t.participants, t.teams, t.program_versions, t.redemptions, t.positions)

# ---------------------------------------------------------------------------------------------- values

huge_ints = st.one_of(
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=-(2**63), min_value=-(2**200)),
    st.sampled_from([2**63, 2**64, 2**70, 10**30]),
)
non_finite = st.sampled_from([float("inf"), float("-inf"), float("nan")])
too_big = st.one_of(huge_ints, st.floats(min_value=1e16, max_value=1e308), st.just(1e308))
nul_text = st.tuples(st.text(max_size=10), st.text(max_size=10)).map(lambda ab: f"{ab[0]}\x00{ab[1]}")
bad_ids = st.one_of(
    nul_text,
    st.text(min_size=201, max_size=400),
    st.sampled_from(["a/b", "../../etc/passwd", "/", "   ", " lead", "trail ", "tab\there", ""]),
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(lambda ab: f"{ab[0]}/{ab[1]}"),
)
offsets = st.sampled_from(["Z", "+14:00", "-14:00", "+00:00", "-23:59", "+23:59"])
out_of_range_instants = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59Z"]),
    st.builds(
        lambda d, o: d.isoformat() + o,
        st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(1899, 12, 30)),
        offsets,
    ),
    st.builds(
        lambda d, o: d.isoformat() + o,
        st.datetimes(min_value=dt.datetime(3000, 1, 2), max_value=dt.datetime(9999, 12, 30)),
        offsets,
    ),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)).map(dt.datetime.isoformat),
    st.sampled_from(["yesterday", "2026-13-01T00:00:00Z", "", "2026-11-20"]),
)
long_durations = st.integers(min_value=36_501, max_value=10**12).map(lambda days: f"P{days}D")


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


# ---------------------------------------------------------------------------------------------- helpers


def snapshot(client: TestClient) -> tuple[int, ...]:
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.read() as connection:
        return tuple(connection.execute(select(func.count()).select_from(table)).scalar_one() for table in TABLES)


def refused(response: Any, *paths: str) -> None:
    """A 4xx problem+json; with ``paths``, its errors name one of them (or lie under one)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == PROBLEM, response.headers["content-type"]
    body = response.json()
    assert body["status"] == response.status_code and body["title"] and "detail" in body
    if paths:
        named = [e["path"] for e in body.get("errors", [])]
        assert any(p.startswith(paths) for p in named), (paths, body)


@pytest.fixture
def brew(client: TestClient, admin: dict[str, str]) -> TestClient:
    text = (EXAMPLES / "brewhouse-rewards.yaml").read_text()
    response = client.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    good = event("seed", "purchase.completed", "cus-1", data={"amount": 10})
    assert client.post(f"{B}/events", json=good, headers=admin).status_code == 200
    return client


def brewhouse() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / "brewhouse-rewards.yaml").read_text())
    return loaded


# ---------------------------------------------------------------------------------------------- events


@HOSTILE
@given(field=st.sampled_from(["id", "participant", "reverses"]), value=bad_ids)
def test_a_bad_id_in_an_event_is_a_422_naming_it(
    brew: TestClient, admin: dict[str, str], field: str, value: str
) -> None:
    before = snapshot(brew)
    body = event("e-x", "purchase.completed", "cus-1", data={"amount": 1})
    body[field] = value
    refused(brew.post(f"{B}/events", json=body, headers=admin), field)
    assert snapshot(brew) == before


@HOSTILE
@given(when=out_of_range_instants)
def test_an_occurred_at_out_of_range_is_a_422_and_in_a_batch_only_that_event_is_rejected(
    brew: TestClient, admin: dict[str, str], when: str
) -> None:
    before = snapshot(brew)
    bad = event("bad-time", "purchase.completed", "cus-2", data={"amount": 5}, occurred_at=when)
    refused(brew.post(f"{B}/events", json=bad, headers=admin), "occurred_at")
    assert snapshot(brew) == before
    good_id = f"good-{abs(hash(when))}"
    good = event(good_id, "purchase.completed", "cus-2", data={"amount": 5})
    batch = brew.post(f"{B}/events", json={"events": [good, bad]}, headers=admin)
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert results[0]["status"] in ("accepted", "duplicate")
    assert results[1]["status"] == "rejected" and results[1]["errors"][0]["path"].endswith("occurred_at")


@HOSTILE
@given(
    poison=st.one_of(
        nul_text.map(lambda s: ("s", s)),
        nul_text.map(lambda s: (s, 1)),
        st.integers(17, 40).map(lambda n: ("d", deep(n))),
        st.integers(70_000, 100_000).map(lambda n: ("big", "x" * n)),
    )
)
def test_hostile_event_data_is_a_422_naming_data(brew: TestClient, admin: dict[str, str], poison: Any) -> None:
    before = snapshot(brew)
    key, value = poison
    body = event("e-data", "purchase.completed", "cus-1", data={"amount": 1, key: value})
    response = brew.post(
        f"{B}/events", content=json.dumps(body).encode(), headers={**admin, "Content-Type": "application/json"}
    )
    refused(response, "data")
    assert snapshot(brew) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_in_an_event_are_a_422(brew: TestClient, admin: dict[str, str], literal: str) -> None:
    before = snapshot(brew)
    text = '{"id": "e-nan", "type": "purchase.completed", "participant": "p", "data": {"amount": ' + literal + "}}"
    refused(brew.post(f"{B}/events", content=text, headers={**admin, "Content-Type": "application/json"}))
    assert snapshot(brew) == before


@HOSTILE
@given(portion=st.one_of(st.sampled_from(["0.5", "1", None, True]), st.floats(1e-12, 9e-7), st.floats(1.0001, 1e9)))
def test_a_bad_portion_is_a_422(brew: TestClient, admin: dict[str, str], portion: Any) -> None:
    before = snapshot(brew)
    body = event("r-bad", "purchase.completed", "cus-1", reverses="seed", data={})
    body["portion"] = portion
    if portion is None:
        body["portion"] = "none"
    refused(brew.post(f"{B}/events", json=body, headers=admin), "portion")
    assert snapshot(brew) == before


def test_a_sum_metric_past_its_bound_is_a_problem_not_a_500(brew: TestClient, admin: dict[str, str]) -> None:
    for n in (1, 2):
        sent = event(f"big-{n}", "purchase.completed", "cus-9", data={"amount": 1e308})
        response = brew.post(f"{B}/events", json=sent, headers=admin)
        assert response.status_code == 200, response.text
        shown = brew.get(f"{B}/events/big-{n}", headers=admin).json()
        assert shown["problems"], shown
    assert brew.get(f"{B}/participants/cus-9", headers=admin).status_code == 200
    assert brew.get(f"{B}/rules", headers=admin).status_code == 200


# ---------------------------------------------------------------------------------------------- documents

NUMBERS: dict[str, Callable[[dict[str, Any], Any], str]] = {}


def _at(path: str) -> Callable[[Callable[[dict[str, Any], Any], None]], None]:
    def register(put: Callable[[dict[str, Any], Any], None]) -> None:
        def placed(doc: dict[str, Any], value: Any) -> str:
            put(doc, value)
            return path

        NUMBERS[path] = placed

    return register


@_at("rules[0].award.beans")
def _award(doc: dict[str, Any], value: Any) -> None:
    doc["rules"][0]["award"]["beans"] = value


@_at("rules[1].cap.max")
def _cap(doc: dict[str, Any], value: Any) -> None:
    doc["rules"][1]["cap"]["max"] = value


@_at("rewards[1].stock")
def _stock(doc: dict[str, Any], value: Any) -> None:
    doc["rewards"][1]["stock"] = value


@_at("rewards[0].cost.beans")
def _cost(doc: dict[str, Any], value: Any) -> None:
    doc["rewards"][0]["cost"]["beans"] = value


@_at("tiers.steps[1].at")
def _tier(doc: dict[str, Any], value: Any) -> None:
    doc["tiers"]["steps"][1]["at"] = value


@_at("tiers.steps[1].multiplier.beans")
def _multiplier(doc: dict[str, Any], value: Any) -> None:
    doc["tiers"]["steps"][1]["multiplier"]["beans"] = value


@_at("challenges[0].steps[0].target")
def _target(doc: dict[str, Any], value: Any) -> None:
    doc["challenges"][0]["steps"][0]["target"] = value


@_at("levels.steps[1].at")
def _level(doc: dict[str, Any], value: Any) -> None:
    doc["levels"] = {"currency": "beans", "steps": [{"name": "A", "at": 0}, {"name": "B", "at": value}]}


@HOSTILE
@given(where=st.sampled_from(sorted(NUMBERS)), value=st.one_of(too_big, non_finite))
def test_an_out_of_range_number_in_a_document_is_a_422_naming_it(
    brew: TestClient, admin: dict[str, str], where: str, value: Any
) -> None:
    before = snapshot(brew)
    doc = brewhouse()
    path = NUMBERS[where](doc, value)
    text = yaml.safe_dump(doc)  # YAML carries .inf and .nan; JSON has no such numbers
    refused(brew.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"}), path)
    if not isinstance(value, float) or math.isfinite(value):
        refused(brew.put(B, json=doc, headers=admin), path)
    assert snapshot(brew) == before
    assert brew.get(f"{B}/rules", headers=admin).status_code == 200


@HOSTILE
@given(
    where=st.sampled_from(["currencies[0].expires_after", "currencies[0].pending", "close_grace"]),
    value=long_durations,
)
def test_a_duration_past_a_hundred_years_is_a_422(
    brew: TestClient, admin: dict[str, str], where: str, value: str
) -> None:
    before = snapshot(brew)
    doc = brewhouse()
    if where == "close_grace":
        doc["close_grace"] = value
    else:
        doc["currencies"][0][where.split(".")[1]] = value
    refused(brew.put(B, json=doc, headers=admin), where)
    assert snapshot(brew) == before


@HOSTILE
@given(day=st.one_of(st.dates(max_value=dt.date(1899, 12, 31)), st.dates(min_value=dt.date(3000, 1, 1))))
def test_a_date_out_of_range_in_a_document_is_a_422(brew: TestClient, admin: dict[str, str], day: dt.date) -> None:
    before = snapshot(brew)
    doc = brewhouse()
    doc["rewards"][0]["ends"] = day.isoformat()
    refused(brew.put(B, json=doc, headers=admin), "rewards[0].ends")
    assert snapshot(brew) == before


@HOSTILE
@given(name=nul_text)
def test_a_nul_character_anywhere_in_a_document_is_a_422(brew: TestClient, admin: dict[str, str], name: str) -> None:
    before = snapshot(brew)
    doc = brewhouse()
    doc["rewards"][0]["name"] = name
    refused(brew.put(B, json=doc, headers=admin), "rewards[0].name")
    assert snapshot(brew) == before


@pytest.mark.parametrize(
    "text",
    [
        "program: brewhouse-rewards\nprogram: brewhouse-rewards\n",
        "rules:\n  - {key: a, event: x.y, award: {beans: 1}, award: {beans: 1000}}\n",
        '{"program": "brewhouse-rewards", "name": "a", "name": "b"}',
    ],
)
def test_a_key_given_twice_is_a_422(brew: TestClient, admin: dict[str, str], text: str) -> None:
    before = snapshot(brew)
    response = brew.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    refused(response)
    assert "duplicate key" in response.text
    if text.startswith("{"):
        refused(brew.put(B, content=text, headers={**admin, "Content-Type": "application/json"}))
    assert snapshot(brew) == before


@HOSTILE
@given(levels=st.integers(33, 20_000), kind=st.sampled_from(["flow", "json"]))
def test_a_deep_document_is_a_422(brew: TestClient, admin: dict[str, str], levels: int, kind: str) -> None:
    text = "[" * levels + "]" * levels if kind == "flow" else '{"a":' * levels + "1" + "}" * levels
    response = brew.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    refused(response)
    assert "deeper" in response.text or "not valid" in response.text


def test_an_alias_bomb_is_a_small_422(brew: TestClient, admin: dict[str, str]) -> None:
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"b{i}: [*a, *a, *a, *a]\n" for i in range(30_000))
    response = brew.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    refused(response)
    assert len(response.content) < 10_000


def test_an_error_list_is_capped(brew: TestClient, admin: dict[str, str]) -> None:
    doc = brewhouse()
    doc["rules"] = [{"key": f"r{i}", "event": "x.y", "award": {"nope": 1}, "bogus": 1} for i in range(400)]
    response = brew.put(B, json=doc, headers=admin)
    refused(response)
    errors = response.json()["errors"]
    assert len(errors) == 101 and errors[-1]["path"] == "(more)"


# ---------------------------------------------------------------------------------------------- paths, queries, bodies


@HOSTILE
@given(number=huge_ints.filter(lambda n: n > 0))
def test_huge_integers_in_paths_and_query_strings_are_4xx(brew: TestClient, admin: dict[str, str], number: int) -> None:
    before = snapshot(brew)
    for method, url in (
        ("POST", f"{B}/redemptions/{number}/fulfil"),
        ("POST", f"{B}/redemptions/{number}/cancel"),
        ("GET", f"{B}/participants/cus-1/ledger?before={number}"),
        ("GET", f"{B}/participants/cus-1/ledger?limit={number}"),
        ("GET", f"{B}?version={number}"),
        ("GET", f"{B}/redemptions?after={number}"),
        ("GET", f"{B}/redemptions?limit={number}"),
        ("GET", f"{B}/stream?since={number}"),
        ("GET", f"{B}/leaderboards/spend?offset={number}"),
        ("GET", f"{B}/leaderboards/spend?limit={number}"),
    ):
        refused(brew.request(method, url, headers=admin))
    assert snapshot(brew) == before


@pytest.mark.parametrize("url", [f"{B}?version=0", f"{B}/participants/cus-1/ledger?limit=0"])
def test_zero_where_a_positive_number_is_needed_is_a_422(brew: TestClient, admin: dict[str, str], url: str) -> None:
    refused(brew.get(url, headers=admin))


@HOSTILE
@given(text=nul_text)
def test_a_nul_character_in_a_path_or_query_is_a_4xx(brew: TestClient, admin: dict[str, str], text: str) -> None:
    before = snapshot(brew)
    encoded = quote(text, safe="")
    for method, url in (
        ("GET", f"{B}/participants/{encoded}"),
        ("PUT", f"{B}/participants/{encoded}"),
        ("GET", f"{B}/events/{encoded}"),
        ("GET", f"{B}/rewards?participant={encoded}"),
        ("GET", f"{B}/leaderboards/spend?around={encoded}"),
        ("PUT", f"{B}/teams/{encoded}"),
    ):
        refused(brew.request(method, url, headers=admin, json={"name": "x"}))
    assert snapshot(brew) == before


@HOSTILE
@given(value=bad_ids.filter(lambda v: v != ""))
@example(value="0/")  # decoded to /participants/0/, which a redirect would have made participant "0"
def test_a_bad_id_in_a_path_is_a_4xx(brew: TestClient, admin: dict[str, str], value: str) -> None:
    before = snapshot(brew)
    encoded = quote(value, safe="")
    refused(brew.put(f"{B}/participants/{encoded}", json={"name": "x"}, headers=admin))
    refused(brew.put(f"{B}/teams/{encoded}", json={"name": "x"}, headers=admin))
    assert snapshot(brew) == before


@HOSTILE
@given(
    field=st.sampled_from(["name", "teams", "attributes"]),
    value=st.one_of(
        nul_text,
        st.lists(bad_ids, min_size=1, max_size=3),
        st.builds(lambda k, v: {k: v}, nul_text, st.integers()),
        st.builds(lambda v: {"a": v}, huge_ints),
        st.integers(17, 40).map(lambda n: {"x": deep(n)}),
        st.integers(70_000, 90_000).map(lambda n: {"blob": "x" * n}),
    ),
)
def test_a_hostile_participant_body_is_a_422(brew: TestClient, admin: dict[str, str], field: str, value: Any) -> None:
    before = snapshot(brew)
    body = {field: value}
    response = brew.put(
        f"{B}/participants/cus-1", content=json.dumps(body), headers={**admin, "Content-Type": "application/json"}
    )
    refused(response)
    assert snapshot(brew) == before


def test_every_route_has_the_one_body_limit(brew: TestClient, admin: dict[str, str]) -> None:
    before = snapshot(brew)
    blob = b'{"name": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    for method, url in (("PUT", f"{B}/participants/cus-1"), ("POST", "/api/v1/keys"), ("PUT", f"{B}/teams/t")):
        response = brew.request(method, url, content=blob, headers={**admin, "Content-Type": "application/json"})
        assert response.status_code == 413, (url, response.status_code)
        assert response.headers["content-type"] == PROBLEM
    assert snapshot(brew) == before


@HOSTILE
@given(
    body=st.fixed_dictionaries(
        {"participant": st.one_of(st.just("cus-1"), bad_ids)},
        optional={"amount": st.one_of(huge_ints, st.sampled_from(["10", 1.5, None])), "note": nul_text},
    )
)
def test_a_hostile_adjustment_is_a_422(brew: TestClient, admin: dict[str, str], body: dict[str, Any]) -> None:
    before = snapshot(brew)
    full = {"currency": "beans", "amount": 10, "note": "n", **body}
    if full == {"participant": "cus-1", "currency": "beans", "amount": 10, "note": "n"}:
        full["amount"] = "10"
    refused(brew.post(f"{B}/adjustments", json=full, headers=admin))
    assert snapshot(brew) == before


@pytest.mark.parametrize("until", ["2027-01-01T00:00:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00"])
def test_a_tier_override_until_without_offset_or_out_of_range_is_a_422(
    brew: TestClient, admin: dict[str, str], until: str
) -> None:
    before = snapshot(brew)
    body = {"tier": "Gold", "until": until, "note": "vip"}
    refused(brew.put(f"{B}/participants/cus-1/tier", json=body, headers=admin), "until")
    assert snapshot(brew) == before


@pytest.mark.parametrize("programs", [["no such/program"], ["UPPER"], ["a\x00"], [""]])
def test_a_key_for_an_invalid_program_name_is_a_422(client: TestClient, admin: dict[str, str], programs: Any) -> None:
    refused(client.post("/api/v1/keys", json={"role": "read", "programs": programs}, headers=admin), "programs")


def test_what_a_document_refuses_it_refuses_before_anything_is_stored(
    client: TestClient, admin: dict[str, str]
) -> None:
    """A poisoned document never becomes a version: the program stays unknown."""
    doc = brewhouse()
    doc["rules"][0]["award"]["beans"] = float("inf")
    refused(client.put(B, content=yaml.safe_dump(doc), headers={**admin, "Content-Type": "application/yaml"}))
    assert client.get(B, headers=admin).status_code == 404
    clean = copy.deepcopy(brewhouse())
    assert client.put(B, json=clean, headers=admin).status_code == 201


def test_a_retried_adjustment_answers_200_like_a_retried_redemption(brew: TestClient, admin: dict[str, str]) -> None:
    body = {"participant": "cus-1", "currency": "beans", "amount": 5, "note": "n", "idempotency_key": "adj-1"}
    assert brew.post(f"{B}/adjustments", json=body, headers=admin).status_code == 201
    again = brew.post(f"{B}/adjustments", json=body, headers=admin)
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")


def test_a_yaml_boolean_key_is_named_where_it_is(brew: TestClient, admin: dict[str, str]) -> None:
    text = (EXAMPLES / "brewhouse-rewards.yaml").read_text()
    text = text.replace("- {key: purchase, event: purchase.completed", "- {key: purchase, on: purchase.completed")
    response = brew.put(B, content=text, headers={**admin, "Content-Type": "application/yaml"})
    refused(response, "rules[0].True")
    assert "Keys should be strings" not in response.text


@HOSTILE
@given(
    when=out_of_range_instants,
    value=st.one_of(too_big, non_finite),
    where=st.sampled_from(sorted(NUMBERS)),
    id_=bad_ids,
)
def test_after_hostile_input_every_job_runs_for_every_program(
    brew: TestClient, admin: dict[str, str], when: str, value: Any, where: str, id_: str
) -> None:
    """What was refused left nothing behind that could make a periodic job fail, here or elsewhere."""
    other = "/api/v1/programs/other-shop"
    doc = brewhouse()
    doc["program"] = "other-shop"
    assert brew.put(other, json=doc, headers=admin).status_code in (200, 201)
    bad_time = event("t-1", "purchase.completed", "cus-1", data={"amount": 5}, occurred_at=when)
    refused(brew.post(f"{B}/events", json=bad_time, headers=admin))
    bad_id = event(id_, "purchase.completed", id_, data={"amount": 5})
    refused(brew.post(f"{B}/events", json=bad_id, headers=admin))
    poisoned = brewhouse()
    NUMBERS[where](poisoned, value)
    refused(brew.put(B, content=yaml.safe_dump(poisoned), headers={**admin, "Content-Type": "application/yaml"}))
    runtime: Runtime = brew.app.state.runtime  # type: ignore[attr-defined]
    ran = jobs.run(runtime, now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert {r.program for r in ran} == {"brewhouse-rewards", "other-shop"}
    assert [r for r in ran if r.error is not None] == []
