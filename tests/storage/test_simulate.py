"""Simulation: the document in force scored over every stored event gives what live scoring stored;
a draft that doubles the awards doubles them; nothing is written. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import gc
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from levelup.challenges.closing import close_periods
from levelup.demo import sales
from levelup.errors import Invalid
from levelup.events.ingest import ingest
from levelup.insights import simulate as sim
from levelup.insights.fairness import fairness
from levelup.insights.segments import rfm, segment_of
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.document import ProgramDocument
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import SHARED_DATA, fresh_database
from tests.storage.test_real_data import TRUTH, play_pipeline, quarter_of

PROGRAM = "acme-sales"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)  # every event, and every period the closing job settled
REPS = (("ann", "east"), ("bob", "east"), ("cat", "west"), ("dan", "west"))


def won(event_id: str, rep: str, amount: int, day: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "deal.won",
        "participant": rep,
        "occurred_at": f"{day}T15:00:00Z",
        "data": {"amount": amount},
    }


def call(event_id: str, rep: str, day: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "activity.logged",
        "participant": rep,
        "occurred_at": f"{day}T14:00:00Z",
        "data": {"kind": "call", "duration_s": 90},
    }


def reopened(event_id: str, reverses: str, rep: str, day: str, portion: float | None = None) -> dict[str, Any]:
    body = {
        "id": event_id,
        "type": "deal.reopened",
        "participant": rep,
        "occurred_at": f"{day}T16:00:00Z",
        "reverses": reverses,
    }
    return body | ({"portion": portion} if portion is not None else {})


def history() -> list[dict[str, Any]]:
    """Six weeks of deals and calls (five-a-week completions, hot weeks, top-closer Bronze, the October blitz,
    a team quarter for east), with a full and a partial reversal a few events after their deal."""
    events: list[dict[str, Any]] = []
    day0 = dt.date(2026, 9, 28)
    for i in range(42):
        day = (day0 + dt.timedelta(days=i)).isoformat()
        for n, (rep, _) in enumerate(REPS):
            if (i + n) % 3:
                events.append(won(f"w{i}-{rep}", rep, 20_000 + 7_000 * n + 1_000 * (i % 5) * 100, day))
            events.append(call(f"c{i}-{rep}", rep, day))
        if i == 10:
            events.append(reopened("r-full", "w2-ann", "ann", day))
        if i == 20:
            events.append(reopened("r-part", "w12-cat", "cat", day, portion=0.5))
    return events


@pytest.fixture
def played(runtime: Runtime, acme_text: str) -> Runtime:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(acme_text), actor="test")
        for rep, team in REPS:
            participants.set_profile(
                connection, record.id, rep, name=rep.title(), teams=[team], attributes={"quota": 100_000}
            )
    events = history()
    for start in range(0, len(events), 50):
        assert {o.status for o in ingest(runtime, PROGRAM, events[start : start + 50])} == {"accepted"}
    assert close_periods(runtime, now=END)  # the blitz and east's quarters are paid
    return runtime


def stored(runtime: Runtime) -> tuple[dict[str, dict[str, int]], Counter[tuple[str, str]], Counter[str]]:
    """Balances (net), badge grants held and completions, as live scoring and the closing job stored them."""
    with runtime.db.read() as connection:
        p = t.participants.c
        balances: dict[str, dict[str, int]] = {}
        for rep, currency, net in connection.execute(
            select(p.external_id, t.positions.c.currency, t.positions.c.available - t.positions.c.arrears).join(
                t.participants, p.id == t.positions.c.participant_id
            )
        ):
            if net:
                balances.setdefault(rep, {})[currency] = int(net)
        b = t.badge_grants.c
        badges = Counter(
            (badge, grade)
            for badge, grade in connection.execute(select(b.badge, b.grade).where(b.revoked_by.is_(None)))
        )
        done = Counter(connection.execute(select(t.challenge_completions.c.challenge)).scalars())
    return balances, badges, done


def doc(runtime: Runtime) -> ProgramDocument:
    with runtime.db.read() as connection:
        return ProgramDocument.model_validate(programs.document_of(connection, programs.find(connection, PROGRAM)))


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.read() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in t.metadata.sorted_tables
        }


def test_workers_read_the_log_as_the_parent_saw_it(played: Runtime) -> None:
    """A worker reads the log itself, in the parent's snapshot (PostgreSQL: exported; SQLite: up to the last
    event the parent saw): an event stored meanwhile is not in it."""
    with played.db.read() as connection:
        program_id = programs.find(connection, PROGRAM).id
        log = sim._log(connection, program_id, START, END)
        assert log is not None and log.upto > 0
        expected = [r.event_id for r in sim.stored_events(connection, program_id, start=START, end=END)]
        late = call("late-call", REPS[0][0], "2026-10-20")
        assert [o.status for o in ingest(played, PROGRAM, [late])] == ["accepted"]  # committed meanwhile
        assert [r.event_id for r in sim._read(log)] == expected
    assert "late-call" not in expected


@pytest.mark.parametrize("parallel", [False, True])
def test_a_reversal_stored_during_a_run_is_in_none_of_its_reads(
    played: Runtime, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    """A reversal of a deal of the window committed after the run read which events are reversed, before it
    reads the log: the run shows the state before it, never half of it (the deal kept, its reversal
    'skipped'). PostgreSQL reads in REPEATABLE READ for this; SQLite's read transaction is one snapshot."""
    monkeypatch.setattr(sim, "CHUNK", 3)  # the deal and its reversal in different chunks
    before = sim.run(played, PROGRAM, doc(played), START, END, parallel=parallel)
    members = sim._team_members

    def then_a_reversal(connection: Any, program_id: int) -> Any:  # after _reversed_in, before the log
        found = members(connection, program_id)
        late = reopened("r-late", "w30-bob", "bob", "2026-10-29")
        assert [o.status for o in ingest(played, PROGRAM, [late])] == ["accepted"]
        return found

    monkeypatch.setattr(sim, "_team_members", then_a_reversal)
    during = sim.run(played, PROGRAM, doc(played), START, END, parallel=parallel)
    assert during["current"]["skipped"] == 0
    assert during["window"] == before["window"]
    assert during["current"]["participants"] == before["current"]["participants"]


