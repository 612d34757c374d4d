"""The ``levelup`` command (README.md): program validate/apply/show, events import, replay, leaderboard, keys, demo."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from levelup.api.app import create_app
from levelup.cli.demo import demo_links
from levelup.cli.main import app
from levelup.runtime import Runtime
from tests.conftest import EXAMPLES, ROOT

P = "/api/v1/programs/acme-sales"
ACME = EXAMPLES / "acme-sales.yaml"
MAPPING = """\
id: "{opp}-won"
type: deal.won
participant: "{agent}"
occurred_at: "{close}T16:00:00-05:00"
data: {amount: "{value}", deal_id: "{opp}"}
numbers: [amount]
when: {stage: Won}
"""
DEALS_CSV = """\
opp,agent,stage,close,value
O1,ann,Won,2026-11-02,1500
O2,bob,Lost,2026-11-03,900
O3,bob,Won,2026-11-04,2500.5
O4,ann,Won,2026-10-30,4000
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def apply_acme(db_url: str) -> None:
    result = run("program", "apply", str(ACME), "--database", db_url)
    assert result.exit_code == 0, result.output


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def deals(n: int) -> list[dict[str, Any]]:
    """Deal i is won by rep-(i mod 2) for 1,000 × (i + 1)."""
    return [
        {
            "id": f"won-{i}",
            "type": "deal.won",
            "participant": f"rep-{i % 2}",
            "occurred_at": f"2026-11-{10 + i:02d}T15:00:00Z",
            "data": {"amount": 1000 * (i + 1)},
        }
        for i in range(n)
    ]


def test_program_validate_accepts_the_spec_examples() -> None:
    for name in ("acme-sales.yaml", "brewhouse-rewards.yaml"):
        result = run("program", "validate", str(EXAMPLES / name))
        assert result.exit_code == 0, result.output
        assert "valid" in result.stdout


def test_program_validate_prints_every_error_with_its_path(tmp_path: Path) -> None:
    broken = (
        ACME.read_text()
        .replace("award: {xp: 5}", "award: {xpp: 5}")
        .replace("<= timestamp(data.due_at)", "<=> timestamp(data.due_at)")
        .replace("aggregate: sum", "aggregate: summ")
        .replace("metric: revenue, window: month}", "metric: revenue, windw: month}")
    )
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    result = run("program", "validate", str(path))
    assert result.exit_code == 1
    for expected in ("rules[0].award.xpp", "rules[1].if", "column 32", "metrics[1].aggregate", "leaderboards[0].windw"):
        assert expected in result.stderr, expected


