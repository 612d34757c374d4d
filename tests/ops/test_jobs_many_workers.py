"""Every worker runs the periodic jobs: on PostgreSQL each (job, program) is done by one of them a tick."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from levelup.api.app import create_app
from levelup.jobs import registry as jobs
from levelup.runtime import Runtime
from tests.conftest import ADMIN_KEY, EXAMPLES, fresh_database

WORKERS = 2
TICKS = 3


@pytest.fixture
def postgres_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh PostgreSQL database with two programs applied."""
    for url in fresh_database("postgres", tmp_path):
        runtime = Runtime.from_url(url, migrate=False)
        monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
        with TestClient(create_app(runtime)) as client:
            for name in ("acme-sales", "brewhouse-rewards"):
                response = client.put(
                    f"/api/v1/programs/{name}",
                    content=(EXAMPLES / f"{name}.yaml").read_text(),
                    headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/yaml"},
                )
                assert response.status_code == 201, response.text
        runtime.db.dispose()
        yield url


def test_two_workers_running_every_job_each_tick_do_each_once_per_program(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[tuple[int, str, str]] = Counter()  # (tick, job, program)
    tick = 0
    lock = threading.Lock()

    def slow(name: str) -> jobs.JobFunction[int]:
        def run(_runtime: Runtime, *, now: object = None, program_keys: object = None) -> int:
            with lock:
                calls[(tick, name, next(iter(program_keys)))] += 1  # type: ignore[call-overload]
            time.sleep(0.2)  # the two workers' runs overlap, as real jobs' do
            return 1

        return run

    fakes = tuple(jobs.Job(job.name, job.doing, job.unit, slow(job.name), int, jobs._no_lines) for job in jobs.JOBS)
    monkeypatch.setattr(jobs, "JOBS", fakes)
    monkeypatch.setattr(jobs, "BY_NAME", {job.name: job for job in fakes})
    workers = [Runtime.from_url(postgres_url, migrate=False) for _ in range(WORKERS)]
    skipped_before = skipped(fakes)
    ran: list[list[jobs.Ran]] = [[] for _ in workers]
    try:
        for tick in range(TICKS):  # as the server's loop: a tick's turns are let go when the next starts
            start = threading.Barrier(WORKERS)
            turns = [jobs.Turns(runtime, tick=str(tick)) for runtime in workers]

            def work(i: int, barrier: threading.Barrier = start, mine: list[jobs.Turns] = turns) -> None:
                barrier.wait()
                ran[i] += jobs.run(workers[i], turns=mine[i])

            threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            for held in turns:
                held.close()
    finally:
        for runtime in workers:
            runtime.db.dispose()
    expected = {(k, j.name, p) for k in range(TICKS) for j in fakes for p in ("acme-sales", "brewhouse-rewards")}
    assert set(calls) == expected and set(calls.values()) == {1}, calls
    done = Counter((r.job, r.program) for worker in ran for r in worker)
    assert set(done.values()) == {TICKS} and len(done) == len(fakes) * 2
    # and the other worker tried each of them and skipped it (whichever worker was first to each)
    assert skipped(fakes) - skipped_before == len(expected) * (WORKERS - 1)


def skipped(fakes: tuple[jobs.Job[int], ...]) -> float:
    return sum(
        REGISTRY.get_sample_value("levelup_job_runs_total", {"job": job.name, "outcome": "skipped"}) or 0
        for job in fakes
    )