def test_a_period_begun_before_the_window_is_listed_not_settled(played: Runtime) -> None:
    """Settled from the window's share of it, the October blitz would go to others than the server paid."""
    late = sim.run(played, PROGRAM, doc(played), dt.datetime(2026, 10, 20, 4, tzinfo=dt.UTC), END)
    assert not [p for p in late["current"]["prizes"] if p["challenge"] == "october-blitz"]
    assert {"challenge": "october-blitz", "period": "20261001-20261031"} in late["current"]["unsettled"]
    whole = sim.run(played, PROGRAM, doc(played), START, END)
    assert [p["rank"] for p in whole["current"]["prizes"] if p["challenge"] == "october-blitz"] == [1, 2, 3]
    assert not [u for u in whole["current"]["unsettled"] if u["challenge"] == "october-blitz"]


def test_collections_are_fewer_while_scoring_and_as_before_after() -> None:
    """Nested (or concurrent) simulations share the pace; the last one out restores what it found."""
    found = gc.get_threshold()
    with sim.fewer_collections():
        assert gc.get_threshold()[0] == sim.GC_PACE
        with sim.fewer_collections():
            assert gc.get_threshold()[0] == sim.GC_PACE
        assert gc.get_threshold()[0] == sim.GC_PACE  # the outer one still scoring
    assert gc.get_threshold() == found
    with pytest.raises(RuntimeError), sim.fewer_collections():
        raise RuntimeError("a failed simulation")
    assert gc.get_threshold() == found


