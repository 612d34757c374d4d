"""One program's bad data never stops the periodic jobs of another (docs/api.md, Jobs).

Each poison below is data an older, laxer version accepted (the API refuses it now, see
tests/api/test_hostile_input.py), written straight to the database. Whatever the poison,
closing, expiry, tiers and referrals still run for the healthy program, the failure is
shown to the admin (``GET …/jobs``), and ``levelup expire --program X`` touches X only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select, update
from typer.testing import CliRunner

from levelup.cli.main import app as cli
from levelup.jobs import registry as jobs
from levelup.jobs.items import ItemsFailed, in_batches
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.api.test_jobs import BROKEN, HEALTHY, NOW, REFERRALS, beans, days_ago, poison
from tests.conftest import event

TEAM_GOAL = "  - {key: team-spend, metric: spend, target: 1, every: month, mode: team, reward: {beans: 7}}\n"


def _program_id(runtime: Runtime, key: str) -> int:
    with runtime.db.read() as connection:
        found: int = connection.execute(select(t.programs.c.id).where(t.programs.c.key == key)).scalar_one()
        return found


def _document(runtime: Runtime, key: str, change: Callable[[dict[str, Any]], None]) -> None:
    program_id = _program_id(runtime, key)
    v = t.program_versions.c
    with runtime.db.write() as connection:
        for version, document in connection.execute(select(v.version, v.document).where(v.program_id == program_id)):
            changed = dict(document)
            change(changed)
            connection.execute(
                update(t.program_versions)
                .where(v.program_id == program_id, v.version == version)
                .values(document=changed)
            )


def null_award(runtime: Runtime, key: str) -> None:
    """``award: {beans: .inf}`` as an older version stored it: JSON null."""

    def change(document: dict[str, Any]) -> None:
        document["rules"] = [{**r, "award": {"beans": None}} for r in document["rules"]]

    _document(runtime, key, change)


def null_target(runtime: Runtime, key: str) -> None:
    """``target: .nan`` stored as null, on the team goal closing settles."""

    def change(document: dict[str, Any]) -> None:
        document["challenges"] = [{**c, "target": None} for c in document["challenges"]]

    _document(runtime, key, change)


def year_9999(runtime: Runtime, key: str) -> None:
    """A metric total in every period of year 9999, as an event at 9999-12-31T23:59:59Z left."""
    program_id = _program_id(runtime, key)
    m = t.metric_totals.c
    with runtime.db.write() as connection:
        row = connection.execute(select(t.metric_totals).where(m.program_id == program_id).limit(1)).one()._asdict()
        for period in ("9999-12-31", "9999-W52", "9999-12", "9999-Q4", "9999"):
            connection.execute(insert(t.metric_totals).values({**row, "metric": "spend", "period": period}))


POISONS = {"unloadable document": poison, "null award": null_award, "null target": null_target, "year 9999": year_9999}


@pytest.fixture
def two(client: TestClient, admin: dict[str, str], brewhouse_text: str) -> TestClient:
    """Two copies of the loyalty program, each with a referral to pay, a lot to expire, a tier to lose and
    a team goal to close; ``BROKEN`` sorts first."""
    for key in (BROKEN, HEALTHY):
        text = brewhouse_text.replace(f"program: {HEALTHY}", f"program: {key}") + REFERRALS
        text = text.replace("challenges:\n", "challenges:\n" + TEAM_GOAL, 1)
        response = client.put(
            f"/api/v1/programs/{key}", content=text, headers={**admin, "Content-Type": "application/yaml"}
        )
        assert response.status_code == 201, response.text
        team = client.put(f"/api/v1/programs/{key}/teams/east", json={"name": "East"}, headers=admin)
        assert team.status_code == 200, team.text
        member = client.put(f"/api/v1/programs/{key}/participants/bea", json={"teams": ["east"]}, headers=admin)
        assert member.status_code in (200, 201), member.text
        for body in (
            event("old", "purchase.completed", "cal", data={"amount": 700}, occurred_at=days_ago(400)),
            event("ref", "referral.made", "bea", data={"referrer": "amy"}, occurred_at=days_ago(50)),
            event("first", "purchase.completed", "bea", data={"amount": 12}, occurred_at=days_ago(45)),
        ):
            response = client.post(f"/api/v1/programs/{key}/events", json=body, headers=admin)
            assert response.status_code == 200, response.text
    return client


@pytest.mark.parametrize("poisoned", sorted(POISONS))
def test_a_poisoned_program_does_not_stop_any_job_of_another(
    two: TestClient, admin: dict[str, str], runtime: Runtime, db_url: str, poisoned: str
) -> None:
    POISONS[poisoned](runtime, BROKEN)
    fresh = Runtime.from_url(db_url, migrate=False)  # nothing compiled in its cache yet, as after a restart
    try:
        ran = jobs.run(fresh, now=NOW)
    finally:
        fresh.db.dispose()
    healthy = {r.job: r for r in ran if r.program == HEALTHY}
    assert all(r.error is None for r in healthy.values()), healthy
    assert healthy["close-periods"].count >= 1  # the team goal's past months
    assert healthy["expire"].count >= 1 and healthy["referrals"].count == 1
    assert beans(two, admin, HEALTHY, "amy") == 200 and beans(two, admin, HEALTHY, "cal") == 0
    shown = two.get(f"/api/v1/programs/{BROKEN}/jobs", headers=admin)
    assert shown.status_code == 200, shown.text
    failed = {j["job"]: j for j in shown.json()["jobs"] if j["error"]}
    assert set(failed) == {r.job for r in ran if r.program == BROKEN and r.error}
    assert all(j["failed_runs"] >= 1 for j in failed.values())
    healthy_shown = two.get(f"/api/v1/programs/{HEALTHY}/jobs", headers=admin).json()["jobs"]
    assert [j["error"] for j in healthy_shown] == [None] * len(jobs.JOBS)


@pytest.mark.parametrize("poisoned", sorted(POISONS))
def test_expire_for_one_program_touches_only_that_program(
    two: TestClient, admin: dict[str, str], runtime: Runtime, db_url: str, poisoned: str
) -> None:
    POISONS[poisoned](runtime, BROKEN)
    result = CliRunner().invoke(cli, ["expire", "--program", HEALTHY, "--now", NOW.isoformat(), "--database", db_url])
    assert result.exit_code == 0, result.output
    assert BROKEN not in result.output
    assert beans(two, admin, HEALTHY, "amy") == 200
    with runtime.db.read() as connection:
        kinds = set(
            connection.execute(
                select(t.ledger_entries.c.kind).where(t.ledger_entries.c.program_id == _program_id(runtime, BROKEN))
            ).scalars()
        )
    assert "expiry" not in kinds and "referral" not in kinds, kinds


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.integers(0, 10_000), unique=True, max_size=60),
    bad=st.sets(st.integers(0, 10_000), max_size=5),
    size=st.integers(1, 20),
)
def test_a_bad_item_holds_back_no_other_item(items: list[int], bad: set[int], size: int) -> None:
    """Each call stands for a transaction: all of its items are done, or (one is bad) none."""
    done: list[int] = []

    def do(chunk: Sequence[int]) -> int:
        if bad & set(chunk):
            raise ValueError("bad item")
        done.extend(chunk)
        return len(chunk)

    failing = [i for i in items if i in bad]
    if failing:
        with pytest.raises(ItemsFailed, match=f"^{len(failing)} things failed"):
            in_batches(items, do, size=size, what="things")
    else:
        assert sum(in_batches(items, do, size=size, what="things")) == len(items)
    assert sorted(done) == sorted(i for i in items if i not in bad)  # each good item once
