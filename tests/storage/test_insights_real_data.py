"""Engagement, churn risk, personal targets and the fairness measures on the real Maven CRM pipeline, against
plain Python over the CSV.

The pipeline is loaded once, as ``levelup demo`` loads it (each agent in the team of their regional office; a
call at 10:00 New York on each engagement, a won or lost deal at 16:00 on its close date), and the closing job
run. Every expectation is recomputed here from the CSV files with the csv module and the acme-sales rules
(examples/acme-sales.yaml: 5 XP a call, at most 20 a day; a won deal 100 + amount / 100 XP and amount / 1000
coins; 100 coins for five won deals in an ISO week), by the definitions of docs/insights.md §3–6, not by the
code under test: the ledger's awards are derived from the rules, not read.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from levelup.demo import sales
from levelup.insights.engagement import engagement
from levelup.insights.fairness import fairness
from levelup.insights.segments import churn
from levelup.insights.targets import targets
from levelup.programs import service as programs
from levelup.runtime import Runtime
from tests.conftest import SHARED_DATA, fresh_database
from tests.storage.test_real_data import play_pipeline

FOLDER = SHARED_DATA / "maven-crm-sales-opportunities"
PROGRAM = "acme-sales"
NY = sales.TIMEZONE
UTC = dt.UTC
CALL_CAP, CALL_XP = 20, 5
FIVE_A_WEEK, FIVE_A_WEEK_COINS = 5, 100
HOT_WEEK, BRONZE, GOLD = 3, 5, 50

pytestmark = pytest.mark.skipif(
    not (FOLDER / "sales_pipeline.csv").is_file() or not (FOLDER / "sales_teams.csv").is_file(),
    reason=f"the Maven CRM data set is not at {FOLDER}",
)


# --------------------------------------------------------------------------- the CSV, as events and awards


@dataclass(frozen=True)
class Happening:
    """One event or one ledger award, as the CSV and the rules say it happens (instants in UTC)."""

    agent: str
    at: dt.datetime
    day: dt.date  # the local (New York) date
    currency: str = ""
    amount: int = 0


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), NY).astimezone(UTC)


def iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def grain_key(day: dt.date, grain: str) -> str:
    return iso_week(day) if grain == "week" else f"{day.year}-{day.month:02d}"


@dataclass
class Csv:
    office: dict[str, str]  # agent → team
    events: list[Happening]
    awards: list[Happening]  # every positive ledger award the rules give (kinds rule and challenge)
    won: dict[str, list[tuple[dt.date, str, int]]]  # agent → (close date, opportunity, amount), in sending order


def read_csv() -> Csv:
    office: dict[str, str] = {}
    with (FOLDER / "sales_teams.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            office[row["sales_agent"].strip().lower().replace(" ", "-")] = row["regional_office"].strip().lower()
    events: list[Happening] = []
    calls: Counter[tuple[str, dt.date]] = Counter()
    won: dict[str, list[tuple[dt.date, str, int]]] = defaultdict(list)
    with (FOLDER / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            agent = row["sales_agent"].strip().lower().replace(" ", "-")
            if row["engage_date"]:
                day = dt.date.fromisoformat(row["engage_date"])
                events.append(Happening(agent, at(day, 10), day))
                calls[(agent, day)] += 1
            if row["deal_stage"] in ("Won", "Lost") and row["close_date"]:
                day = dt.date.fromisoformat(row["close_date"])
                events.append(Happening(agent, at(day, 16), day))
                if row["deal_stage"] == "Won":
                    won[agent].append((day, row["opportunity_id"], int(row["close_value"] or 0)))
    awards: list[Happening] = []
    for (agent, day), n in calls.items():
        awards += [Happening(agent, at(day, 10), day, "xp", CALL_XP)] * min(n, CALL_CAP)
    for agent, deals in won.items():
        deals.sort(key=lambda d: (d[0], f"{d[1]}-won"))  # the order the demo sends them in
        for day, _, amount in deals:
            awards.append(Happening(agent, at(day, 16), day, "xp", 100 + amount // 100))
            if amount // 1000:
                awards.append(Happening(agent, at(day, 16), day, "coins", amount // 1000))
        for day in fifth_deals(deals):  # five-a-week: paid on the fifth won deal of a week
            awards.append(Happening(agent, at(day, 16), day, "coins", FIVE_A_WEEK_COINS))
    return Csv(office, events, awards, dict(won))


def fifth_deals(deals: list[tuple[dt.date, str, int]]) -> list[dt.date]:
    """The date of each ISO week's fifth won deal."""
    by_week: dict[str, list[dt.date]] = defaultdict(list)
    for day, _, _ in deals:
        by_week[iso_week(day)].append(day)
    return [days[FIVE_A_WEEK - 1] for days in by_week.values() if len(days) >= FIVE_A_WEEK]


