"""Expressions have a cost limit (docs/program-document.md, Expressions).

Nested comprehensions are refused when a document is applied; whatever is left runs under a
budget of steps, bytes and time, is stopped past it (a problem on the event), and the server
answers ``/healthz`` meanwhile.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.server import Server
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levelup.rules.expressions import BUDGET, MAX_PLUSES, Activation, Expression, OverBudget, check_cost
from tests.conftest import event

MACROS = ("all", "exists", "exists_one", "filter", "map")
BIG = "+".join(["data.s"] * (MAX_PLUSES + 1))  # as long a chain of + as a document may hold
# the worst that passes the apply-time checks: every step as heavy as the chain allows
WORST = {
    "steps": f"data.l.all(x, ({BIG}).size() > 0)",
    "bytes": f"data.l.map(x, {BIG}).size() > 0",
    "no macro": f"({BIG}).size() > 0",
}


def program(condition: str, key: str = "costly") -> str:
    return (
        f"program: {key}\nname: Costly\ncurrencies: [{{key: xp, name: XP}}]\n"
        f"rules: [{{key: r, event: thing.done, if: '{condition}', award: {{xp: 1}}}}]\n"
    )


def worst_data() -> dict[str, Any]:
    """Enough to run any expression past its budget: 2,000 items to iterate and a 16 KB string."""
    return {"l": [0] * 2000, "s": "x" * 16_000}


@settings(max_examples=40, deadline=None)
@given(outer=st.sampled_from(MACROS), inner=st.sampled_from(MACROS), where=st.sampled_from(["data.l", "[1, 2]"]))
def test_a_comprehension_inside_another_ones_body_is_refused(outer: str, inner: str, where: str) -> None:
    source = f"{where}.{outer}(x, {where}.{inner}(y, x == y))"
    if outer == "map":
        source += ".size() > 0"
    with pytest.raises(ValueError, match="inside another one's body"):
        check_cost(source)
    check_cost(f"{where}.{outer}(x, x > 0)")  # one level, or one after the other, is fine
    check_cost(f"{where}.{outer}(x, x > 0) || {where}.{inner}(y, y > 0)")


@settings(max_examples=20, deadline=None)
@given(terms=st.integers(MAX_PLUSES + 2, 200), operand=st.sampled_from(["data.s", "1", "'x'", "[1]"]))
def test_a_long_chain_of_plus_is_refused(terms: int, operand: str) -> None:
    with pytest.raises(ValueError, match=r"at most \d+ \+ operators"):
        check_cost(" + ".join([operand] * terms))
    check_cost(" + ".join([operand] * (MAX_PLUSES + 1)))
    check_cost("'+' + '" + "+" * 100 + "'")  # a + inside a string is text


@settings(max_examples=25, deadline=None)
@given(items=st.integers(0, 400), body=st.sampled_from(["x > 0", "x == x", "x + 1 > 0"]))
def test_a_metered_expression_means_what_it_says_within_the_budget(items: int, body: str) -> None:
    activation = Activation({"data": {"l": list(range(items))}})
    counted = Expression.compile(f"data.l.filter(x, {body}).size()").evaluate(activation)
    assert counted == items - (1 if body == "x > 0" and items else 0)
    assert Expression.compile(f"data.l.map(x, x * 2).size() == {items}").evaluate(activation) is True


@pytest.mark.parametrize("kind", ["steps", "bytes"])
def test_past_the_budget_an_evaluation_is_stopped_quickly(kind: str) -> None:
    expression = Expression.compile(WORST[kind])
    started = time.perf_counter()
    with pytest.raises(OverBudget, match="expression stopped"):
        expression.evaluate(Activation({"data": worst_data()}))
    assert time.perf_counter() - started < BUDGET.seconds + 0.5


def test_applying_a_nested_comprehension_is_a_422_with_its_path(client: TestClient, admin: dict[str, str]) -> None:
    text = program("data.l.all(x, data.l.all(y, data.l.all(z, x + y + z >= 0.0)))")
    response = client.put(
        "/api/v1/programs/costly", content=text, headers={**admin, "Content-Type": "application/yaml"}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["path"] for e in response.json()["errors"]] == ["rules[0].if"]
    assert client.get("/api/v1/programs/costly", headers=admin).status_code == 404


def test_an_expression_past_the_budget_is_a_problem_on_the_event(client: TestClient, admin: dict[str, str]) -> None:
    text = program(WORST["bytes"])
    put = client.put("/api/v1/programs/costly", content=text, headers={**admin, "Content-Type": "application/yaml"})
    assert put.status_code == 201, put.text
    sent = client.post(
        "/api/v1/programs/costly/events", json=event("e-1", "thing.done", "p", data=worst_data()), headers=admin
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["awards"] == []
    shown = client.get("/api/v1/programs/costly/events/e-1", headers=admin).json()
    assert any("expression stopped" in str(p) for p in shown["problems"]), shown


# --------------------------------------------------------------------------- a real server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    key = secrets.token_urlsafe(16)
    server = Server(f"sqlite:///{tmp_path / 'levelup.db'}", 1, key, tmp_path / "server.log")
    try:
        server.wait_ready(30)
        yield server.base_url, {"Authorization": f"Bearer {key}"}
    finally:
        server.stop()


ROUNDS = 3  # the test machine is shared: a round whose probes a scheduler hiccup delayed is run again


def probe_while_ingesting(base: str, admin: dict[str, str], round_: int) -> tuple[list[float], Any]:
    """/healthz latencies, every 10 ms, while the server scores a batch of 10 events that run the worst
    expressions to their budget; and the batch's answer."""
    batch = {"events": [event(f"e-{round_}-{i}", "thing.done", f"p-{i}", data=worst_data()) for i in range(10)]}
    answer: dict[str, Any] = {}

    def ingest() -> None:
        with httpx.Client(base_url=base, timeout=120) as other:
            answer["response"] = other.post("/api/v1/programs/costly/events", json=batch, headers=admin)

    latencies = []
    worker = threading.Thread(target=ingest)
    worker.start()
    with httpx.Client(base_url=base, timeout=60) as http:
        while worker.is_alive():
            before = time.perf_counter()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - before)
            time.sleep(0.01)
    worker.join()
    return latencies, answer["response"]


