"""Held out of the whole program, stored: no badge grant, no streak run, nothing of the kind in the feed,
the same metric totals as a treated twin's; replay and the simulation agree with live scoring (issue 12, item 8).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import yaml
from sqlalchemy import select

from levelup.engine.experiments import held_out
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.insights import simulate as sim
from levelup.programs import service as programs
from levelup.programs.document import Experiment
from levelup.programs.validation import validate_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import event

WHOLE = {"key": "all", "holdout": 0.5, "applies_to": {"program": True}, "metric": "deals_won"}
DAY = dt.datetime(2026, 11, 16, 15, 0, tzinfo=dt.UTC)  # a Monday, 10:00 in New York


def events_of(rep: str) -> list[dict[str, Any]]:
    """A call a day for three days (a streak), five deals (Bronze top-closer, hot-week, level Closer), then a
    reversal of the last call and of the last deal."""
    out = []
    for day in range(3):
        at = (DAY + dt.timedelta(days=day)).isoformat()
        out.append(
            event(f"{rep}-call-{day}", "activity.logged", rep, occurred_at=at, data={"kind": "call", "duration_s": 90})
        )
    for i in range(5):
        at = (DAY + dt.timedelta(days=i // 2, hours=1)).isoformat()
        out.append(event(f"{rep}-deal-{i}", "deal.won", rep, occurred_at=at, data={"amount": 20000}))
    late = (DAY + dt.timedelta(days=2, hours=5)).isoformat()
    out.append(event(f"{rep}-undo-call", "activity.reopened", rep, occurred_at=late, data={}, reverses=f"{rep}-call-2"))
    out.append(event(f"{rep}-undo-deal", "deal.reopened", rep, occurred_at=late, data={}, reverses=f"{rep}-deal-4"))
    return out


def test_held_out_of_the_program_nothing_of_the_game_is_stored_and_replay_agrees(
    runtime: Runtime, acme_text: str
) -> None:
    doc = yaml.safe_load(acme_text)
    doc["levels"] = {"metric": "deals_won", "steps": [{"name": "Rookie", "at": 0}, {"name": "Closer", "at": 5}]}
    doc["experiments"] = [WHOLE]
    whole = Experiment.model_validate(WHOLE)
    out = next(f"rep-{i}" for i in range(100) if held_out(whole, f"rep-{i}"))
    treated = next(f"rep-{i}" for i in range(100) if not held_out(whole, f"rep-{i}"))
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, validate_document(doc), actor="test")
    for rep in (out, treated):
        before = events_of(rep)[:-2]
        assert {o.status for o in ingest(runtime, "acme-sales", before)} == {"accepted"}
        assert {o.status for o in ingest(runtime, "acme-sales", events_of(rep)[-2:])} == {"accepted"}

    p, m = t.participants.c, t.metric_totals.c
    with runtime.db.read() as connection:
        ids = dict(connection.execute(select(p.external_id, p.id).where(p.program_id == record.id)).all())
        who = {v: k for k, v in ids.items()}
        grants = Counter(
            who[r.participant_id]
            for r in connection.execute(select(t.badge_grants).where(t.badge_grants.c.program_id == record.id))
        )
        runs = {
            who[r.participant_id]
            for r in connection.execute(select(t.streak_runs).where(t.streak_runs.c.program_id == record.id))
        }
        told = Counter(
            (r.participant, r.kind) for r in connection.execute(select(t.feed).where(t.feed.c.program_id == record.id))
        )
        totals = {
            rep: sorted(
                (r.metric, r.period, r.value)
                for r in connection.execute(
                    select(t.metric_totals).where(m.subject_kind == "p", m.subject_id == ids[rep])
                )
            )
            for rep in (out, treated)
        }
    assert grants == {treated: 2}  # Bronze top-closer (revoked by the reversal, kept as a row) and hot-week
    assert runs == {treated}
    shown = {"badge", "badge.revoked", "level", "streak", "award", "challenge", "challenge.undone"}
    assert not {kind for (rep, kind) in told if rep == out} & shown, told
    assert {kind for (rep, kind) in told if rep == treated} >= {"badge", "badge.revoked", "level", "streak"}
    assert totals[out] == totals[treated] and totals[out]

    report = replay(runtime, "acme-sales")  # replay scores them as live scoring did
    assert report.ok and report.events == 2 * len(events_of(out)), report.mismatches[:3]
    with runtime.db.read() as connection:
        draft = programs.document_of(connection, programs.find(connection, "acme-sales"))
    start, end = dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    simulated = sim.run(runtime, "acme-sales", validate_document(draft), start, end)["current"]
    assert {(x["badge"], x["grade"]): x["holders"] for x in simulated["badges"] if x["holders"]} == {
        ("hot-week", "Hot"): 1  # the treated twin's; Bronze was taken back
    }