DATA = read_csv() if (FOLDER / "sales_pipeline.csv").is_file() and (FOLDER / "sales_teams.csv").is_file() else None


@pytest.fixture(scope="module")
def data() -> Csv:
    assert DATA is not None
    return DATA


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """acme-sales with the whole pipeline ingested and the closing job run, on SQLite, once for the module."""
    for url in fresh_database("sqlite", tmp_path_factory.mktemp("insights-real")):
        runtime = Runtime.from_url(url)
        try:
            play_pipeline(runtime, closed_at=dt.datetime(2019, 1, 1, tzinfo=UTC))
            yield runtime
        finally:
            runtime.db.dispose()


def test_the_csv_is_what_these_tests_expect(data: Csv) -> None:
    assert len(data.office) == 35 and set(data.office.values()) == {"central", "east", "west"}
    assert sum(len(d) for d in data.won.values()) == 4238
    assert min(e.day for e in data.events) == dt.date(2016, 10, 20)
    assert max(e.day for e in data.events) == dt.date(2017, 12, 31)


# --------------------------------------------------------------------------- §3 engagement


@pytest.mark.parametrize(
    ("start", "end", "grain"),
    [
        (dt.date(2016, 1, 1), dt.date(2018, 6, 1), "week"),  # all time: everyone is a newcomer
        (dt.date(2017, 3, 1), dt.date(2017, 9, 1), "month"),  # a window inside the data
    ],
)
def test_engagement_is_the_csvs(pipeline: Runtime, data: Csv, start: dt.date, end: dt.date, grain: str) -> None:
    lo, hi = at(start, 0), at(end, 0)
    active: dict[str, set[str]] = defaultdict(set)
    counted: Counter[str] = Counter()
    weekly: dict[str, set[str]] = defaultdict(set)
    for e in data.events:
        if lo <= e.at < hi:
            active[grain_key(e.day, grain)].add(e.agent)
            counted[grain_key(e.day, grain)] += 1
            weekly[iso_week(e.day)].add(e.agent)
    paid: dict[str, set[str]] = defaultdict(set)
    awards: Counter[str] = Counter()
    for a in data.awards:
        if lo <= a.at < hi:
            paid[grain_key(a.day, grain)].add(a.agent)
            awards[grain_key(a.day, grain)] += 1
    expected_periods = [
        {
            "period": p,
            "active": len(active[p]),
            "events": counted[p],
            "awards": awards[p],
            "awards_per_active": pytest.approx(awards[p] / len(active[p]), abs=5e-5),
            "earned_nothing": pytest.approx(sum(1 for a in active[p] if a not in paid[p]) / len(active[p]), abs=5e-5),
        }
        for p in sorted(active)
    ]
    everyone = set.union(*active.values())
    rewarded = set.union(*paid.values())

    first_event: dict[str, dt.datetime] = {}
    for e in data.events:
        first_event[e.agent] = min(first_event.get(e.agent, e.at), e.at)
    first_award: dict[str, dt.datetime] = {}
    for award in data.awards:
        first_award[award.agent] = min(first_award.get(award.agent, award.at), award.at)
    newcomers = {a for a, when in first_event.items() if lo <= when < hi}
    waits = [(first_award[a] - first_event[a]) / dt.timedelta(days=1) for a in newcomers if a in first_award]

    cohorts: dict[dt.date, set[str]] = defaultdict(set)  # the Monday of each newcomer's first week
    for agent in newcomers:
        day = first_event[agent].astimezone(NY).date()
        cohorts[day - dt.timedelta(days=day.weekday())].add(agent)
    last_week = max(weekly)
    retention = []
    for monday, members in sorted(cohorts.items()):
        shares = []
        for k in range(13):  # the cohort's week and the twelve after it, up to the window's last active week
            week = iso_week(monday + dt.timedelta(days=7 * k))
            if week > last_week:
                break
            shares.append(pytest.approx(len(members & weekly.get(week, set())) / len(members), abs=5e-5))
        retention.append({"cohort": iso_week(monday), "participants": len(members), "active_share": shares})

    completers = {agent for agent, deals in data.won.items() for day in fifth_deals(deals) if lo <= at(day, 16) < hi}

    with pipeline.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        body = engagement(connection, record, pipeline.programs.compiled(connection, record), lo, hi, grain)
    assert body["active"] == len(everyone)
    assert body["earned_nothing"] == pytest.approx(len(everyone - rewarded) / len(everyone), abs=5e-5)
    assert body["periods"] == expected_periods
    assert sum(p["events"] for p in body["periods"]) == sum(1 for e in data.events if lo <= e.at < hi)
    assert body["first_award"]["newcomers"] == len(newcomers)
    assert body["first_award"]["awarded"] == len(waits)
    if waits:
        assert body["first_award"]["median_days"] == pytest.approx(statistics.median(waits), abs=5e-3)
    else:
        assert body["first_award"]["median_days"] is None
    assert body["retention"] == retention
    five = next(c for c in body["challenges"] if c["challenge"] == "five-a-week")
    assert five["completed_by"] == len(completers)
    assert five["rate"] == pytest.approx(len(completers) / len(everyone), abs=5e-5)
    if start.year == 2016:  # the whole data: 30 agents played, every one was paid, in several weekly cohorts
        assert (len(everyone), len(newcomers), len(waits)) == (30, 30, 30) and len(retention) > 1
        assert len(body["periods"]) > 50 and completers
        assert any(p["earned_nothing"] for p in body["periods"])  # a week of lost deals only pays nothing


