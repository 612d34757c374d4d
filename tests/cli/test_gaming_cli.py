"""``levelup insights flags`` and ``levelup insights possible``: a table, --csv and --json."""

from __future__ import annotations

import csv
import json

from levelup.events.ingest import ingest
from levelup.runtime import Runtime
from tests.cli.test_insights_cli import ACME, run
from tests.conftest import event


def test_flags_and_what_is_still_possible(db_url: str) -> None:
    assert run("program", "apply", str(ACME), "--database", db_url).exit_code == 0
    runtime = Runtime.from_url(db_url, migrate=False)
    try:  # rep-17 sends one deal twice under two ids; rep-9 wins 3,000 (october-blitz runs all October)
        october = {"occurred_at": "2026-10-05T15:00:00Z"}
        events = [event("d1", **october), event("d1-again", **october), event("d2", participant="rep-9", **october)]
        events[2]["data"] = {"amount": 3000}
        assert {o.status for o in ingest(runtime, "acme-sales", events)} == {"accepted"}
    finally:
        runtime.db.dispose()
    common = ("--program", "acme-sales", "--database", db_url)
    window = ("--from", "2026-10-01", "--to", "2026-11-01")
    shown = run("insights", "flags", *window, *common)
    assert shown.exit_code == 0, shown.output
    assert "identical data" in shown.stdout and "1 flag on 1 participant: 1 repeated" in shown.stdout
    rows = list(csv.reader(run("insights", "flags", *window, "--csv", *common).stdout.splitlines()))
    assert rows == [
        ["kind", "score", "sentence", "involved"],
        ["repeated", "0.5", 'rep-17 sent 2 deal.won events with identical data {"amount": 12000}', "d1, d1-again"],
    ]

    moment = ("--challenge", "october-blitz", "--as-of", "2026-10-22T04:00:00Z")
    body = json.loads(run("insights", "possible", *moment, "--json", *common).stdout)
    [blitz] = body["competitions"]
    assert [(r["id"], r["value"]) for r in blitz["participants"]] == [("rep-17", 24000.0), ("rep-9", 3000.0)]
    table = run("insights", "possible", *moment, *common)
    assert table.exit_code == 0 and "october-blitz: 2 with a value, 10 days left" in table.stdout
    assert "1: 21,000" in table.stdout  # rep-9's gap to rep-17
    assert run("insights", "possible", "--challenge", "five-a-week", *common).exit_code == 1
