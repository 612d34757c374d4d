"""``levelup segments refresh``: assigns RFM segments where they changed, effective from now; again: nothing."""

from __future__ import annotations

import json

from sqlalchemy import select
from typer.testing import CliRunner

from levelup.cli.main import app
from levelup.events.ingest import ingest
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES, event


def test_segments_refresh_writes_changes_once(db_url: str) -> None:
    assert (
        CliRunner().invoke(app, ["program", "apply", str(EXAMPLES / "acme-sales.yaml"), "--database", db_url]).exit_code
        == 0
    )
    runtime = Runtime.from_url(db_url, migrate=False)
    try:
        deals = [event(f"d{i}", participant=f"rep-{i % 5}", data={"amount": 1000 * (i + 1)}) for i in range(12)]
        assert {o.status for o in ingest(runtime, "acme-sales", deals)} == {"accepted"}
        first = CliRunner().invoke(
            app, ["segments", "refresh", "--program", "acme-sales", "--database", db_url, "--json"]
        )
        assert first.exit_code == 0, first.output
        body = json.loads(first.stdout)
        assert body["metric"] == "revenue" and body["participants"] == 5 and body["changed"] == 5
        assert sum(body["segments"].values()) == 5 and set(body["segments"]) >= {"at-risk", "champions"}
        again = CliRunner().invoke(app, ["segments", "refresh", "--program", "acme-sales", "--database", db_url])
        assert again.exit_code == 0 and "0 of 5 participants changed segment" in again.stdout
        with runtime.db.read() as connection:
            rows = connection.execute(select(t.segment_assignments.c.segment)).scalars().all()
        assert sorted(rows) == sorted(k for k, n in body["segments"].items() for _ in range(n))
    finally:
        runtime.db.dispose()