# --------------------------------------------------------------------------- §5 churn risk


@pytest.mark.parametrize("as_of", [dt.datetime(2017, 7, 1, tzinfo=UTC), dt.datetime(2018, 1, 15, tzinfo=UTC)])
def test_churn_risk_is_the_csvs(pipeline: Runtime, data: Csv, as_of: dt.datetime) -> None:
    """Days since the last event over the usual gap (the mean of the gaps between consecutive events, here
    summed gap by gap); one event only: the median of everyone else's usual gap."""
    times: dict[str, list[dt.datetime]] = defaultdict(list)
    for e in data.events:
        if e.at < as_of:
            times[e.agent].append(e.at)
    gaps: dict[str, float] = {}
    for agent, seen in times.items():
        seen.sort()
        if len(seen) > 1:
            total = sum((b - a for a, b in itertools.pairwise(seen)), dt.timedelta())
            gaps[agent] = total / dt.timedelta(days=1) / (len(seen) - 1)
    expected = []
    for agent, seen in times.items():
        usual = gaps[agent] if agent in gaps else statistics.median(v for a, v in gaps.items() if a != agent)
        usual = max(usual, 1 / 24)
        days = (as_of - seen[-1]) / dt.timedelta(days=1)
        risk = 1 - math.exp(-days / usual)
        expected.append((round(risk, 4), agent, days, usual, len(seen)))
    expected.sort(key=lambda r: (-r[0], r[1]))

    with pipeline.db.read() as connection:
        body = churn(connection, programs.find(connection, PROGRAM), as_of=as_of, limit=1000)
    assert body["total"] == len(times) == 30
    got = body["participants"]
    assert [r["id"] for r in got] == [r[1] for r in expected]
    for row, (risk, agent, days, usual, n) in zip(got, expected, strict=True):
        assert row["events"] == n, agent
        assert row["risk"] == pytest.approx(risk, abs=1e-4), agent
        assert row["days_since_last"] == pytest.approx(days, abs=5.1e-3), agent
        assert row["usual_gap_days"] == pytest.approx(usual, abs=5.1e-3), agent
    if as_of.year == 2017:
        assert len({r[0] for r in expected}) > 10  # mid-data the risks differ from rep to rep
    else:
        assert min(r[0] for r in expected) > 0.99  # two weeks after the data ends: everyone has gone quiet


# --------------------------------------------------------------------------- §6 personal targets


