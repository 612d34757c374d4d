"""The periodic jobs: one signature, one registry, run per program by the server's loop and the CLI.

A program whose stored document no longer loads makes every job fail for it; the other
programs are still closed, expired, re-rated and paid, and the failure is reported.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from typer.testing import CliRunner

from levelup.api.app import create_app
from levelup.cli.main import app as cli
from levelup.errors import NotFound
from levelup.jobs import registry as jobs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import ADMIN_KEY, event

HEALTHY = "brewhouse-rewards"
BROKEN = "aaa-broken"  # sorts first: the healthy program runs after the failures
REFERRALS = "referrals: {award: {beans: 200}, hold: P30D}\n"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def days_ago(days: int) -> str:
    return (NOW - dt.timedelta(days=days)).isoformat().replace("+00:00", "Z")


def two_programs(client: TestClient, admin: dict[str, str], brewhouse_text: str) -> None:
    """The same loyalty program under two keys, each with a referral to pay, a lot to expire and a
    tier to lose; ``BROKEN`` (made first) sorts before ``HEALTHY``."""
    for key in (BROKEN, HEALTHY):
        text = brewhouse_text.replace(f"program: {HEALTHY}", f"program: {key}") + REFERRALS
        response = client.put(
            f"/api/v1/programs/{key}", content=text, headers={**admin, "Content-Type": "application/yaml"}
        )
        assert response.status_code == 201, response.text
        for body in (
            event("old", "purchase.completed", "cal", data={"amount": 700}, occurred_at=days_ago(400)),
            event("ref", "referral.made", "bea", data={"referrer": "amy"}, occurred_at=days_ago(50)),
            event("first", "purchase.completed", "bea", data={"amount": 12}, occurred_at=days_ago(45)),
        ):
            response = client.post(f"/api/v1/programs/{key}/events", json=body, headers=admin)
            assert response.status_code in (200, 201, 202), response.text


def poison(runtime: Runtime, key: str) -> None:
    """Make the program's stored document unloadable (as a document accepted by an older, laxer
    version could be): every job that reads the program fails for it."""
    with runtime.db.write() as connection:
        program_id = connection.execute(t.programs.select().where(t.programs.c.key == key)).one().id
        connection.execute(
            update(t.program_versions)
            .where(t.program_versions.c.program_id == program_id)
            .values(document={"program": key, "currencies": "not a list"})
        )


def beans(client: TestClient, admin: dict[str, str], key: str, who: str) -> int:
    response = client.get(f"/api/v1/programs/{key}/participants/{who}", headers=admin)
    assert response.status_code == 200, response.text
    value: int = response.json()["balances"]["beans"]
    return value


@pytest.fixture
def fresh(db_url: str) -> Iterator[Runtime]:
    """Another process's runtime on the same database: nothing compiled in its cache yet."""
    runtime = Runtime.from_url(db_url, migrate=False)
    try:
        yield runtime
    finally:
        runtime.db.dispose()


def test_every_job_has_the_one_signature_and_a_unique_name() -> None:
    assert [job.name for job in jobs.JOBS] == [
        "close-periods",
        "expire",
        "tiers",
        "referrals",
        "segments",
        "board-windows",
        "board-history",
    ]
    assert set(jobs.BY_NAME) == {job.name for job in jobs.JOBS}
    for job in jobs.JOBS:
        parameters = inspect.signature(job.function).parameters
        first, *rest = parameters.values()
        assert first.name == "runtime" and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, job.name
        for name in ("now", "program_keys"):
            assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, (job.name, name)
            assert parameters[name].default is None, (job.name, name)
        assert all(p.default is not inspect.Parameter.empty for p in rest), f"{job.name}: more required parameters"


def test_an_unknown_job_or_program_is_refused_before_anything_runs(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match="no job 'nope'"):
        jobs.run(runtime, ["tiers", "nope"])
    with pytest.raises(NotFound, match="no program 'nope'"):
        jobs.run(runtime, program_keys=["nope"])
    assert jobs.run(runtime) == []  # no program yet: nothing to do


