"""The Prometheus metrics of one process, and their exposition for ``GET /metrics``.

With several worker processes each keeps its own values; when ``PROMETHEUS_MULTIPROC_DIR`` names a
folder shared by them (``levelup serve --workers N`` makes one), every worker writes its values
there and any worker's ``/metrics`` adds up all of them (prometheus_client's multi-process mode).
That variable must be set before this module is imported, which is why the CLI sets it before
uvicorn starts the workers.
"""

from __future__ import annotations

import os
from collections import Counter as Counter_
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, event

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "levelup_http_requests_total",
    "HTTP requests answered, by route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "levelup_http_request_duration_seconds",
    "Time to answer an HTTP request (a stream: its whole life), by route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS = Counter("levelup_events_total", "Events ingested, by outcome.", ["program", "status"])
AWARDS = Counter("levelup_awards_total", "Amounts awarded by rules to accepted events.", ["program", "currency"])
GROUP_SIZE = Histogram(
    "levelup_group_commit_events",
    "Events in one ingestion transaction (concurrent requests share one: group commit).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
RULE_ERRORS = Counter(
    "levelup_rule_errors_total",
    "Rules and metrics that could not be evaluated for an accepted event (a problem shown with the event).",
    ["program", "rule"],
)
WEBHOOK_DELIVERIES = Counter(
    "levelup_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome: delivered, retry (to be tried again) or failed (the last try).",
    ["program", "outcome"],
)
JOB_RUNS = Counter("levelup_job_runs_total", "Periodic job runs per program, by outcome.", ["job", "outcome"])
POOL_IN_USE = Gauge(
    "levelup_db_pool_in_use", "Database connections checked out of the pool.", multiprocess_mode="livesum"
)
REDIS_FALLBACKS = Counter(
    "levelup_redis_fallbacks_total", "Answers served from the database because Redis failed, by use.", ["use"]
)


def observe_outcomes(program: str, outcomes: Iterable[Any]) -> None:
    """Count one ingestion's outcomes (:class:`levelup.events.ingest.Outcome`) and what they awarded: summed
    here first, then one increment a label set (a labelled increment costs microseconds, and a batch of a
    thousand events made three thousand of them: ~3% of ingestion, bench/ingest.py --profile)."""
    statuses: Counter_[str] = Counter_()
    awarded: Counter_[str] = Counter_()
    failing: Counter_[str] = Counter_()
    for outcome in outcomes:
        statuses[outcome.status] += 1
        for award in outcome.awards:
            awarded[award["currency"]] += award["amount"]
        failing.update(outcome.problems)
    for status, n in statuses.items():
        EVENTS.labels(program, status).inc(n)
    for currency, amount in awarded.items():
        AWARDS.labels(program, currency).inc(amount)
    for source, n in failing.items():
        RULE_ERRORS.labels(program, source).inc(n)


def watch_pool(engine: Engine) -> None:
    """Keep :data:`POOL_IN_USE` in step with ``engine``'s check-outs and check-ins."""
    event.listen(engine, "checkout", lambda *_: POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: POOL_IN_USE.dec())


def exposition() -> bytes:
    """Every metric in the Prometheus text format: this process's, or all workers' in multi-process mode."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def process_exited(pid: int) -> None:
    """Drop a stopped worker's live gauges from the shared folder (multi-process mode only)."""
    if os.environ.get(MULTIPROCESS_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
