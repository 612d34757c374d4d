"""Closing periods: competitions and team goals are paid once, after the grace time, on both databases."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text

from levelup.challenges.closing import close_periods
from levelup.events.ingest import ingest
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime

UTC = dt.UTC
# october-blitz runs 2026-10-01..31 in New York: it ends 2026-11-01 04:00 UTC and closes an hour later.
BEFORE_CLOSE = dt.datetime(2026, 11, 1, 4, 30, tzinfo=UTC)
AFTER_CLOSE = dt.datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def deal(event_id: str, rep: str, amount: int, day: str = "2026-10-20") -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "deal.won",
        "participant": rep,
        "occurred_at": f"{day}T15:00:00Z",
        "data": {"amount": amount},
    }


def setup(runtime: Runtime, text_: str, extra: str = "") -> None:
    doc = load_document(text_ + extra)
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, doc, actor="test")
        for rep, team in (("ann", "east"), ("bob", "east"), ("cat", "west")):
            participants.set_profile(connection, record.id, rep, name=rep.title(), teams=[team], attributes=None)


def prizes(runtime: Runtime) -> dict[str, int]:
    with runtime.db.read() as connection:
        rows = connection.execute(
            text(
                "SELECT p.external_id, sum(l.amount) FROM ledger_entries l "
                "JOIN participants p ON p.id = l.participant_id WHERE l.kind = 'prize' GROUP BY p.external_id"
            )
        ).all()
    return {name: int(total) for name, total in rows}


def test_competition_pays_once_after_grace(runtime: Runtime, acme_text: str) -> None:
    setup(runtime, acme_text)
    ingest(runtime, "acme-sales", [deal("a1", "ann", 9000), deal("b1", "bob", 5000), deal("c1", "cat", 7000)])
    assert close_periods(runtime, now=BEFORE_CLOSE) == []  # ended, but within the grace hour
    closed = close_periods(runtime, now=AFTER_CLOSE)
    assert [(c.challenge, c.period, c.paid) for c in closed] == [("october-blitz", "20261001-20261031", 3)]
    assert prizes(runtime) == {"ann": 1000, "cat": 500, "bob": 250}
    assert close_periods(runtime, now=AFTER_CLOSE) == []  # twice pays once
    close_periods(runtime, now=AFTER_CLOSE + dt.timedelta(days=400))  # later runs close other periods only
    assert prizes(runtime) == {"ann": 1000, "cat": 500, "bob": 250}


def test_late_event_counts_before_close_not_after(runtime: Runtime, acme_text: str) -> None:
    setup(runtime, acme_text)
    ingest(runtime, "acme-sales", [deal("a1", "ann", 9000), deal("b1", "bob", 5000)])
    # a late October deal arriving before the close changes the result: bob overtakes ann
    ingest(runtime, "acme-sales", [deal("b2", "bob", 6000, day="2026-10-31")])
    close_periods(runtime, now=AFTER_CLOSE)
    assert prizes(runtime) == {"bob": 1000, "ann": 500}
    # one arriving after the close counts in the metrics but not in the prizes already paid
    ingest(runtime, "acme-sales", [deal("c1", "cat", 50000, day="2026-10-31")])
    assert close_periods(runtime, now=AFTER_CLOSE + dt.timedelta(hours=1)) == []
    assert prizes(runtime) == {"bob": 1000, "ann": 500}


def test_ties_share_a_prize_rank(runtime: Runtime, acme_text: str) -> None:
    setup(runtime, acme_text)
    ingest(runtime, "acme-sales", [deal("a1", "ann", 5000), deal("b1", "bob", 5000), deal("c1", "cat", 1000)])
    close_periods(runtime, now=AFTER_CLOSE)
    # ranks 1, 1, 3: both leaders get the first prize, third place the third
    assert prizes(runtime) == {"ann": 1000, "bob": 1000, "cat": 250}


def test_team_goal_pays_each_member_when_the_quarter_closes(runtime: Runtime, acme_text: str) -> None:
    rewarded = acme_text.replace("mode: team, teams: [east]}", "mode: team, teams: [east], reward: {coins: 40}}")
    assert rewarded != acme_text
    setup(runtime, rewarded)
    ingest(runtime, "acme-sales", [deal("a1", "ann", 600_000), deal("b1", "bob", 500_000, day="2026-11-02")])
    quarter_closed = dt.datetime(2027, 1, 1, 6, 0, tzinfo=UTC)  # Q4 ends 2027-01-01 05:00 UTC, +1 h grace
    assert all(
        c.challenge != "east-quarter" for c in close_periods(runtime, now=quarter_closed - dt.timedelta(hours=1))
    )
    closed = [c for c in close_periods(runtime, now=quarter_closed) if c.challenge == "east-quarter"]
    assert [(c.period, c.paid) for c in closed] == [("2026-Q4", 2)]
    with runtime.db.read() as connection:
        rows = connection.execute(
            text(
                "SELECT p.external_id, l.amount FROM ledger_entries l JOIN participants p ON p.id = l.participant_id "
                "WHERE l.kind = 'challenge' ORDER BY p.external_id"
            )
        ).all()
    assert [(r[0], r[1]) for r in rows] == [("ann", 40), ("bob", 40)]  # cat is in west: nothing
    assert close_periods(runtime, now=quarter_closed) == []