def test_an_in_memory_database_is_simulated_in_one_process(acme_text: str) -> None:
    runtime = Runtime.from_url("sqlite://")
    try:
        with runtime.db.write() as connection:
            programs.apply(connection, load_document(acme_text), actor="test")
        ingest(runtime, PROGRAM, [call("c-1", "ann", "2026-10-02")])
        with runtime.db.read() as connection:
            assert sim._log(connection, programs.find(connection, PROGRAM).id, START, END) is None
        report = sim.run(runtime, PROGRAM, doc(runtime), START, END, parallel=True)
        assert report["window"]["events"] == 1 and report["current"]["totals"]["xp"] == 5
    finally:
        runtime.db.dispose()


@pytest.mark.parametrize(
    ("chunk", "parallel"),
    [(sim.CHUNK, False), (3, False), (7, True)],  # a new world every 3 events (reversals across); two workers
)
def test_the_document_in_force_gives_what_is_stored(
    played: Runtime, monkeypatch: pytest.MonkeyPatch, chunk: int, parallel: bool
) -> None:
    monkeypatch.setattr(sim, "CHUNK", chunk)  # the parent hands its CHUNK to the workers it spawns
    balances, badges, done = stored(played)
    before = counts(played)
    report = sim.run(played, PROGRAM, doc(played), START, END, parallel=parallel)
    assert counts(played) == before  # nothing written
    for side in ("current", "draft"):
        r = report[side]
        assert r["participants"] == balances
        assert r["skipped"] == 0 and r["events"] == report["window"]["events"] == before["events"]
        assert {(x["badge"], x["grade"]): x["grants"] for x in r["badges"] if x["grants"]} == dict(badges)
        engine_done = {x["challenge"]: x["completions"] for x in r["challenges"]}
        assert all(engine_done[k] == n for k, n in done.items())
        assert r["totals"] == {c: sum(b.get(c, 0) for b in balances.values()) for c in ("xp", "coins")}
    assert report["changes"] == []
    prizes = [p for p in report["current"]["prizes"] if p["challenge"] == "october-blitz"]
    assert [p["rank"] for p in prizes] == [1, 2, 3]
    assert badges[("hot-week", "Hot")] > 0 and done["five-a-week"] > 0


def test_a_draft_doubling_the_awards_doubles_the_totals(played: Runtime) -> None:
    body = doc(played).model_dump(mode="json", by_alias=True, exclude_none=True)
    for rule in body["rules"]:
        rule["award"] = {c: f"2 * ({a})" if c == "xp" else a for c, a in rule["award"].items()}
    draft = ProgramDocument.model_validate(body)
    report = sim.run(played, PROGRAM, draft, START, END)
    now, then = report["current"], report["draft"]
    assert then["totals"]["xp"] == 2 * now["totals"]["xp"] > 0
    assert then["totals"]["coins"] == now["totals"]["coins"]  # the same deals complete the same challenges
    for rep, balance in now["participants"].items():
        assert then["participants"][rep]["xp"] == 2 * balance["xp"]
    texts = [c["text"] for c in report["changes"]]
    assert f"XP in all: {now['totals']['xp']:,} → {then['totals']['xp']:,} (+{now['totals']['xp']:,})" in texts
    ann = now["participants"]["ann"]["xp"]
    assert f"Ann: +{ann:,} XP" in texts