def test_healthz_answers_within_100_ms_while_the_worst_expressions_run(served: tuple[str, dict[str, str]]) -> None:
    base, admin = served
    rules = "".join(
        f"  - {{key: r{i}, event: thing.done, if: '{c}', award: {{xp: 1}}}}\n" for i, c in enumerate(WORST.values())
    )
    text = "program: costly\nname: Costly\ncurrencies: [{key: xp, name: XP}]\nrules:\n" + rules  # a rule each
    put = httpx.put(
        f"{base}/api/v1/programs/costly", content=text, headers={**admin, "Content-Type": "application/yaml"}
    )
    assert put.status_code == 201, put.text
    slowest: list[float] = []
    for round_ in range(ROUNDS):
        latencies, response = probe_while_ingesting(base, admin, round_)
        assert response.status_code == 200, response.text
        assert [r["status"] for r in response.json()["results"]] == ["accepted"] * 10
        assert len(latencies) >= 5, "the batch was too short to probe"
        slowest.append(max(latencies))
        if max(latencies) < 0.1:
            break
    assert min(slowest) < 0.1, f"/healthz took {[round(s * 1000) for s in slowest]} ms at worst in each round"
    assert max(slowest) < 1, "never a second (an unmetered evaluation held the server for 27 s)"


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec="utf-8"), max_size=300))
def test_any_text_as_an_expression_is_a_422_or_applies(client: TestClient, admin: dict[str, str], text: str) -> None:
    document = {
        "program": "fuzz",
        "name": "Fuzz",
        "currencies": [{"key": "xp", "name": "XP"}],
        "rules": [{"key": "r", "event": "thing.done", "if": text, "award": {"xp": 1}}],
    }
    response = client.put("/api/v1/programs/fuzz", json=document, headers=admin)
    assert response.status_code in (200, 201, 422), response.text