@pytest.mark.parametrize(
    ("as_of", "periods", "factor"),
    [
        (dt.datetime(2017, 6, 14, 12, tzinfo=UTC), 8, 1.1),  # the defaults, mid-data
        (dt.datetime(2016, 11, 16, 12, tzinfo=UTC), 8, 1.1),  # four weeks of data: team medians and the challenge's
        (dt.datetime(2017, 12, 20, 12, tzinfo=UTC), 3, 1.5),
    ],
)
def test_personal_targets_are_the_csvs(
    pipeline: Runtime, data: Csv, as_of: dt.datetime, periods: int, factor: float
) -> None:
    """five-a-week (deals won per ISO week, target 5): the median of the last ``periods`` complete weeks (a week
    without a won deal counts 0) × factor, between 5/4 and 10, rounded up; fewer than three weeks with a won deal:
    the team's median of its members' medians × factor; no team history: the challenge's 5."""
    today = as_of.astimezone(NY).date()
    this_monday = today - dt.timedelta(days=today.weekday())
    mondays = [this_monday - dt.timedelta(weeks=k) for k in range(periods, 0, -1)]
    weeks = [iso_week(m) for m in mondays]
    counts = {
        agent: Counter(iso_week(day) for day, _, _ in data.won.get(agent, []) if iso_week(day) in weeks)
        for agent in data.office
    }
    own = {
        agent: statistics.median([c[w] for w in weeks]) for agent, c in counts.items() if len(c) >= 3
    }  # counts per week, the weeks without a deal as zeros
    team: dict[str, float] = {}
    for office in set(data.office.values()):
        medians = [m for a, m in own.items() if data.office[a] == office]
        if medians:
            team[office] = statistics.median(medians)

    def target(mid: float | None) -> int:
        if mid is None:
            return 5
        return math.ceil(round(min(10.0, max(1.25, mid * factor)), 9))

    expected = {}
    for agent, office in data.office.items():
        if agent in own:
            expected[agent] = (len(counts[agent]), "own", target(own[agent]))
        elif office in team:
            expected[agent] = (len(counts[agent]), "team", target(team[office]))
        else:
            expected[agent] = (len(counts[agent]), "challenge", 5)

    with pipeline.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        body = targets(
            connection,
            record,
            pipeline.programs.compiled(connection, record),
            challenge="five-a-week",
            as_of=as_of,
            periods=periods,
            factor=factor,
            limit=1000,
        )
    assert body["periods"] == weeks
    assert (body["target"], body["floor"], body["cap"]) == (5, 1.25, 10)
    got = {r["id"]: (r["history"], r["source"], r["target"]) for r in body["participants"]}
    assert got == expected
    assert [r["id"] for r in body["participants"]] == sorted(expected, key=lambda a: (expected[a][2], a))
    sources = Counter(s for _, s, _ in expected.values())
    if as_of.year == 2016:
        assert sources["own"] == 0 and sources["challenge"] == 35  # nobody has three weeks with a won deal yet
    else:
        assert sources["own"] > 20 and sources["team"] >= 5  # the five who never won, at least: their team's median
        assert sources["challenge"] == 0


# --------------------------------------------------------------------------- §4 fairness: the other measures


def period_days(period: str) -> tuple[dt.date, dt.date]:
    """[first, last] local dates of a month (2017-06) or a quarter (2017-Q4)."""
    year = int(period[:4])
    first_month = 3 * (int(period[-1]) - 1) + 1 if "Q" in period else int(period[5:])
    months = 3 if "Q" in period else 1
    first = dt.date(year, first_month, 1)
    after = dt.date(year + (first_month + months - 1) // 12, (first_month + months - 1) % 12 + 1, 1)
    return first, after - dt.timedelta(days=1)


def earlier(period: str, n: int) -> list[str]:
    """``period`` and the n - 1 before it, oldest first."""
    found = [period]
    while len(found) < n:
        day = period_days(found[-1])[0] - dt.timedelta(days=1)
        found.append(f"{day.year}-Q{(day.month - 1) // 3 + 1}" if "Q" in period else f"{day.year}-{day.month:02d}")
    return found[::-1]


def mean_difference_gini(values: list[float]) -> float:
    n, mean = len(values), sum(values) / len(values)
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * mean) if mean else 0.0


def revenue_in(data: Csv, period: str) -> dict[str, int]:
    first, last = period_days(period)
    out: Counter[str] = Counter()
    for agent, deals in data.won.items():
        for day, _, amount in deals:
            if first <= day <= last:
                out[agent] += amount
    return dict(out)