def test_program_validate_reports_unparseable_files(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("program: [acme-sales\nname: x\n")
    result = run("program", "validate", str(path))
    assert result.exit_code == 1
    assert "line" in result.stderr


def test_program_apply_and_show(db_url: str, tmp_path: Path) -> None:
    first = run("program", "apply", str(ACME), "--database", db_url)
    assert first.exit_code == 0, first.output
    assert "acme-sales: version 1 (applied)" in first.stdout
    again = run("program", "apply", str(ACME), "--database", db_url)
    assert "acme-sales: version 1 (unchanged)" in again.stdout
    renamed = tmp_path / "acme.yaml"
    renamed.write_text(ACME.read_text().replace("Acme Sales Arena", "Acme Arena"))
    assert "acme-sales: version 2 (applied)" in run("program", "apply", str(renamed), "--database", db_url).stdout

    shown = run("program", "show", "acme-sales", "--database", db_url)
    assert shown.exit_code == 0, shown.output
    header, _, document = shown.stdout.partition("\n")
    assert "version 2" in header
    parsed = json.loads(document)
    assert (parsed["program"], parsed["name"]) == ("acme-sales", "Acme Arena")
    assert [r["key"] for r in parsed["rules"]] == ["call-logged", "follow-up-on-time", "deal-won"]
    old = run("program", "show", "acme-sales", "--version", "1", "--database", db_url)
    assert json.loads(old.stdout.partition("\n")[2])["name"] == "Acme Sales Arena"

    missing = run("program", "show", "nope", "--database", db_url)
    assert missing.exit_code == 1
    assert "nope" in missing.stderr


def test_program_apply_refuses_a_broken_file(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(ACME.read_text().replace("award: {xp: 5}", "award: {xpp: 5}"))
    result = run("program", "apply", str(path), "--database", db_url)
    assert result.exit_code == 1
    assert "rules[0].award.xpp" in result.stderr
    assert run("program", "show", "acme-sales", "--database", db_url).exit_code == 1


def test_import_json_lines_twice(db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path) -> None:
    apply_acme(db_url)
    path = write_jsonl(tmp_path / "events.jsonl", deals(5))
    first = run("events", "import", str(path), "--program", "acme-sales", "--database", db_url)
    assert first.exit_code == 0, first.output
    assert "5 accepted, 0 duplicate, 0 rejected" in first.stdout
    again = run("events", "import", str(path), "--program", "acme-sales", "--batch", "2", "--database", db_url)
    assert again.exit_code == 0, again.output
    assert "0 accepted, 5 duplicate, 0 rejected" in again.stdout
    # rep-0 won 1,000 + 3,000 + 5,000 = 9,000: XP 110 + 130 + 150 = 390, coins 1 + 3 + 5 = 9
    profile = client.get(f"{P}/participants/rep-0", headers=admin).json()
    assert profile["balances"] == {"xp": 390, "coins": 9}


def test_import_reports_rejected_events(db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path) -> None:
    apply_acme(db_url)
    naive = {**deals(2)[1], "occurred_at": "2026-11-11T15:00:00"}
    path = write_jsonl(tmp_path / "events.jsonl", [deals(1)[0], naive])
    result = run("events", "import", str(path), "--program", "acme-sales", "--database", db_url)
    assert result.exit_code == 2
    assert "1 accepted, 0 duplicate, 1 rejected" in result.stdout
    assert "won-1" in result.stderr
    assert "occurred_at" in result.stderr
    assert client.get(f"{P}/events/won-1", headers=admin).status_code == 404


def test_import_csv_with_a_mapping(db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path) -> None:
    apply_acme(db_url)
    (tmp_path / "deals.csv").write_text(DEALS_CSV)
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    args = ["events", "import", str(tmp_path / "deals.csv"), "--program", "acme-sales"]
    args += ["--mapping", str(tmp_path / "mapping.yaml"), "--database", db_url]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert "3 accepted, 0 duplicate, 0 rejected" in first.stdout  # O2 was lost: not a deal.won
    assert "0 accepted, 3 duplicate, 0 rejected" in run(*args).stdout

    o3 = client.get(f"{P}/events/O3-won", headers=admin).json()
    assert o3["participant"] == "bob"
    assert o3["data"] == {"amount": 2500.5, "deal_id": "O3"}
    assert o3["occurred_at"].startswith("2026-11-04T21:00:00")  # 16:00 at -05:00
    assert client.get(f"{P}/events/O2-won", headers=admin).status_code == 404
    # bob: 100 + 2500.5 / 100 → 125 XP, 2 coins; ann: 115 + 140 = 255 XP, 1 + 4 = 5 coins
    assert client.get(f"{P}/participants/bob", headers=admin).json()["balances"] == {"xp": 125, "coins": 2}
    assert client.get(f"{P}/participants/ann", headers=admin).json()["balances"] == {"xp": 255, "coins": 5}


def test_import_csv_without_a_mapping_fails(db_url: str, tmp_path: Path) -> None:
    apply_acme(db_url)
    (tmp_path / "deals.csv").write_text(DEALS_CSV)
    result = run("events", "import", str(tmp_path / "deals.csv"), "--program", "acme-sales", "--database", db_url)
    assert result.exit_code == 1
    assert "mapping" in result.stderr


def test_replay_matches_live_processing(db_url: str, tmp_path: Path) -> None:
    apply_acme(db_url)
    events = deals(6)
    events.append({"id": "undo-2", "type": "deal.reopened", "participant": "rep-0", "reverses": "won-2"})
    events += [
        {
            "id": f"call-{i}",
            "type": "activity.logged",
            "participant": "rep-1",
            "occurred_at": f"2026-11-20T14:{i:02d}:00Z",
            "data": {"kind": "call", "duration_s": 120},
        }
        for i in range(22)
    ]
    path = write_jsonl(tmp_path / "events.jsonl", events)
    assert run("events", "import", str(path), "--program", "acme-sales", "--database", db_url).exit_code == 0
    result = run("replay", "acme-sales", "--database", db_url)
    assert result.exit_code == 0, result.output
    assert "29 events replayed" in result.stdout
    assert "replay matches the stored state" in result.stdout
    assert "mismatch" not in result.stdout


def test_leaderboard_prints_the_board(db_url: str, tmp_path: Path) -> None:
    apply_acme(db_url)
    path = write_jsonl(tmp_path / "events.jsonl", deals(5))
    run("events", "import", str(path), "--program", "acme-sales", "--database", db_url)
    result = run("leaderboard", "acme-sales", "revenue-month", "--period", "2026-11", "--database", db_url)
    assert result.exit_code == 0, result.output
    # rep-0: 1,000 + 3,000 + 5,000 = 9,000; rep-1: 2,000 + 4,000 = 6,000
    lines = [line for line in result.stdout.splitlines() if "rep-" in line]
    assert len(lines) == 2
    assert "1" in lines[0] and "rep-0" in lines[0] and "9,000" in lines[0]
    assert "2" in lines[1] and "rep-1" in lines[1] and "6,000" in lines[1]
    bad = run("leaderboard", "acme-sales", "revenue-month", "--period", "2026-Q4", "--database", db_url)
    assert bad.exit_code == 1
    assert "period" in bad.stderr


def test_keys_create_prints_a_working_secret(db_url: str, client: TestClient, admin: dict[str, str]) -> None:
    apply_acme(db_url)
    result = run("keys", "create", "--role", "read", "--program", "acme-sales", "--database", db_url)
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    key = {"Authorization": f"Bearer {secret}"}
    assert client.get(P, headers=key).status_code == 200
    assert client.post(f"{P}/events", json=deals(1)[0], headers=key).status_code == 403
    assert run("keys", "create", "--role", "root", "--program", "acme-sales", "--database", db_url).exit_code == 1


def _demo_expectations() -> tuple[int, list[tuple[str, int]]]:
    """Events the demo makes from the Maven pipeline, and December 2017's top revenue, computed from the CSV."""
    count = 0
    december: dict[str, int] = defaultdict(int)
    with (ROOT / "src/levelup/demo/data/sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            count += bool(row["engage_date"])
            count += row["deal_stage"] in ("Won", "Lost") and bool(row["close_date"])
            if row["deal_stage"] == "Won" and row["close_date"].startswith("2017-12"):
                december[row["sales_agent"]] += int(row["close_value"] or 0)
    return count, sorted(december.items(), key=lambda item: -item[1])[:3]


def test_demo_loads_the_pipeline_and_prints_the_boards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEVELUP_ADMIN_KEY", raising=False)
    count, top = _demo_expectations()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = run("demo", "--no-serve", "--database", url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    # the links levelup demo prints before it serves open their pages
    runtime = Runtime.from_url(url, migrate=False)
    made = demo_links(runtime)
    assert [label.split(" ", 1)[1] for label, _ in made][::2] == ["TV board", "TV board"]
    assert sum(" home of " in label for label, _ in made) == 2
    pages = TestClient(create_app(runtime))
    for label, path in made:
        assert pages.get(path).status_code == 200, (label, path)
    tv = pages.get(made[0][1]).text  # two weeks of board history, from the (older) data: marks and a chart
    assert "same rank as yesterday" in tv and "<svg" in tv and "Board history:" in out
    assert f"{count:,} accepted, 0 duplicate, 0 rejected" in out
    assert "revenue-month · 2017-12" in out
    assert "team-revenue · 2017-Q4" in out
    assert "xp-all" in out
    for name, revenue in top:
        assert any(name in line and f"{revenue:,}" in line for line in out.splitlines()), (name, revenue)
    assert "lvl_" in out  # a read key to try the API with
