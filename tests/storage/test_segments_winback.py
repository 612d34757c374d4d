"""A win-back challenge for at-risk customers on the UCI Online Retail data (issue 12, item 5), SQLite and PostgreSQL.

uci-rewards (the demo's retail program) gets a challenge only at-risk customers take part in:
``eligible: participant.segment == "at-risk"``, one purchase in a month pays 200 beans. December and
January are loaded a trading day at a time as the demo loads them; the segments job then assigns RFM
segments as of 1 February 2011 (effective from then); February follows. Computed here from the invoices
with plain Python: each customer's recency, frequency and spend before February, hence who is at risk,
and which of them bought in February (a purchase refunded in full takes its count back). Replay, which
loads the same stored assignments, must find nothing to correct; and the job assigns once a day.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import pytest
import yaml
from sqlalchemy import select

from levelup.challenges.closing import close_periods
from levelup.cli.demo import load_retail
from levelup.demo import retail
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.insights.segments import quintiles, segment_of, slug
from levelup.jobs import registry as jobs
from levelup.programs import service as programs
from levelup.programs.validation import validate_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import EXAMPLES, fresh_database

FEBRUARY = dt.datetime(2011, 2, 1, tzinfo=retail.TIMEZONE)  # London is on UTC in winter
WIN_BACK = {
    "key": "win-back",
    "name": "We missed you",
    "metric": "purchases",
    "target": 1,
    "every": "month",
    "eligible": 'participant.segment == "at-risk"',
    "reward": {"beans": 200},
}


def at(event: dict[str, object]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(event["occurred_at"]))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    for url in fresh_database(request.param, tmp_path_factory.mktemp("winback")):
        runtime = Runtime.from_url(url)
        try:
            doc = yaml.safe_load(retail.program_text())
            doc["challenges"] = [WIN_BACK]
            with runtime.db.write() as connection:
                programs.apply(connection, validate_document(doc), actor="test")
            events = retail.plan(retail.read_invoices()).events
            before = [e for e in events if at(e) < FEBRUARY]
            assert load_retail(runtime, before).counts == {"accepted": len(before)}
            ran = jobs.run(runtime, ["segments"], now=FEBRUARY, program_keys=[retail.PROGRAM])
            assert [r.error for r in ran] == [None] and ran[0].count > 0
            again = jobs.run(runtime, ["segments"], now=FEBRUARY + dt.timedelta(hours=1), program_keys=[retail.PROGRAM])
            assert again[0].count == 0  # claimed for the day: nothing assigned twice
            february = [e for e in events if FEBRUARY <= at(e) < dt.datetime(2011, 3, 1, tzinfo=retail.TIMEZONE)]
            assert load_retail(runtime, february).counts == {"accepted": len(february)}
            yield runtime
        finally:
            runtime.db.dispose()


def at_risk_by_hand() -> set[str]:
    """Customers at risk on 1 February: RFM quintiles of what they bought before it, refunds taken off."""
    plan = retail.plan(retail.read_invoices())
    amounts = {e["id"]: float(e["data"]["amount"]) for e in plan.events if e["type"] == "purchase.completed"}
    last: dict[str, dt.datetime] = {}
    count: Counter[str] = Counter()
    spend: dict[str, float] = {}
    for e in plan.events:
        if at(e) >= FEBRUARY:
            continue
        who = str(e["participant"])
        if e["type"] == "purchase.completed":
            last[who] = max(last.get(who, at(e)), at(e))
            count[who] += 1
            spend[who] = spend.get(who, 0.0) + amounts[e["id"]]
        else:
            share = float(e.get("portion", 1.0))
            spend[who] = spend.get(who, 0.0) - amounts[e["reverses"]] * share
    customers = sorted(last)
    recency = [-(FEBRUARY - last[c]).total_seconds() for c in customers]
    scores = zip(
        quintiles(recency),
        quintiles([float(count[c]) for c in customers]),
        quintiles([round(spend[c], 6) for c in customers]),
        strict=True,
    )
    return {c for c, (r, f, m) in zip(customers, scores, strict=True) if slug(segment_of(r, f, m)) == "at-risk"}


def won_back_by_hand(at_risk: set[str]) -> set[str]:
    """At-risk customers with a February purchase that was not refunded in full."""
    plan = retail.plan(retail.read_invoices())
    refunded: Counter[str] = Counter()
    for refund in plan.refunds:
        refunded[refund.purchase] += refund.share
    february = Counter(
        str(e["participant"])
        for e in plan.events
        if e["type"] == "purchase.completed" and at(e) >= FEBRUARY and refunded[str(e["id"])] < 1_000_000
    )
    return {c for c in at_risk if february[c] >= 1}


def test_the_win_back_challenge_pays_exactly_the_at_risk_who_came_back(loaded: Runtime) -> None:
    at_risk = at_risk_by_hand()
    expected = won_back_by_hand(at_risk)
    assert len(at_risk) > 50 and len(expected) > 10
    s, p, c = t.segment_assignments.c, t.participants.c, t.challenge_completions.c
    with loaded.db.read() as connection:
        record = programs.find(connection, retail.PROGRAM)
        assigned = {
            external: (segment, when)
            for external, segment, when in connection.execute(
                select(p.external_id, s.segment, s.effective_at).join(t.participants, p.id == s.participant_id)
            )
        }
        done = dict(
            connection.execute(
                select(p.external_id, c.reward)
                .join(t.participants, p.id == c.participant_id)
                .where(c.program_id == record.id, c.challenge == "win-back")
            ).all()
        )
    assert {e for e, (segment, _) in assigned.items() if segment == "at-risk"} == at_risk
    assert {when for _, when in assigned.values()} == {FEBRUARY}
    assert set(done) == expected
    assert all(reward == [["beans", 200]] for reward in done.values())


def test_replay_reads_the_segments_live_scoring_read(loaded: Runtime) -> None:
    report = replay(loaded, retail.PROGRAM)
    assert report.ok, report.mismatches[:5]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_a_ranking_closes_over_the_at_risk_only(runtime: Runtime) -> None:
    """A competition's ``eligible`` is judged when its period closes, on the segments assigned by then."""
    doc = yaml.safe_load((EXAMPLES / "acme-sales.yaml").read_text())
    doc["challenges"].append(
        {
            "key": "comeback-cup",
            "kind": "competition",
            "metric": "revenue",
            "every": "month",
            "eligible": 'participant.segment == "at-risk"',
            "prizes": [{"rank": 1, "award": {"coins": 300}}],
        }
    )
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, validate_document(doc), actor="test")
    events = [
        {"id": f"d{i}", "type": "deal.won", "participant": rep, "occurred_at": "2026-10-14T15:00:00Z"}
        | {"data": {"amount": amount}}
        for i, (rep, amount) in enumerate((("rep-1", 9000), ("rep-2", 4000), ("rep-3", 1000)))
    ]
    assert {o.status for o in ingest(runtime, "acme-sales", events)} == {"accepted"}
    p = t.participants.c
    with runtime.db.write() as connection:
        ids = dict(connection.execute(select(p.external_id, p.id).where(p.program_id == record.id)).all())
        connection.execute(
            t.segment_assignments.insert(),
            [
                {"participant_id": ids[rep], "effective_at": at, "program_id": record.id, "segment": segment}
                for rep, at, segment in (
                    ("rep-1", dt.datetime(2026, 9, 1, tzinfo=dt.UTC), "champions"),
                    ("rep-2", dt.datetime(2026, 9, 1, tzinfo=dt.UTC), "at-risk"),
                    ("rep-3", dt.datetime(2026, 9, 1, tzinfo=dt.UTC), "at-risk"),
                    ("rep-3", dt.datetime(2026, 10, 20, tzinfo=dt.UTC), "loyal"),  # the latest counts at close
                )
            ],
        )
    closed = close_periods(runtime, now=dt.datetime(2026, 11, 3, tzinfo=dt.UTC), program_keys=["acme-sales"])
    cup = [c for c in closed if c.challenge == "comeback-cup"]
    assert [(c.period, c.paid) for c in cup] == [("2026-10", 1)]
    e = t.ledger_entries.c
    with runtime.db.read() as connection:
        prizes = connection.execute(
            select(p.external_id, e.amount)
            .join(t.participants, p.id == e.participant_id)
            .where(e.kind == "prize", e.explain.like("comeback-cup%"))
        ).all()
    assert [tuple(r) for r in prizes] == [("rep-2", 300)]