def test_workers_sharing_the_participants_give_the_one_process_report(
    played: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three workers, each scoring a third of the participants by both documents (small chunks: reversals in
    other worlds), give the very report of one process: prizes, team goals, boards, changes."""
    monkeypatch.setattr(sim, "CHUNK", 7)
    monkeypatch.setattr(sim, "workers", lambda: 3)
    body = doc(played).model_dump(mode="json", by_alias=True, exclude_none=True)
    for rule in body["rules"]:
        rule["award"] = {c: f"3 * ({a})" if c == "xp" else a for c, a in rule["award"].items()}
    draft = ProgramDocument.model_validate(body)
    told: list[int] = []
    apart = sim.run(played, PROGRAM, draft, START, END, told.append, parallel=True)
    together = sim.run(played, PROGRAM, draft, START, END)
    assert apart == together and apart["changes"]
    assert sum(told) == apart["window"]["events"] > 0  # each worker tells its own share's progress
    assert [p["winner"] for p in apart["current"]["prizes"] if p["challenge"] == "east-quarter"] == ["east"]


def test_the_shares_of_the_log_are_its_participants_events_in_order(played: Runtime) -> None:
    with played.db.read() as connection:
        program_id = programs.find(connection, PROGRAM).id
        whole = [r.seq for r in sim.stored_events(connection, program_id)]
        shares = [list(sim.stored_events(connection, program_id, share=(k, 3))) for k in range(3)]
    assert sorted(r.seq for share in shares for r in share) == whole  # every event once
    assert all([r.seq for r in share] == sorted(r.seq for r in share) for share in shares)
    owner = {r.external_id: k for k, share in enumerate(shares) for r in share}
    assert all(owner[r.external_id] == k for k, share in enumerate(shares) for r in share)
    assert len(set(owner.values())) > 1


def test_a_teams_value_does_not_depend_on_how_workers_shared_its_members(acme_text: str) -> None:
    """Float sums depend on their order (here 0 one way, 0.6000000000000001 another): a team's value is its
    members' parts summed exactly, so the workers' shares, and the order they are merged in, change nothing."""
    parts = {"ann": 0.1, "bob": 0.2, "cat": 0.3, "dan": 1e16, "eve": -1e16}
    orders = [list(parts), list(reversed(parts)), ["dan", "ann", "eve", "bob", "cat"]]
    assert len({sum(parts[who] for who in order) for order in orders}) > 1
    program, key = CompiledProgram(load_document(acme_text), 1), ("revenue", "2026-10")
    values = set()
    for order in orders:
        scenario = sim.Scenario(program, END)
        for who in order:
            scenario.merge(sim.Part({}, {}, {key: {"east": {who: parts[who]}}}, {}, {}, 0, 0, None))
        values.add(scenario.team[key]["east"])
    assert values == {0.6}


def test_the_changes_say_in_words_what_a_draft_does_to_badges_challenges_liability_and_boards(
    played: Runtime,
) -> None:
    """Top Closer Bronze at 500 deals (nobody), five-a-week at 50 (nobody), and a deal paying 1 XP above 40,000
    (the biggest closers fall back): each change is said with the figures of the two reports."""
    body = doc(played).model_dump(mode="json", by_alias=True, exclude_none=True)
    top = next(b for b in body["badges"] if b["key"] == "top-closer")
    top["grades"][0]["when"][0]["at_least"] = 500
    top["grades"][1]["when"][0]["at_least"] = 5000
    next(c for c in body["challenges"] if c["key"] == "five-a-week")["target"] = 50
    deal = next(r for r in body["rules"] if r["key"] == "deal-won")
    deal["award"]["xp"] = "data.amount > 40000 ? 1 : 100 + data.amount / 100"
    report = sim.run(played, PROGRAM, ProgramDocument.model_validate(body), START, END)
    now, then = report["current"], report["draft"]
    said = {(c["kind"], c["key"]): c for c in report["changes"]}
    bronze = next(x["holders"] for x in now["badges"] if (x["badge"], x["grade"]) == ("top-closer", "Bronze"))
    assert bronze > 0 and said[("badge", "top-closer:Bronze")]["text"] == f"top-closer Bronze: {bronze} → 0 holders"
    five = next(x["completions"] for x in now["challenges"] if x["challenge"] == "five-a-week")
    assert five > 0 and said[("challenge", "five-a-week")]["text"] == f"five-a-week: {five} → 0 completions"
    coins = (now["liability"]["coins"]["outstanding"], then["liability"]["coins"]["outstanding"])
    assert coins[1] < coins[0]  # no five-a-week rewards
    assert said[("liability", "coins")]["text"] == f"Coins outstanding: {coins[0]:,} → {coins[1]:,}"
    leaders = [
        (b["key"], b["entries"][0]["id"], c["entries"][0]["id"])
        for b, c in zip(now["leaderboards"], then["leaderboards"], strict=True)
        if b["entries"] and c["entries"] and b["entries"][0]["id"] != c["entries"][0]["id"]
    ]
    assert [key for key, _, _ in leaders] == ["xp-all"]  # the biggest closers lead on XP no more
    for key, before, after in leaders:
        assert said[("leaderboard", key)]["text"] == f"{key}: first {before} → {after}"
    assert ("leaderboard", "revenue-month") not in said  # revenue is not XP: the same first


def test_a_window_scores_its_events_only_and_closes_the_periods_ending_in_it(played: Runtime) -> None:
    october = (dt.datetime(2026, 10, 1, 4, tzinfo=dt.UTC), dt.datetime(2026, 11, 1, 4, tzinfo=dt.UTC))
    report = sim.run(played, PROGRAM, doc(played), *october)
    with played.db.read() as connection:
        e = t.events.c
        inside = connection.execute(
            select(func.count()).where(e.occurred_at >= october[0], e.occurred_at < october[1])
        ).scalar_one()
    assert report["window"]["events"] == inside
    blitz = [p for p in report["current"]["prizes"] if p["challenge"] == "october-blitz"]
    assert [p["rank"] for p in blitz] == [1, 2, 3]  # ends with the window: closed
    board = next(b for b in report["current"]["leaderboards"] if b["key"] == "revenue-month")
    assert board["period"] == "2026-10" and len(board["entries"]) == 4
    with pytest.raises(Invalid):
        sim.run(played, PROGRAM, doc(played), october[1], october[0])


# --------------------------------------------------------------------------- the real Maven CRM pipeline (the demo)
#
# acme-sales loaded as `levelup demo` loads it, the closing job run: the simulation of the document in force over all
# time gives every stored balance and badge; a draft paying a flat 100 XP a deal gives what the CSV says it should;
# the Gini of revenue per rep in a quarter is the one computed here from the CSV, by another formula.

REAL = SHARED_DATA / "maven-crm-sales-opportunities"
ALL_TIME = (dt.datetime(2016, 1, 1, tzinfo=dt.UTC), dt.datetime(2019, 1, 1, tzinfo=dt.UTC))
needs_the_data = pytest.mark.skipif(not (REAL / "sales_pipeline.csv").is_file(), reason=f"no Maven data at {REAL}")


@pytest.fixture(scope="module", params=["sqlite"])  # 13,000 events: once; the small cases above run on both
def pipeline(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    if not (REAL / "sales_pipeline.csv").is_file():
        pytest.skip(f"no Maven data at {REAL}")
    for url in fresh_database(request.param, tmp_path_factory.mktemp("pipeline")):
        runtime = Runtime.from_url(url)
        try:
            play_pipeline(runtime, closed_at=ALL_TIME[1])
            yield runtime
        finally:
            runtime.db.dispose()


@needs_the_data
def test_the_real_pipeline_simulated_gives_the_stored_balances_and_the_csv(pipeline: Runtime) -> None:
    balances, badges, _ = stored(pipeline)
    body = doc(pipeline).model_dump(mode="json", by_alias=True, exclude_none=True)
    deal_won = next(r for r in body["rules"] if r["key"] == "deal-won")
    deal_won["award"]["xp"] = 100
    report = sim.run(pipeline, PROGRAM, ProgramDocument.model_validate(body), *ALL_TIME)
    assert sim.run(pipeline, PROGRAM, ProgramDocument.model_validate(body), *ALL_TIME, parallel=True) == report
    now, then = report["current"], report["draft"]
    assert now["participants"] == balances
    assert {(x["badge"], x["grade"]): x["grants"] for x in now["badges"] if x["grants"]} == dict(badges)
    assert report["window"]["events"] == TRUTH.events and now["skipped"] == 0
    east = [p for p in now["prizes"] if p["challenge"] == "east-quarter"]
    assert east and all(p["winner"] == "east" for p in east)  # quarters of a million, paid to east's members
    for agent in TRUTH.office:
        calls_xp = TRUTH.xp(agent) - sum(int(100 + amount / 100) for _, _, amount in TRUTH.won[agent])
        assert then["participants"].get(agent, {}).get("xp", 0) == calls_xp + 100 * len(TRUTH.won[agent]), agent
    total = next(c for c in report["changes"] if c["kind"] == "total")
    assert (total["key"], total["before"], total["after"]) == ("xp", now["totals"]["xp"], then["totals"]["xp"])


def mean_difference_gini(values: list[float]) -> float:
    """Gini as half the relative mean absolute difference (another formula than the one under test)."""
    n, mean = len(values), sum(values) / len(values)
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * mean)


@needs_the_data
@pytest.mark.parametrize("quarter", ["2017-Q2", "2017-Q4"])
def test_the_gini_of_revenue_per_rep_in_a_quarter_is_the_csvs(pipeline: Runtime, quarter: str) -> None:
    active = {a for a, days in TRUTH.calls.items() if any(quarter_of(d) == quarter for d in days)}
    with (REAL / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        closed = [r for r in csv.DictReader(f) if r["deal_stage"] in ("Won", "Lost") and r["close_date"]]
    active |= {
        sales.slug(r["sales_agent"]) for r in closed if quarter_of(dt.date.fromisoformat(r["close_date"])) == quarter
    }
    revenue = {a: sum(v for d, _, v in TRUTH.won[a] if quarter_of(d) == quarter) for a in active}
    with pipeline.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        body = fairness(
            connection, record, pipeline.programs.compiled(connection, record), metric="revenue", period=quarter
        )
    assert body["participants"] == len(active)
    assert body["gini"] == round(mean_difference_gini(list(revenue.values())), 4)
    top = sorted(revenue.values(), reverse=True)[: -(-len(active) // 10)]
    assert body["top10_share"] == round(sum(top) / sum(revenue.values()), 4)


@needs_the_data
def test_rfm_segments_of_the_reps_are_the_csvs(pipeline: Runtime) -> None:
    """Recency, frequency and revenue of each rep's won deals from the CSV, scored by quintile here."""
    as_of = dt.datetime(2018, 1, 1, tzinfo=dt.UTC)
    won = {a: deals for a, deals in TRUTH.won.items() if deals}
    recency = {
        a: (as_of - dt.datetime.combine(max(d for d, _, _ in deals), dt.time(16), sales.TIMEZONE))
        for a, deals in won.items()
    }
    values = {
        "r": {a: -r.total_seconds() for a, r in recency.items()},
        "f": {a: float(len(deals)) for a, deals in won.items()},
        "m": {a: float(sum(v for _, _, v in deals)) for a, deals in won.items()},
    }
    score = {
        k: {a: 1 + 5 * sum(1 for w in vs.values() if w < v) // len(vs) for a, v in vs.items()}
        for k, vs in values.items()
    }
    expected = Counter(segment_of(score["r"][a], score["f"][a], score["m"][a]) for a in won)
    with pipeline.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        body = rfm(connection, record, pipeline.programs.compiled(connection, record), as_of=as_of, segment="At risk")
    assert body["participants"] == len(won) == 30
    assert {s["name"]: s["participants"] for s in body["segments"] if s["participants"]} == dict(expected)
    at_risk = {a for a in won if segment_of(score["r"][a], score["f"][a], score["m"][a]) == "At risk"}
    assert len(expected) >= 4 and len(at_risk) >= 5  # the data: five segments, eight reps at risk
    assert {m["id"] for m in body["members"]} == at_risk
