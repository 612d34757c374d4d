"""``levelup events import`` (docs/integrations.md, "Backfill"): streamed in constant memory, resumable,
a summary with the first errors and their lines, and CSV exports mapped through a program's ``sources:``."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from levelup.cli.importer import import_file
from levelup.runtime import Runtime
from tests.api.test_sources import HUBSPOT, SALESFORCE_OM
from tests.cli.test_cli import ACME, P, apply_acme, run
from tests.conftest import fresh_database


def deal(i: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"won-{i}",
        "type": "deal.won",
        "participant": f"rep-{i % 7}",
        "occurred_at": "2026-11-20T15:00:00Z",
        "data": {"amount": 1000, "note": "x" * 2000},
        **fields,
    }


def one_line(text: str) -> str:
    """Rich wraps long lines to the terminal's width."""
    return " ".join(text.split())


def write_jsonl(path: Path, ids: range) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in ids:
            f.write(json.dumps(deal(i)) + "\n")
    return path


@pytest.fixture
def sqlite_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """Memory is the importer's, whatever the database: measured on SQLite only."""
    for url in fresh_database("sqlite", tmp_path):
        apply_acme(url)
        runtime = Runtime.from_url(url, migrate=False)
        try:
            yield runtime
        finally:
            runtime.db.dispose()


def test_memory_stays_flat_whatever_the_file_size(sqlite_runtime: Runtime, tmp_path: Path) -> None:
    peaks = []
    for n, start in ((200, 0), (2000, 10_000)):  # ten times the events, each of 2 kB
        path = write_jsonl(tmp_path / f"{n}.jsonl", range(start, start + n))
        tracemalloc.start()
        try:
            summary = import_file(sqlite_runtime, "acme-sales", path, batch=100, progress=lambda _: None)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert summary.counts == {"accepted": n, "duplicate": 0, "rejected": 0}
    assert peaks[1] < peaks[0] + 1_500_000, peaks  # the file held in memory would add 4 MB or more


def test_an_interrupted_import_resumes(db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path) -> None:
    apply_acme(db_url)
    write_jsonl(tmp_path / "part.jsonl", range(0, 30))  # what went in before the interruption
    full = write_jsonl(tmp_path / "all.jsonl", range(0, 75))
    assert (
        run("events", "import", str(tmp_path / "part.jsonl"), "-p", "acme-sales", "--database", db_url).exit_code == 0
    )
    resumed = run("events", "import", str(full), "-p", "acme-sales", "--batch", "20", "--database", db_url)
    assert resumed.exit_code == 0, resumed.output
    assert "45 accepted, 30 duplicate, 0 rejected, 0 skipped" in resumed.stdout
    # rep-0 has deals 0, 7, …, 70: 11 deals of 1,000 → 110 XP and 1 coin each, and 100 coins of five-a-week
    assert client.get(f"{P}/participants/rep-0", headers=admin).json()["balances"] == {"xp": 1210, "coins": 111}