@pytest.mark.parametrize("period", ["2017-06", "2017-12", "2017-Q4"])
def test_the_other_fairness_measures_are_the_csvs(pipeline: Runtime, data: Csv, period: str) -> None:
    first, last = period_days(period)
    lo, hi = at(first, 0), at(last + dt.timedelta(days=1), 0)
    revenue = revenue_in(data, period)
    active = {e.agent for e in data.events if lo <= e.at < hi}

    # per team: the Gini and top-10% share of revenue among the team's active members
    teams = []
    for office in sorted(set(data.office.values())):
        values = [float(revenue.get(a, 0)) for a in sorted(active) if data.office[a] == office]
        if values:
            top = sorted(values, reverse=True)[: -(-len(values) // 10)]
            teams.append(
                {
                    "team": office,
                    "participants": len(values),
                    "gini": pytest.approx(mean_difference_gini(values), abs=5e-5),
                    "top10_share": pytest.approx(sum(top) / sum(values) if sum(values) else 0.0, abs=5e-5),
                }
            )

    # rank churn: the top 3 of revenue in the period and the five before it, seats kept from the period before
    tops = []
    for p in earlier(period, 6):
        totals = {a: v for a, v in revenue_in(data, p).items() if v > 0}
        podium = sorted(totals, key=lambda a: -totals[a])[:3]
        leaders = sorted(totals.values(), reverse=True)[:4]
        assert len(set(leaders)) == len(leaders), p  # no tie for a seat: the order is the CSV's alone
        tops.append({"period": p, "top": podium})
    seats = sum(len(now["top"]) for now in tops[1:])
    kept = sum(len(set(now["top"]) & set(before["top"])) for before, now in itertools.pairwise(tops))

    # who never reached a reward, of everyone with an event up to the period's end
    players = {e.agent for e in data.events if e.at < hi}
    rewarded = {a.agent for a in data.awards if a.at < hi}

    # inflation: awards per event, month by month, the six months up to the period's last
    inflation = []
    for month in earlier(f"{last.year}-{last.month:02d}", 6):
        m_first, m_last = period_days(month)
        events = sum(1 for e in data.events if m_first <= e.day <= m_last)
        paid: Counter[str] = Counter()
        for a in data.awards:
            if m_first <= a.day <= m_last:
                paid[a.currency] += a.amount
        per = {k: pytest.approx(paid[k] / events if events else 0.0, abs=5e-5) for k in ("xp", "coins")}
        inflation.append({"month": month, "events": events, "per_event": per})

    # badge rarity: the agents holding each grade (won deals up to the period's end) over the players
    wins = {a: [day for day, _, _ in deals if day <= last] for a, deals in data.won.items()}
    hot = {a for a, days in wins.items() if days and max(Counter(iso_week(d) for d in days).values()) >= HOT_WEEK}
    holders = {
        ("top-closer", "Bronze"): sum(1 for days in wins.values() if len(days) >= BRONZE),
        ("top-closer", "Gold"): sum(1 for days in wins.values() if len(days) >= GOLD),
        ("hot-week", "Hot"): len(hot),
    }

    with pipeline.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        body = fairness(
            connection, record, pipeline.programs.compiled(connection, record), metric="revenue", period=period
        )
    assert body["participants"] == len(active)
    assert body["teams"] == teams
    assert body["top3"]["periods"] == tops
    assert body["top3"]["repeat_share"] == pytest.approx(kept / seats, abs=5e-5)
    never = body["never_rewarded"]
    assert (never["participants"], never["never_rewarded"]) == (len(players), len(players - rewarded))
    assert never["share"] == pytest.approx(len(players - rewarded) / len(players), abs=5e-5)
    assert body["inflation"]["months"] == inflation
    assert {(b["badge"], b["grade"]): b["holders"] for b in body["badges"]} == holders  # as the period ended
    for b in body["badges"]:
        assert b["share"] == pytest.approx(holders[(b["badge"], b["grade"])] / len(players), abs=5e-5)
    assert len(teams) == 3 and seats >= 12 and 0 < kept < seats  # deals close from 2017-03: empty tops before
    assert not players - rewarded  # every agent with an event logged a call, and a call always pays
