"""``target: auto`` (issue 12, item 4): each rep's weekly goal is a stretch of their own history, frozen per week.

acme-sales' five-a-week becomes ``target: auto`` with ``auto: {periods: 4, factor: 1.2, floor: 2, cap: 20,
fallback: 5}``. Four weeks of history (New York weeks of November 2026), computed by hand:

- rep-a won 2, 4, 6, 8 deals: median 5 × 1.2 = 6 (own);
- rep-b won 0, 1, 1, 1: median 1 × 1.2 = 1.2, raised to the floor: 2 (own);
- rep-c won 3 in one week only (history short): the team east's median of its members' medians, (5 + 1) / 2
  = 3, × 1.2 = 3.6, rounded up: 4 (team);
- rep-d has no history and no team: the fallback, 5.

In week 49 each wins 6 deals: the goal completes on the 6th, 2nd, 4th and 5th deal. The same stream goes to
two programs, one event at a time and in one batch: the same targets, completions and ledgers. A late deal of
week 48 afterwards moves no target. Replay reads the stored targets and finds nothing to correct.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import select

from levelup.errors import Invalid
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.insights import segments, simulate
from levelup.participants import repository as participants
from levelup.programs import export
from levelup.programs import service as programs
from levelup.programs.validation import validate_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES

NEW_YORK = ZoneInfo("America/New_York")
HISTORY = {"rep-a": [2, 4, 6, 8], "rep-b": [0, 1, 1, 1], "rep-c": [0, 0, 0, 3], "rep-d": [0, 0, 0, 0]}
WEEKS = [dt.date(2026, 11, 2), dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 23)]  # W45–W48
THIS_WEEK = dt.date(2026, 11, 30)  # W49
AUTO = {"periods": 4, "factor": 1.2, "floor": 2, "cap": 20, "fallback": 5}


def document(key: str) -> dict[str, Any]:
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["program"] = key
    goal = next(c for c in doc["challenges"] if c["key"] == "five-a-week")
    goal["target"], goal["auto"] = "auto", AUTO
    return doc


def deal(n: str, rep: str, day: dt.date, minute: int = 0) -> dict[str, Any]:
    when = dt.datetime.combine(day, dt.time(10, minute), NEW_YORK)
    return {"id": n, "type": "deal.won", "participant": rep, "occurred_at": when.isoformat(), "data": {"amount": 1000}}


def set_up(runtime: Runtime, key: str) -> None:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, validate_document(document(key)), actor="test")
        for rep in ("rep-a", "rep-b", "rep-c"):
            participants.set_profile(connection, record.id, rep, name=None, teams=["east"], attributes=None)
    history = [
        deal(f"h-{rep}-{w}-{i}", rep, WEEKS[w], i) for rep, counts in HISTORY.items() for w, n in enumerate(counts)
        for i in range(n)
    ]  # fmt: skip
    for w in range(4):  # a batch a week, received at its end
        week = [e for e in history if e["occurred_at"].startswith(WEEKS[w].isoformat())]
        if week:
            assert {o.status for o in ingest(runtime, key, week, now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))} == {
                "accepted"
            }


def this_week() -> list[dict[str, Any]]:
    return [deal(f"w49-{rep}-{i}", rep, THIS_WEEK, i) for i in range(6) for rep in HISTORY]


def stored(runtime: Runtime, key: str) -> dict[str, Any]:
    f, p, c, e = t.personal_targets.c, t.participants.c, t.challenge_completions.c, t.ledger_entries.c
    with runtime.db.read() as connection:
        record = programs.find(connection, key)
        targets = {
            (rep, period): (target, source)
            for rep, period, target, source in connection.execute(
                select(p.external_id, f.period, f.target, f.source)
                .join(t.participants, p.id == f.participant_id)
                .where(f.program_id == record.id)
            )
        }
        done = {
            (rep, period): event_id
            for rep, period, event_id in connection.execute(
                select(p.external_id, c.period, c.event_id)
                .join(t.participants, p.id == c.participant_id)
                .where(c.program_id == record.id, c.challenge == "five-a-week")
            )
        }
        paid = sorted(
            (rep, amount)
            for rep, amount in connection.execute(
                select(p.external_id, e.amount)
                .join(t.participants, p.id == e.participant_id)
                .where(e.program_id == record.id, e.kind == "challenge")
            )
        )
    return {"targets": targets, "completions": done, "paid": paid}


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_auto_targets_are_frozen_stretches_and_batching_changes_nothing(runtime: Runtime) -> None:
    for key in ("acme-one", "acme-all"):
        set_up(runtime, key)
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    for event in this_week():
        assert ingest(runtime, "acme-one", [event], now=now)[0].status == "accepted"
    assert {o.status for o in ingest(runtime, "acme-all", this_week(), now=now)} == {"accepted"}
    one, together = stored(runtime, "acme-one"), stored(runtime, "acme-all")
    assert one == together
    week = "2026-W49"
    assert {k: v for k, v in one["targets"].items() if k[1] == week} == {
        ("rep-a", week): (6.0, "own"),
        ("rep-b", week): (2.0, "own"),
        ("rep-c", week): (4.0, "team"),
        ("rep-d", week): (5.0, "fallback"),
    }
    # the goal completed on the deal that reached each one's own target (deals are numbered from 0)
    assert {k: v for k, v in one["completions"].items() if k[1] == week} == {
        ("rep-a", week): "w49-rep-a-5",
        ("rep-b", week): "w49-rep-b-1",
        ("rep-c", week): "w49-rep-c-3",
        ("rep-d", week): "w49-rep-d-4",
    }
    # a late deal of week 48 raises rep-b's history, not this week's target
    ingest(runtime, "acme-one", [deal("late", "rep-b", WEEKS[3], 59)], now=now)
    assert stored(runtime, "acme-one")["targets"] == one["targets"]
    # week 50: rep-b's history is now 1, 1, 2, 6 (median 1.5 × 1.2 = 1.8, floored: 2); two deals complete it
    # (the fallback, 5, would not: so the simulation below sees whether it was handed the frozen target)
    w50 = [deal(f"w50-rep-b-{i}", "rep-b", dt.date(2026, 12, 7), i) for i in range(2)]
    assert {o.status for o in ingest(runtime, "acme-one", w50, now=now + dt.timedelta(days=2))} == {"accepted"}
    assert stored(runtime, "acme-one")["targets"][("rep-b", "2026-W50")] == (2.0, "own")
    assert ("rep-b", "2026-W50") in stored(runtime, "acme-one")["completions"]
    for key in ("acme-one", "acme-all"):
        report = replay(runtime, key)
        assert report.ok, report.mismatches[:5]
    # simulating the document in force over all time is handed the same frozen targets: live balances
    start, end = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    simulated = simulate.run(runtime, "acme-one", validate_document(document("acme-one")), start, end)
    pos, p = t.positions.c, t.participants.c
    with runtime.db.read() as connection:
        live: dict[str, dict[str, int]] = {}
        for rep, currency, available in connection.execute(
            select(p.external_id, pos.currency, pos.available)
            .join(t.participants, p.id == pos.participant_id)
            .where(p.program_id == programs.find(connection, "acme-one").id)
        ):
            live.setdefault(rep, {})[currency] = available
    assert simulated["current"]["participants"] == live and simulated["changes"] == []


def test_target_auto_is_checked_with_its_paths() -> None:
    doc = document("acme-sales")
    doc["challenges"].append({"key": "auto-race", "kind": "competition", "format": "race", "metric": "revenue"})
    doc["challenges"][-1] |= {"target": "auto", "every": "month", "prizes": [{"rank": 1, "award": {"coins": 1}}]}
    doc["challenges"].append({"key": "no-auto", "metric": "deals_won", "target": "auto", "every": "week"})
    doc["challenges"].append({"key": "stray", "metric": "deals_won", "target": 3, "auto": {"fallback": 1}})
    goal = next(c for c in doc["challenges"] if c["key"] == "five-a-week")
    goal["auto"] = {**AUTO, "cap": 1}
    with pytest.raises(Invalid) as caught:
        validate_document(doc)
    assert sorted((e.path, e.message) for e in caught.value.errors) == [
        ("challenges[0].auto.cap", "below the floor"),
        ("challenges[3].target", "a race needs a target"),
        ("challenges[3].target", "auto is for a recurring individual goal (kind goal, every)"),
        ("challenges[4].auto", "target: auto needs auto: {fallback: …} (periods, factor, floor, cap)"),
        ("challenges[5].auto", "only with target: auto"),
    ]
    doc = document("acme-sales")
    doc["challenges"][0]["target"] = "automatic"
    with pytest.raises(Invalid) as shape:
        validate_document(doc)
    assert [e.path for e in shape.value.errors] == ["challenges[0].target"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_batch_across_weeks_freezes_the_targets_one_event_at_a_time_would(runtime: Runtime) -> None:
    """Four weeks of history and week 49 in one batch: each week's targets are frozen from the weeks before
    it as stored by then, as when every event came alone (the batch is scored in parts, one a week)."""
    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    history = [
        deal(f"h-{rep}-{w}-{i}", rep, WEEKS[w], i) for rep, counts in HISTORY.items() for w, n in enumerate(counts)
        for i in range(n)
    ]  # fmt: skip
    late = deal("late", "rep-b", WEEKS[2], 59)  # a week-47 deal after week 49's: frozen targets do not move
    stream = sorted(history, key=lambda e: e["occurred_at"]) + this_week() + [late]
    for key in ("acme-one", "acme-all"):
        with runtime.db.write() as connection:
            record, _ = programs.apply(connection, validate_document(document(key)), actor="test")
            for rep in ("rep-a", "rep-b", "rep-c"):
                participants.set_profile(connection, record.id, rep, name=None, teams=["east"], attributes=None)
    for event in stream:
        assert ingest(runtime, "acme-one", [event], now=now)[0].status == "accepted"
    assert {o.status for o in ingest(runtime, "acme-all", stream, now=now)} == {"accepted"}
    one, together = stored(runtime, "acme-one"), stored(runtime, "acme-all")
    assert one["targets"][("rep-a", "2026-W49")] == (6.0, "own")  # from weeks 45-48, stored before week 49
    assert one == together
    for key in ("acme-one", "acme-all"):
        report = replay(runtime, key)
        assert report.ok, report.mismatches[:5]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_an_export_carries_frozen_targets_and_segments_to_the_copy(runtime: Runtime) -> None:
    """Frozen targets and segment assignments are inputs the engine was handed, not derived from the log
    alike later: the export carries them (``target`` and ``segment`` lines) and the copy scores as the source."""
    set_up(runtime, "acme-src")
    with runtime.db.write() as connection:
        record = programs.find(connection, "acme-src")
        compiled = runtime.programs.compiled(connection, record)
        at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
        assigned = segments.assign(connection, record, compiled, now=at, metric=None)
    assert assigned["changed"] == 3  # rep-a, b and c (rep-d has no event yet)
    week = ingest(runtime, "acme-src", this_week(), now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC))
    assert {o.status for o in week} == {"accepted"}
    with runtime.db.read() as connection:
        exported = [json.dumps(line) for line in export.lines(connection, "acme-src")]
    kinds = [json.loads(line)["kind"] for line in exported]
    assert kinds.count("segment") == 3 and kinds.count("target") == len(stored(runtime, "acme-src")["targets"])
    export.rebuild(runtime, exported, as_key="acme-copy")
    assert stored(runtime, "acme-copy") == stored(runtime, "acme-src")
    sa, p = t.segment_assignments.c, t.participants.c
    with runtime.db.read() as connection:
        held = {
            key: sorted(
                connection.execute(
                    select(p.external_id, sa.effective_at, sa.segment)
                    .join_from(t.segment_assignments, t.participants, p.id == sa.participant_id)
                    .where(sa.program_id == programs.find(connection, key).id)
                ).all()
            )
            for key in ("acme-src", "acme-copy")
        }
    assert held["acme-copy"] == held["acme-src"] and len(held["acme-src"]) == 3
    assert replay(runtime, "acme-copy").ok
