"""``levelup insights churn`` and ``segments --segment``: --csv and --json export everyone, --limit cuts it,
the table shows the first 100 and says so."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner, Result

from levelup.cli.main import app
from levelup.events.ingest import ingest
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES, event

ACME = EXAMPLES / "acme-sales.yaml"
REPS = 130  # more than the table's 100
AS_OF = ("--as-of", "2026-12-01T00:00:00Z")


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def many(db_url: str) -> list[str]:
    """REPS reps, rep-000 … rep-129, each winning one deal on 20 November (rep-n: 1,000 + 10·(n mod 7)); returns
    the ids in the members' order (biggest deal first, ties by id): all Lost, the same recency and frequency."""
    assert run("program", "apply", str(ACME), "--database", db_url).exit_code == 0
    amounts = {f"rep-{n:03d}": 1000 + 10 * (n % 7) for n in range(REPS)}
    runtime = Runtime.from_url(db_url, migrate=False)
    try:
        events = [event(f"d-{rep}", participant=rep, data={"amount": amount}) for rep, amount in amounts.items()]
        assert {o.status for o in ingest(runtime, "acme-sales", events)} == {"accepted"}
    finally:
        runtime.db.dispose()
    return sorted(amounts, key=lambda rep: (-amounts[rep], rep))


def rows(result: Result) -> list[dict[str, str]]:
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_csv_and_json_export_everyone(db_url: str) -> None:
    by_money = many(db_url)
    common = ("--program", "acme-sales", "--database", db_url, *AS_OF)
    churn = rows(run("insights", "churn", "--csv", *common))
    assert [r["id"] for r in churn] == sorted(by_money)  # the same risk for all: by id, everyone once
    assert list(churn[0]) == ["id", "name", "risk", "days_since_last", "usual_gap_days", "events"]
    assert [r["id"] for r in rows(run("insights", "churn", "--csv", "--limit", "5", *common))] == sorted(by_money)[:5]
    body = json.loads(run("insights", "churn", "--json", *common).stdout)
    assert body["total"] == REPS and len(body["participants"]) == REPS
    members = rows(run("insights", "segments", "--segment", "Lost", "--csv", *common))
    assert [r["id"] for r in members] == by_money
    assert members[0] == {"id": "rep-006", "name": "", "recency_days": "10.37", "frequency": "1", "monetary": "1060.0"}
    cut = rows(run("insights", "segments", "--segment", "Lost", "--csv", "--limit", "1000", *common))
    assert [r["id"] for r in cut] == by_money  # a limit above everyone is everyone
    lost = json.loads(run("insights", "segments", "--segment", "Lost", "--json", "--limit", "3", *common).stdout)
    assert (lost["total"], [m["id"] for m in lost["members"]]) == (REPS, by_money[:3])


def test_the_table_shows_the_first_rows_and_says_so(db_url: str) -> None:
    many(db_url)
    common = ("--program", "acme-sales", "--database", db_url, *AS_OF)
    shown = run("insights", "churn", *common)
    assert shown.exit_code == 0, shown.output
    assert "rep-099" in shown.stdout and "rep-100" not in shown.stdout
    assert f"the first 100 of {REPS}" in shown.stdout
    whole = run("insights", "churn", "--limit", "200", *common)
    assert "rep-129" in whole.stdout and "the first" not in whole.stdout
    too_many = run("insights", "targets", "--challenge", "five-a-week", "--limit", "1001", *common)
    assert too_many.exit_code == 2 and "--limit" in too_many.stderr  # other kinds stay at most 1,000