def test_summary_names_the_first_errors_with_their_lines_and_a_json_array_streams(
    db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    apply_acme(db_url)
    lines = [json.dumps(deal(1)), "{not json", "", json.dumps(deal(2, occurred_at="2026-11-20T15:00:00"))]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    result = run("events", "import", str(tmp_path / "events.jsonl"), "-p", "acme-sales", "--database", db_url)
    assert result.exit_code == 2
    assert "1 accepted, 0 duplicate, 2 rejected" in result.stdout
    assert "line 2: (no id): (line): not JSON" in one_line(result.stderr)
    assert "line 4: won-2: occurred_at" in one_line(result.stderr)

    array = [deal(3), {"id": "won-4", "type": "deal.won"}, deal(5)]
    (tmp_path / "events.json").write_text(json.dumps(array))
    result = run("events", "import", str(tmp_path / "events.json"), "-p", "acme-sales", "--database", db_url)
    assert result.exit_code == 2
    assert "2 accepted, 0 duplicate, 1 rejected" in result.stdout
    assert "item 1: won-4: participant" in one_line(result.stderr)
    assert client.get(f"{P}/events/won-5", headers=admin).json()["data"]["amount"] == 1000


def apply_with_sources(db_url: str, tmp_path: Path, sources: list[dict[str, Any]]) -> None:
    path = tmp_path / "program.yaml"
    path.write_text(ACME.read_text() + yaml.safe_dump({"sources": sources}))
    result = run("program", "apply", str(path), "--database", db_url)
    assert result.exit_code == 0, result.output


# A HubSpot deals export with the internal property names as column names; the mapping is written over
# object.properties, which is the fetched deal live and the CSV row here, so it serves both.
HUBSPOT_BACKFILL = {
    **HUBSPOT,
    "events": [
        {
            "when": 'object.properties.dealstage == "closedwon"'
            ' && (!has(item.propertyName) || item.propertyName == "dealstage")',
            "type": "deal.won",
            "id": '"hubspot-deal-" + object.properties.hs_object_id + "-won"',
            "participant": '"rep-" + object.properties.hubspot_owner_id',
            "occurred_at": "object.properties.closedate",
            "data": {"amount": "double(object.properties.amount)"},
        }
    ],
}
HUBSPOT_EXPORT = """\
hs_object_id,dealname,dealstage,amount,closedate,hubspot_owner_id
88,Big one,closedwon,12000,2025-11-20T15:04:05Z,17
89,Lost one,closedlost,5000,2025-11-21T10:00:00Z,17
90,Bad amount,closedwon,lots,2025-11-22T10:00:00Z,17
91,Small one,closedwon,1000,2025-11-23T10:00:00Z,18
"""


def test_hubspot_export_through_the_source_mapping(
    db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    apply_with_sources(db_url, tmp_path, [HUBSPOT_BACKFILL])
    (tmp_path / "deals.csv").write_text(HUBSPOT_EXPORT)
    args = ["events", "import", str(tmp_path / "deals.csv"), "-p", "acme-sales", "--source", "hubspot"]
    first = run(*args, "--database", db_url)
    assert first.exit_code == 2, first.output
    assert "2 accepted, 0 duplicate, 1 rejected, 1 skipped" in first.stdout
    assert "line 4: hubspot-deal-90-won: data.amount" in one_line(first.stderr)
    assert client.get(f"{P}/participants/rep-17", headers=admin).json()["balances"] == {"xp": 220, "coins": 12}
    assert "0 accepted, 2 duplicate, 1 rejected, 1 skipped" in run(*args, "--database", db_url).stdout


SALESFORCE_EXPORT = """\
Id,StageName,Amount,LastModifiedDate,Owner_Rep__c
0065g00000Deal88AAA,Closed Won,12000.0,2025-11-20T15:04:05.000Z,17
0065g00000Deal88AAA,Negotiation/Review,12000.0,2025-11-21T09:00:00.000Z,17
0065g00000Deal88AAA,Prospecting,12000.0,2025-11-22T09:00:00.000Z,17
0065g00000Deal99AAA,Prospecting,500.0,2025-11-22T09:00:00.000Z,17
"""


def test_salesforce_export_with_reopened_deals(
    db_url: str, client: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    """The Outbound Message mapping reads a Data Loader export with the API field names: a reopened
    deal is reversed once, later stage changes and a deal never won have nothing to reverse."""
    apply_with_sources(db_url, tmp_path, [SALESFORCE_OM])
    (tmp_path / "opportunities.csv").write_text(SALESFORCE_EXPORT)
    args = ["events", "import", str(tmp_path / "opportunities.csv"), "-p", "acme-sales", "--source", "salesforce"]
    result = run(*args, "--database", db_url)
    assert result.exit_code == 0, result.output
    assert "2 accepted, 0 duplicate, 0 rejected, 2 skipped" in result.stdout
    assert client.get(f"{P}/participants/rep-17", headers=admin).json()["balances"] == {"xp": 0, "coins": 0}
    won = client.get(f"{P}/events/salesforce-opp-0065g00000Deal88AAA-won", headers=admin).json()
    assert won["reversed_by"] == "salesforce-opp-0065g00000Deal88AAA-2025-11-21T09:00:00.000Z"


def test_import_refuses_an_unknown_source(db_url: str, tmp_path: Path) -> None:
    apply_acme(db_url)
    (tmp_path / "deals.csv").write_text(HUBSPOT_EXPORT)
    args = ["events", "import", str(tmp_path / "deals.csv"), "-p", "acme-sales", "--source", "nope"]
    result = run(*args, "--database", db_url)
    assert result.exit_code == 1
    assert "no source 'nope'" in result.stderr
