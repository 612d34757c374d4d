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


def test_flags_with_tuned_thresholds(db_url: str) -> None:
    """rep-17 calls once a day on the 2nd–4th of October, then 6 times on the 5th: z = (6 − 1) / 1 = 5 and
    6 ≥ 3 × 1, but 6 < 10 events; at ``burst_min=6`` it is a burst of score 1 − 1/6."""
    assert run("program", "apply", str(ACME), "--database", db_url).exit_code == 0
    runtime = Runtime.from_url(db_url, migrate=False)
    try:
        calls = [(day, 0) for day in (2, 3, 4)] + [(5, i) for i in range(6)]
        events = [
            event(f"c{day}-{i}", "activity.logged", occurred_at=f"2026-10-{day:02d}T15:00:0{i}Z")
            | {"data": {"kind": "call", "duration_s": 60 + i, "day": day}}
            for day, i in calls
        ]
        assert {o.status for o in ingest(runtime, "acme-sales", events)} == {"accepted"}
    finally:
        runtime.db.dispose()
    common = ("--from", "2026-10-01", "--to", "2026-11-01", "--program", "acme-sales", "--database", db_url)
    assert json.loads(run("insights", "flags", "--json", *common).stdout)["total"] == 0
    tuned = run("insights", "flags", "--threshold", "burst_min=6", "--threshold", "burst_z=5", "--json", *common)
    body = json.loads(tuned.stdout)
    assert [(f["kind"], f["participants"], f["score"]) for f in body["flags"]] == [
        ("burst", ["rep-17"], round(1 - 1 / 6, 4))
    ]
    assert (body["thresholds"]["burst_min"], body["thresholds"]["burst_ratio"]) == (6, 3.0)
    table = run("insights", "flags", "--threshold", "burst_min=6", *common)
    assert "1 flag on 1 participant: 1 burst" in table.stdout
    assert "thresholds: burst_min=6, burst_ratio=3, burst_z=5" in table.stdout  # the rest: the defaults
    for bad, path in (("burst_min=0", "burst_min"), ("ratio=2", "ratio"), ("burst_min", "threshold")):
        refused = run("insights", "flags", "--threshold", bad, *common)
        assert refused.exit_code == 1 and f"  {path}: " in refused.output, (bad, refused.output)
