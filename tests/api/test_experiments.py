"""Holdout experiments over HTTP and the CLI: the held out are scored silently and shown nothing of what they
are held out of; ``insights/experiments`` compares the groups with figures computed here by hand."""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from levelup.challenges.closing import close_periods
from levelup.cli.main import app
from levelup.engine.experiments import held_out
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.insights.experiments import t_quantile
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.document import AppliesTo, Experiment
from levelup.programs.validation import validate_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

P = "/api/v1/programs/acme-sales"
WINDOW = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
PROGRAM_HOLDOUT = {"key": "whole", "holdout": 0.3, "applies_to": {"program": True}, "metric": "revenue"}
GOAL_HOLDOUT = {"key": "goal", "holdout": 0.5, "applies_to": {"challenge": "five-a-week"}, "metric": "deals_won"}


def with_experiments(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    doc = yaml.safe_load(acme_text)
    doc["experiments"] = [PROGRAM_HOLDOUT, GOAL_HOLDOUT]
    response = client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin)
    assert response.status_code == 201, response.text


def test_held_out_participants_are_scored_silently_and_compared(
    client: TestClient, admin: dict[str, str], acme_text: str, db_url: str, runtime: Runtime
) -> None:
    with_experiments(client, admin, acme_text)
    amounts = {f"rep-{i}": 1000 * (1 + i % 7) for i in range(24)}
    events = [event(f"d{i}-{p}", participant=p, data={"amount": a}) for p, a in amounts.items() for i in range(5)]
    response = client.post(f"{P}/events", json={"events": events}, headers=admin)
    assert {r["status"] for r in response.json()["results"]} == {"accepted"}
    whole = Experiment.model_validate(PROGRAM_HOLDOUT)
    out = sorted(p for p in amounts if held_out(whole, p))
    assert 3 <= len(out) <= 12
    for p in amounts:
        profile = client.get(f"{P}/participants/{p}", headers=admin).json()
        if p in out:  # earned nothing, and five-a-week is not shown to them
            assert not any(profile["balances"].values()), profile["balances"]
            assert "five-a-week" not in {c["key"] for c in profile["challenges"]}
        else:
            assert ("five-a-week" in {c["key"] for c in profile["challenges"]}) is not held_out(
                Experiment.model_validate(GOAL_HOLDOUT), p
            )
            assert profile["balances"]["coins"] == 5 * amounts[p] // 1000 + (
                0 if held_out(Experiment.model_validate(GOAL_HOLDOUT), p) else 100
            )

    body = client.get(f"{P}/insights/experiments", params=WINDOW, headers=admin).json()
    found = {e["key"]: e for e in body["experiments"]}
    treated = [5.0 * a for p, a in amounts.items() if p not in out]
    held = [5.0 * a for p, a in amounts.items() if p in out]
    got = found["whole"]
    assert got["treated"] == {"participants": len(treated), "mean": round(statistics.mean(treated), 4)}
    assert got["held_out"] == {"participants": len(held), "mean": round(statistics.mean(held), 4)}
    va, vb = statistics.variance(treated) / len(treated), statistics.variance(held) / len(held)
    df = (va + vb) ** 2 / (va**2 / (len(treated) - 1) + vb**2 / (len(held) - 1))
    half = t_quantile(df) * math.sqrt(va + vb)
    difference = statistics.mean(treated) - statistics.mean(held)
    assert math.isclose(got["low"], difference - half, abs_tol=1e-3)
    assert math.isclose(got["high"], difference + half, abs_tol=1e-3)
    assert got["real"] is (abs(difference) > half) and got["applies_to"] == "program"
    # everyone won 5 deals: no difference on deals_won, an interval of one point
    assert found["goal"]["difference"] == 0 and found["goal"]["real"] is False
    assert "the difference is real" not in found["goal"]["sentence"]
    one = client.get(f"{P}/insights/experiments", params={**WINDOW, "experiment": "nope"}, headers=admin)
    assert one.status_code == 422 and one.json()["errors"][0]["path"] == "experiment"

    window = ["--from", "2026-11-01", "--to", "2026-12-01", "--database", db_url]
    result = CliRunner().invoke(app, ["insights", "experiments", "--program", "acme-sales", *window, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["experiments"] == body["experiments"]
    report = replay(runtime, "acme-sales")  # the draw is pure: replay holds out the same participants
    assert report.ok and report.events == len(events), report.mismatches[:3]
    table = CliRunner().invoke(
        app, ["insights", "experiments", "--program", "acme-sales", "--from", "2026-11-01", "--database", db_url]
    )
    assert table.exit_code == 0 and "holdout experiments" in table.stdout and got["sentence"][:20] in table.stdout


def test_an_experiment_is_refused_at_its_path(client: TestClient, admin: dict[str, str], acme_text: str) -> None:
    doc = yaml.safe_load(acme_text)
    doc["experiments"] = [{"key": "x", "holdout": 0.1, "applies_to": {}, "metric": "calls", "salt": ""}]
    response = client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin)
    assert response.status_code == 422
    assert {e["path"] for e in response.json()["errors"]} == {"experiments[0].salt"}
    doc["experiments"][0]["salt"] = "2026"
    response = client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin)
    assert {e["path"] for e in response.json()["errors"]} == {"experiments[0].applies_to"}
    assert Experiment(key="k", holdout=0.1, applies_to=AppliesTo(program=True), metric="m").salt is None
    doc["experiments"][0]["applies_to"] = {"challenge": "east-quarter"}
    response = client.put(P, json=json.loads(json.dumps(doc, default=str)), headers=admin)
    assert [(e["path"], e["message"]) for e in response.json()["errors"]] == [
        ("experiments[0].applies_to.challenge", "a team challenge: a holdout is of participants (hold out the program)")
    ]


