"""``/metrics`` (Prometheus text), ``/readyz``, and one JSON log line per request under a request id."""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from levelup.api.app import create_app
from levelup.events import ingest as ingestion
from levelup.jobs import registry as jobs
from levelup.observability import logs
from levelup.runtime import Runtime
from tests.conftest import ROOT, event

EVENTS = "/api/v1/programs/{program}/events"


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``, keyed by name and labels."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_by_route_template_events_by_outcome_groups_and_awards(
    acme: TestClient, admin: dict[str, str]
) -> None:
    before = samples(acme)
    body = [event("m-1"), event("m-2", participant="rep-9"), event("m-1"), {"id": "bad"}]
    response = acme.post("/api/v1/programs/acme-sales/events", json={"events": body}, headers=admin)
    assert response.status_code == 200, response.text
    after = samples(acme)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("levelup_events_total", program="acme-sales", status="accepted") == 2
    assert delta("levelup_events_total", program="acme-sales", status="duplicate") == 1
    assert delta("levelup_events_total", program="acme-sales", status="rejected") == 1
    awarded: dict[str, float] = {}
    for outcome in response.json()["results"]:
        for award in outcome.get("awards", []):
            awarded[award["currency"]] = awarded.get(award["currency"], 0) + award["amount"]
    assert awarded and all(
        delta("levelup_awards_total", program="acme-sales", currency=c) == n for c, n in awarded.items()
    )
    assert delta("levelup_group_commit_events_count") == 1 and delta("levelup_group_commit_events_sum") == 4
    route = {"method": "POST", "route": EVENTS}
    assert delta("levelup_http_requests_total", **route, status="200") == 1
    assert delta("levelup_http_request_duration_seconds_count", **route) == 1
    # a path no route matches is one label, never the path itself (unbounded label values)
    acme.get("/no/such/path/42")
    unmatched = samples(acme)
    assert value(unmatched, "levelup_http_requests_total", method="GET", route="(unmatched)", status="404") >= 1
    assert not any("/no/such" in str(labels) for _, labels in unmatched)
    assert ("levelup_db_pool_in_use", frozenset()) in after


def test_rules_that_fail_are_counted_by_rule(acme: TestClient, admin: dict[str, str]) -> None:
    before = samples(acme)
    answer = acme.post("/api/v1/programs/acme-sales/events", json=event("no-amount", data={}), headers=admin)
    assert answer.json()["status"] == "accepted"  # stored, its failure shown with it
    after = samples(acme)
    name = "levelup_rule_errors_total"
    for rule, failed in (("rule:deal-won", 2), ("metric:revenue", 1)):  # its xp and coins awards; the metric
        labels = {"program": "acme-sales", "rule": rule}
        assert value(after, name, **labels) - value(before, name, **labels) == failed, rule


def test_ingestion_runs_under_the_request_id(
    acme: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit ingests in a worker thread: its log lines carry the request's id (a group's, all of them)."""
    seen: list[str | None] = []
    real = ingestion.ingest

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(logs.REQUEST_ID.get())
        return real(*args, **kwargs)

    monkeypatch.setattr(ingestion, "ingest", spy)
    answer = acme.post(
        EVENTS.format(program="acme-sales"), json=event("rid-1"), headers={**admin, "X-Request-ID": "req-abc"}
    )
    assert answer.json()["status"] == "accepted" and answer.headers["X-Request-ID"] == "req-abc"
    assert seen == ["req-abc"]


def test_readyz_is_ready_at_the_newest_migration_and_names_what_is_not(client: TestClient, runtime: Runtime) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}
    with runtime.db.write() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"
    assert "0001" in response.json()["failed"]["migrations"]
    runtime.db.dispose()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """``levelup`` logs configured as JSON into a string; the logger put back as it was afterwards."""
    logger = logging.getLogger("levelup")
    level, propagate, handlers = logger.level, logger.propagate, list(logger.handlers)
    written = io.StringIO()
    logs.configure("json", written)
    try:
        yield written
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def lines(written: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in written.getvalue().splitlines()]


def test_one_json_line_per_request_with_its_request_id(
    acme: TestClient, admin: dict[str, str], json_logs: io.StringIO
) -> None:
    mine = acme.get("/api/v1/programs/acme-sales", headers={**admin, "X-Request-ID": "req-from-the-caller"})
    made = acme.get("/api/v1/programs/acme-sales", headers=admin)
    assert mine.headers["x-request-id"] == "req-from-the-caller"
    assert len(made.headers["x-request-id"]) == 16
    logged = [line for line in lines(json_logs) if line["logger"] == "levelup.http"]
    assert [(line["request_id"], line["route"], line["status"]) for line in logged] == [
        ("req-from-the-caller", "/api/v1/programs/{program}", 200),
        (made.headers["x-request-id"], "/api/v1/programs/{program}", 200),
    ]


def test_a_run_of_the_jobs_logs_under_an_id_of_its_own_from_its_worker_threads(
    acme: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, json_logs: io.StringIO
) -> None:
    def loud(*_args: object, **_kwargs: object) -> int:
        logging.getLogger("levelup.jobs").info("working")
        return 0

    monkeypatch.setattr(jobs, "JOBS", (jobs.Job("loud", "being loud", "things", loud, int, jobs._no_lines),))
    monkeypatch.setattr(jobs, "BY_NAME", {"loud": jobs.JOBS[0]})
    with TestClient(create_app(runtime, close_every=0.05)):
        deadline = time.monotonic() + 10
        found: list[dict[str, object]] = []
        while len({line["request_id"] for line in found}) < 2:  # two runs
            assert time.monotonic() < deadline, "the job loop logged nothing"
            time.sleep(0.05)
            found = [line for line in lines(json_logs) if line["message"] == "working"]
    assert all(str(line["request_id"]).startswith("jobs-") for line in found)


def test_the_grafana_dashboard_queries_only_metrics_levelup_exports() -> None:
    dashboard = orjson.loads((ROOT / "docs" / "grafana-dashboard.json").read_bytes())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"levelup_\w+", e)}
    exported = {family.name for family in REGISTRY.collect()} | {
        f"{family.name}_total" for family in REGISTRY.collect() if family.type == "counter"
    }
    assert used and used <= exported, used - exported
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
