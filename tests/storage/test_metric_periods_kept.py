"""Metrics are stored only in the periods something reads (``CompiledProgram.kept``), and a version that
reads more has them rebuilt from the event log when it is applied; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.leaderboards import ranks
from levelup.metrics.periods import GRAINS, period_keys
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram, Kept
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES

ACME_TEXT = (EXAMPLES / "acme-sales.yaml").read_text()
NEW_YORK = ZoneInfo("America/New_York")
REPS = {f"rep-{i}": "east" if i % 2 else "west" for i in range(4)}


def grains(*names: str) -> tuple[int, ...]:
    return tuple(GRAINS.index(n) for n in names)


def test_acme_sales_keeps_what_its_mechanics_and_boards_read() -> None:
    compiled = CompiledProgram(load_document(ACME_TEXT), 1)
    blitz = "20261001-20261031"
    assert compiled.kept == {
        # top-closer (all), hot-week and five-a-week (week)
        "deals_won": Kept(person=grains("week", "all")),
        # revenue-month and quota-month (month); east-quarter, a team goal (quarter, teams and members);
        # team-revenue (quarter, by team); october-blitz (its range)
        "revenue": Kept(person=grains("month", "quarter"), team=grains("quarter"), person_ranges=frozenset({blitz})),
        "calls": Kept(person=grains("day")),  # daily-caller
    }


def _program(runtime: Runtime, text: str) -> tuple[str, programs.ProgramRecord]:
    key = f"acme-{uuid.uuid4().hex[:12]}"
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(_named(text, key), program=key), actor="test")
        for rep, team in REPS.items():
            participants.set_profile(connection, record.id, rep, name=rep, teams=[team], attributes=None)
    return key, record


def _named(text: str, key: str) -> str:
    return re.sub(r"(?m)^program: acme-sales$", f"program: {key}", text)


def _events() -> list[dict[str, Any]]:
    """Deals and calls over two months, and a reversal: every kind of metric contribution."""
    out: list[dict[str, Any]] = []
    for i in range(24):
        rep = f"rep-{i % 4}"
        at = f"2026-{10 + i % 2}-{1 + i:02d}T15:00:00Z"
        out.append({"id": f"deal-{i}", "type": "deal.won", "participant": rep, "occurred_at": at,
                    "data": {"amount": 1000 + 250 * i}})  # fmt: skip
        out.append({"id": f"call-{i}", "type": "activity.logged", "participant": rep, "occurred_at": at,
                    "data": {"kind": "call", "duration_s": 90}})  # fmt: skip
    out.append({"id": "undo-deal-5", "type": "deal.lost", "participant": "rep-1", "reverses": "deal-5"})
    return out


def _stored(connection: Connection, program_id: int) -> dict[tuple[str, str, str, str], float]:
    """Metric totals as (metric, period, kind, subject's external id) → value."""
    m = t.metric_totals.c
    names = {
        **{("p", i): e for i, e in connection.execute(select(t.participants.c.id, t.participants.c.external_id))},
        **{("t", i): e for i, e in connection.execute(select(t.teams.c.id, t.teams.c.external_id))},
    }
    rows = connection.execute(
        select(m.metric, m.period, m.subject_kind, m.subject_id, m.value).where(m.program_id == program_id)
    )
    return {
        (r.metric, r.period, r.subject_kind, names[(r.subject_kind, r.subject_id)]): r.value for r in rows if r.value
    }


def _last_audit(connection: Connection, program_id: int) -> Any:
    """The detail of the program's newest audit entry."""
    a = t.audit_log.c
    return (
        connection.execute(select(a.detail).where(a.program_id == program_id).order_by(a.id.desc())).scalars().first()
    )


def _expected(events: list[dict[str, Any]], wanted: dict[tuple[str, str], set[str]]) -> dict[Any, float]:
    """Plain sums of the stream in the periods ``wanted[(metric, kind)]`` names (grains or ranges)."""
    reversed_ids = {e["reverses"] for e in events if e.get("reverses")}
    out: dict[Any, float] = defaultdict(float)
    for e in events:
        if e.get("reverses") or e["id"] in reversed_ids:
            continue
        day = dt.datetime.fromisoformat(e["occurred_at"]).astimezone(NEW_YORK).date()
        keys = dict(zip(GRAINS, period_keys(day), strict=True))
        if dt.date(2026, 10, 1) <= day <= dt.date(2026, 10, 31):
            keys["20261001-20261031"] = "20261001-20261031"
        values = (
            {"deals_won": 1.0, "revenue": float(e["data"]["amount"])} if e["type"] == "deal.won" else {"calls": 1.0}
        )
        for metric, value in values.items():
            for kind, subject in (("p", e["participant"]), ("t", REPS[e["participant"]])):
                for period in wanted.get((metric, kind), set()):
                    if period in keys:
                        out[(metric, keys[period], kind, subject)] += value
    return dict(out)


ACME_WANTS = {
    ("deals_won", "p"): {"week", "all"},
    ("revenue", "p"): {"month", "quarter", "20261001-20261031"},
    ("revenue", "t"): {"quarter"},
    ("calls", "p"): {"day"},
}


def test_only_kept_periods_are_stored_and_a_version_that_reads_more_rebuilds_them(runtime: Runtime) -> None:
    key, record = _program(runtime, ACME_TEXT)
    events = _events()
    assert {o.status for o in ingest(runtime, key, events)} == {"accepted"}
    with runtime.db.read() as connection:
        assert _stored(connection, record.id) == _expected(events, ACME_WANTS)

    # v2 adds a weekly team board of deals and a monthly board of calls: the periods they read are
    # filled from the events already in, in the same transaction as the apply
    more = ACME_TEXT.replace(
        "leaderboards:\n",
        "leaderboards:\n  - {key: deals-week, metric: deals_won, window: week, by: team}\n"
        "  - {key: calls-month, metric: calls, window: month}\n",
    )
    with runtime.db.write() as connection:
        record, created = programs.apply(connection, load_document(_named(more, key), program=key), actor="test")
        assert created and record.version == 2
        assert _last_audit(connection, record.id) == {"version": 2, "metrics_rebuilt_from_events": len(events)}
    wants_more = {**ACME_WANTS, ("deals_won", "t"): {"week"}, ("calls", "p"): {"day", "month"}}
    with runtime.db.read() as connection:
        assert _stored(connection, record.id) == _expected(events, wants_more)

    # later events, and a reversal of an event scored by version 1, keep the new periods exact
    later = [
        {
            "id": "deal-late",
            "type": "deal.won",
            "participant": "rep-2",
            "occurred_at": "2026-11-20T15:00:00Z",
            "data": {"amount": 4000},
        },
        {"id": "undo-deal-8", "type": "deal.lost", "participant": "rep-0", "reverses": "deal-8"},
    ]
    assert {o.status for o in ingest(runtime, key, later)} == {"accepted"}
    with runtime.db.read() as connection:
        assert _stored(connection, record.id) == _expected(events + later, wants_more)
    assert replay(runtime, key).mismatches == []

    # a version that reads the same periods (only a rule changed) replays nothing
    same = more.replace("award: {xp: 10}", "award: {xp: 12}")
    with runtime.db.write() as connection:
        record, created = programs.apply(connection, load_document(_named(same, key), program=key), actor="test")
        assert created and record.version == 3
        assert _last_audit(connection, record.id) == {"version": 3}


def test_an_apply_during_ingestion_loses_nothing(runtime: Runtime) -> None:
    """Writers keep ingesting while a version that adds boards (and so rebuilds metrics and fills ranks)
    is applied: afterwards replay finds nothing to correct and the new boards hold every row. On
    PostgreSQL ingestion holds its program's scoring lock (shared) and the apply waits for it; the
    writers it held are then released at once, which also checks that batches sharing participants
    are numbered in the order they are scored."""
    key, record = _program(runtime, ACME_TEXT)
    more = ACME_TEXT.replace(
        "leaderboards:\n",
        "leaderboards:\n  - {key: deals-week, metric: deals_won, window: week, by: team}\n"
        "  - {key: calls-month, metric: calls, window: month}\n",
    )
    failures: list[BaseException] = []
    started = threading.Barrier(4)

    def writer(n: int) -> None:
        try:
            started.wait()
            for i in range(8):
                batch = [{**e, "id": f"w{n}-{i}-{e['id']}"} for e in _events() if not e.get("reverses")][:10]
                assert {o.status for o in ingest(runtime, key, batch)} == {"accepted"}
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.05)  # the writers are under way
    with runtime.db.write() as connection:
        record, created = programs.apply(connection, load_document(_named(more, key), program=key), actor="test")
    for thread in threads:
        thread.join()
    assert not failures and created
    assert replay(runtime, key).mismatches == []
    with runtime.db.read() as connection:
        assert ranks.counts(connection, record.id) == ranks.recount(connection, record.id)
        m, r = t.metric_totals.c, t.rank_rows.c
        for metric, kind, board, grain_length in (("deals_won", "t", "deals_won", 8), ("calls", "p", "calls", 7)):
            totals = {
                (row.period, row.subject_id): row.value
                for row in connection.execute(
                    select(m.period, m.subject_id, m.value).where(
                        m.program_id == record.id, m.metric == metric, m.subject_kind == kind
                    )
                )
                if len(row.period) == grain_length
            }
            copied = {
                (row.period, row.subject_id): row.value
                for row in connection.execute(
                    select(r.period, r.subject_id, r.value).where(
                        r.program_id == record.id, r.source == kind, r.key == board
                    )
                )
                if len(row.period) == grain_length
            }
            assert totals and copied == totals, metric