def test_the_schema_describes_experiments_and_auto_targets(client: TestClient) -> None:
    schema = client.get("/api/v1/schema/program").json()
    definitions = schema["$defs"]
    assert set(definitions["Experiment"]["required"]) == {"key", "holdout", "applies_to", "metric"}
    assert set(definitions["AutoTarget"]["properties"]) == {"periods", "factor", "floor", "cap", "fallback"}
    target = definitions["Challenge"]["properties"]["target"]["anyOf"]
    assert {"const": "auto", "type": "string"} in target or {"enum": ["auto"], "type": "string"} in target


def test_a_team_goal_does_not_pay_members_held_out_of_the_program(runtime: Runtime, acme_text: str) -> None:
    doc = yaml.safe_load(acme_text)
    next(c for c in doc["challenges"] if c["key"] == "east-quarter")["reward"] = {"coins": 500}
    doc["experiments"] = [PROGRAM_HOLDOUT]
    whole = Experiment.model_validate(PROGRAM_HOLDOUT)
    out = next(f"rep-{i}" for i in range(100) if held_out(whole, f"rep-{i}"))
    kept_in = next(f"rep-{i}" for i in range(100) if not held_out(whole, f"rep-{i}"))
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, validate_document(doc), actor="test")
        for rep in (out, kept_in):
            participants.set_profile(connection, record.id, rep, name=None, teams=["east"], attributes=None)
    deals = [event(f"{rep}-{i}", participant=rep, data={"amount": 300_000}) for rep in (out, kept_in) for i in range(2)]
    assert {o.status for o in ingest(runtime, "acme-sales", deals)} == {"accepted"}  # 1,200,000 in 2026-Q4
    closed = close_periods(runtime, now=dt.datetime(2027, 1, 2, tzinfo=dt.UTC), program_keys=["acme-sales"])
    assert [(c.challenge, c.period, c.paid) for c in closed if c.challenge == "east-quarter"] == [
        ("east-quarter", "2026-Q4", 1)
    ]
    e, p = t.ledger_entries.c, t.participants.c
    with runtime.db.read() as connection:
        paid = connection.execute(
            select(p.external_id, e.amount)
            .join(t.participants, p.id == e.participant_id)
            .where(e.kind == "challenge", e.program_id == record.id)
        ).all()
    assert [tuple(r) for r in paid] == [(kept_in, 500)]
