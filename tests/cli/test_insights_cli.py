"""``levelup simulate`` and ``levelup insights``: tables, --json and --csv over a small program."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner, Result

from levelup.cli.main import app
from levelup.events.ingest import ingest
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES, event

ACME = EXAMPLES / "acme-sales.yaml"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def played(db_url: str) -> None:
    assert run("program", "apply", str(ACME), "--database", db_url).exit_code == 0
    runtime = Runtime.from_url(db_url, migrate=False)
    try:
        events = [event("d1", data={"amount": 12000}), event("d2", participant="rep-9", data={"amount": 3000})]
        assert {o.status for o in ingest(runtime, "acme-sales", events)} == {"accepted"}
    finally:
        runtime.db.dispose()


def test_simulate_prints_the_changes_and_the_json(db_url: str, tmp_path: Path) -> None:
    played(db_url)
    draft = tmp_path / "draft.yaml"
    draft.write_text(ACME.read_text().replace('award: {xp: "100 + data.amount / 100"', 'award: {xp: "200"'))
    window = ("--from", "2026-11-01", "--to", "2026-12-01T00:00:00Z", "--database", db_url)
    shown = run("simulate", str(draft), *window)
    assert shown.exit_code == 0, shown.output
    assert "2 events" in shown.stdout and "rep-17: -20 XP" in shown.stdout and "rep-9: +70 XP" in shown.stdout
    as_json = run("simulate", str(draft), *window, "--json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert (body["current"]["totals"]["xp"], body["draft"]["totals"]["xp"]) == (350, 400)
    alone = run("simulate", str(draft), *window, "--json", "--one-process")  # the default has workers
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.stdout) == body
    wrong = run("simulate", str(draft), "--from", "2026-12-01", "--to", "2026-11-01", "--database", db_url)
    assert wrong.exit_code == 1 and "to" in wrong.stderr
    rows = run("simulate", str(draft), *window, "--csv").stdout.splitlines()
    assert rows[0] == "participant,currency,current,draft,change"
    balances = {(pid, c): (int(a), int(b), int(d)) for pid, c, a, b, d in (r.split(",") for r in rows[1:])}
    assert balances[("rep-17", "xp")][2] == -20 and balances[("rep-9", "xp")][2] == 70
    assert all(b - a == d for a, b, d in balances.values())
    assert {pid for pid, _ in balances} == set(body["current"]["participants"]) | set(body["draft"]["participants"])
    empty = run("simulate", str(draft), "--from", "2025-01-01", "--to", "2025-02-01", "--database", db_url)
    assert empty.exit_code == 0, empty.output
    assert "0 events" in empty.stdout and "no participant has an event in this window" in empty.stdout


def test_insights_as_a_table_json_and_csv(db_url: str) -> None:
    played(db_url)  # rep-17 won 12,000 and rep-9 3,000 in November: Gini 2·(3,000 + 2·12,000)/(2·15,000) − 3/2
    common = ("--program", "acme-sales", "--database", db_url)
    shown = run("insights", "fairness", "--period", "2026-11", "--metric", "revenue", *common)
    assert shown.exit_code == 0, shown.output
    assert "the top 10% (1 of 2 active) earned 80% of the revenue in 2026-11" in shown.stdout
    body = json.loads(
        run("insights", "fairness", "--period", "2026-11", "--metric", "revenue", "--json", *common).stdout
    )
    assert (body["gini"], body["top10_share"]) == (0.3, 0.8)
    rows = run("insights", "churn", "--as-of", "2026-11-30T15:04:05Z", "--csv", *common).stdout.splitlines()
    assert rows[0] == "id,name,risk,days_since_last,usual_gap_days,events"
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["rep-17", "rep-9"]
    segments = run("insights", "segments", "--as-of", "2026-12-01", "--json", *common)
    assert json.loads(segments.stdout)["participants"] == 2
    suggested = json.loads(run("insights", "targets", "--challenge", "five-a-week", "--json", *common).stdout)
    assert {(r["id"], r["target"], r["source"]) for r in suggested["participants"]} == {
        ("rep-17", 5, "challenge"),
        ("rep-9", 5, "challenge"),
    }  # no history, no team: the challenge's own target
    twice = [event(f"dup-{i}", participant="rep-9", data={"amount": 7, "deal_id": "DUP"}) for i in range(2)]
    runtime = Runtime.from_url(db_url, migrate=False)
    try:
        assert {o.status for o in ingest(runtime, "acme-sales", twice)} == {"accepted"}
    finally:
        runtime.db.dispose()
    window = ("--from", "2026-11-01", "--to", "2026-12-01")
    repeated = json.loads(run("insights", "flags", *window, "--flag", "repeated", "--json", *common).stdout)
    assert repeated["kinds"] == {"repeated": 1} and repeated["flags"][0]["events"] == ["dup-0", "dup-1"]
    assert run("insights", "flags", *window, "--flag", "nope", *common).exit_code == 1
    at = ("--as-of", "2026-10-15T12:00:00Z")
    one = json.loads(run("insights", "possible", *at, "--participant", "rep-9", "--json", *common).stdout)
    assert [[p["id"] for p in c["participants"]] for c in one["competitions"]] == [["rep-9"]]  # the blitz, open
    assert run("insights", "weather", *common).exit_code == 1
    assert run("insights", "fairness", *common).exit_code == 1  # no --period