def test_a_program_whose_jobs_fail_does_not_stop_the_other_programs(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime, fresh: Runtime
) -> None:
    two_programs(client, admin, brewhouse_text)
    poison(runtime, BROKEN)
    ran = jobs.run(fresh, now=NOW)
    assert [(r.job, r.program) for r in ran] == [(job.name, key) for job in jobs.JOBS for key in (BROKEN, HEALTHY)]
    failed = {(r.job, r.program): r.error for r in ran if r.error is not None}
    assert set(failed) == {(job.name, BROKEN) for job in jobs.JOBS}
    assert all(error is not None and error.startswith("ValidationError") for error in failed.values())
    done = {r.job: r for r in ran if r.program == HEALTHY}
    assert done["expire"].count >= 1 and any("lots expired (700 beans" in line for line in done["expire"].lines)
    assert done["referrals"].count == 1
    assert beans(client, admin, HEALTHY, "amy") == 200 and beans(client, admin, HEALTHY, "cal") == 0
    again = jobs.run(fresh, now=NOW)  # idempotent: the healthy program has nothing left to do
    assert [(r.job, r.count) for r in again if r.program == HEALTHY] == [(job.name, 0) for job in jobs.JOBS]


def test_the_cli_runs_the_other_programs_reports_the_failure_and_exits_1(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, runtime: Runtime, db_url: str
) -> None:
    two_programs(client, admin, brewhouse_text)
    poison(runtime, BROKEN)
    runner = CliRunner()
    result = runner.invoke(cli, ["expire", "--now", NOW.isoformat(), "--database", db_url])
    assert result.exit_code == 1, result.output
    assert "1 referrals paid" in result.output
    assert f"{HEALTHY}: 0 lots now spendable, 1 lots expired (700 beans)" in result.output
    assert f"expire failed for {BROKEN}: ValidationError" in result.output
    assert f"referrals failed for {BROKEN}: ValidationError" in result.output
    result = runner.invoke(cli, ["jobs", "run", "--now", NOW.isoformat(), "--database", db_url])
    assert result.exit_code == 1, result.output
    for job in jobs.JOBS:
        assert f"{job.name}: " in result.output
        assert f"{job.name} failed for {BROKEN}" in result.output


def test_expire_for_one_program_pays_the_referrals_of_that_program_only(
    client: TestClient, admin: dict[str, str], brewhouse_text: str, db_url: str
) -> None:
    two_programs(client, admin, brewhouse_text)
    runner = CliRunner()
    result = runner.invoke(cli, ["expire", "--program", HEALTHY, "--database", db_url])
    assert result.exit_code == 0, result.output
    assert "1 referrals paid" in result.output
    assert (beans(client, admin, HEALTHY, "amy"), beans(client, admin, BROKEN, "amy")) == (200, 0)
    result = runner.invoke(cli, ["jobs", "run", "referrals", "tiers", "--database", db_url])
    assert result.exit_code == 0, result.output
    assert "referrals: 1 referrals paid" in result.output and "close-periods" not in result.output
    assert beans(client, admin, BROKEN, "amy") == 200
    result = runner.invoke(cli, ["jobs", "run", "nope", "--database", db_url])
    assert result.exit_code == 1 and "no job 'nope'" in result.output


def test_the_server_loop_runs_every_job_for_the_healthy_program_while_another_fails(
    client: TestClient,
    admin: dict[str, str],
    brewhouse_text: str,
    runtime: Runtime,
    fresh: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    two_programs(client, admin, brewhouse_text)
    poison(runtime, BROKEN)
    monkeypatch.setenv("LEVELUP_ADMIN_KEY", ADMIN_KEY)
    failed = {f"{job.doing} failed for program {BROKEN}" for job in jobs.JOBS}

    def logged() -> set[str]:
        return {r.getMessage() for r in caplog.records if r.name == "levelup.jobs"}

    with TestClient(create_app(fresh, close_every=0.05)):
        deadline = time.monotonic() + 20
        # the healthy program's referral paid, and every job tried on the broken one (jobs after the referrals
        # job may not have reached it yet when the referral is paid)
        while beans(client, admin, HEALTHY, "amy") != 200 or not failed <= logged():
            assert time.monotonic() < deadline, ("the server's jobs did not all run", failed - logged())
            time.sleep(0.05)
    assert beans(client, admin, HEALTHY, "cal") == 0  # expired
