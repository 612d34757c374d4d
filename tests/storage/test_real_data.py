"""The real Maven CRM pipeline played through acme-sales, checked against plain Python over the CSV.

The data set (8,800 opportunities, 35 agents, 3 regional offices, 2016-10 to 2017-12) is
loaded as ``levelup demo`` loads it: each agent a participant in the team of their regional
office, then every engagement as a call and every won or lost deal on its close date (16:00
New York). The expectations are computed here from the CSV files with the csv module only:
leaderboards, badges, the weekly challenge, balances, levels and streaks.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from levelup.challenges.closing import close_periods
from levelup.cli.demo import set_up
from levelup.demo import sales
from levelup.events.ingest import ingest
from levelup.events.replay import replay
from levelup.leaderboards.service import leaderboard
from levelup.participants.profile import profile
from levelup.programs import service as programs
from levelup.runtime import Runtime
from tests.conftest import SHARED_DATA, fresh_database

FOLDER = SHARED_DATA / "maven-crm-sales-opportunities"
PROGRAM = "acme-sales"
BATCH = 1000
CALL_CAP = 20  # acme-sales call-logged: at most 20 awards a day

pytestmark = pytest.mark.skipif(
    not (FOLDER / "sales_pipeline.csv").is_file() or not (FOLDER / "sales_teams.csv").is_file(),
    reason=f"the Maven CRM data set is not at {FOLDER}",
)


# --------------------------------------------------------------------------- the expectations, from the CSV


def quarter_of(day: dt.date) -> str:
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def week_of(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass
class Truth:
    """What the CSV says, agent by agent (ids as the demo slugs the agents' names)."""

    office: dict[str, str] = field(default_factory=dict)  # agent → team id
    names: dict[str, str] = field(default_factory=dict)
    won: dict[str, list[tuple[dt.date, str, int]]] = field(default_factory=lambda: defaultdict(list))
    calls: dict[str, Counter[dt.date]] = field(default_factory=lambda: defaultdict(Counter))
    events: int = 0  # engagements (calls) and closed deals (won or lost)

    def revenue_by(self, period: str) -> dict[str, int]:
        """Won revenue per agent in a month (``2017-06``)."""
        out: dict[str, int] = defaultdict(int)
        for agent, deals in self.won.items():
            for day, _, amount in deals:
                if day.isoformat()[:7] == period:
                    out[agent] += amount
        return dict(out)

    def team_revenue(self, period: str) -> dict[str, int]:
        """Won revenue per regional office in a quarter (``2017-Q4``)."""
        out: dict[str, int] = defaultdict(int)
        for agent, deals in self.won.items():
            for day, _, amount in deals:
                if quarter_of(day) == period:
                    out[self.office[agent]] += amount
        return dict(out)

    def xp(self, agent: str) -> int:
        deals = sum(math.floor(100 + amount / 100) for _, _, amount in self.won[agent])
        calls = sum(5 * min(n, CALL_CAP) for n in self.calls[agent].values())
        return deals + calls

    def weekly(self, agent: str) -> Counter[str]:
        return Counter(week_of(day) for day, _, _ in self.won[agent])

    def coins(self, agent: str) -> int:
        rewards = 100 * sum(1 for n in self.weekly(agent).values() if n >= 5)
        return sum(amount // 1000 for _, _, amount in self.won[agent]) + rewards

    def best_streak(self, agent: str, grace: int = 1) -> int:
        best = length = 0
        last: dt.date | None = None
        for day in sorted(self.calls[agent]):
            length = length + 1 if last is not None and (day - last).days <= grace + 1 else 1
            best, last = max(best, length), day
        return best


def read_truth(folder: Path) -> Truth:
    truth = Truth()
    with (folder / "sales_teams.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            agent = sales.slug(row["sales_agent"])
            truth.office[agent] = sales.slug(row["regional_office"])
            truth.names[agent] = row["sales_agent"]
    with (folder / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            agent = sales.slug(row["sales_agent"])
            closed = row["deal_stage"] in ("Won", "Lost") and bool(row["close_date"])
            truth.events += int(bool(row["engage_date"])) + int(closed)
            if row["engage_date"]:
                truth.calls[agent][dt.date.fromisoformat(row["engage_date"])] += 1
            if row["deal_stage"] == "Won" and row["close_date"]:
                day = dt.date.fromisoformat(row["close_date"])
                truth.won[agent].append((day, row["opportunity_id"], int(row["close_value"] or 0)))
    for deals in truth.won.values():
        deals.sort(key=lambda d: (d[0], f"{d[1]}-won"))  # the order the demo sends them in
    return truth


def ranked(values: dict[str, int]) -> list[tuple[int, str, int]]:
    """(rank, id, value), highest first; ties share a rank and the next rank skips (1, 2, 2, 4)."""
    return sorted(
        ((1 + sum(1 for v in values.values() if v > value), key, value) for key, value in values.items()),
        key=lambda r: (r[0], r[1]),
    )


TRUTH = read_truth(FOLDER) if (FOLDER / "sales_pipeline.csv").is_file() else Truth()


# --------------------------------------------------------------------------- the database, loaded once per engine


def play_pipeline(runtime: Runtime, closed_at: dt.datetime | None = None) -> None:
    """acme-sales set up as ``levelup demo`` does and the whole Maven pipeline ingested, every event accepted;
    with ``closed_at``, the closing job run then (the real-data tests of other modules load it this way)."""
    set_up(runtime, FOLDER, actor="test")
    events = list(sales.events(FOLDER))
    statuses: Counter[str] = Counter()
    for start in range(0, len(events), BATCH):
        statuses.update(o.status for o in ingest(runtime, PROGRAM, events[start : start + BATCH]))
    assert statuses == {"accepted": len(events)}
    if closed_at is not None:
        close_periods(runtime, now=closed_at)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def played(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A database with acme-sales and the whole pipeline ingested, as ``levelup demo`` does it."""
    for url in fresh_database(request.param, tmp_path_factory.mktemp("real-data")):
        runtime = Runtime.from_url(url)
        try:
            play_pipeline(runtime)
            yield runtime
        finally:
            runtime.db.dispose()


def board(runtime: Runtime, key: str, period: str) -> dict[str, Any]:
    with runtime.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        found: dict[str, Any] = leaderboard(
            connection, record, runtime.programs.compiled(connection, record), key, period=period, limit=1000
        )
        return found


def profiles(runtime: Runtime) -> dict[str, dict[str, Any]]:
    with runtime.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        compiled = runtime.programs.compiled(connection, record)
        return {agent: profile(connection, record, compiled, agent) for agent in TRUTH.office}


# --------------------------------------------------------------------------- the checks


def test_the_csv_is_what_these_tests_expect() -> None:
    assert len(TRUTH.office) == 35
    assert set(TRUTH.office.values()) == {"central", "east", "west"}
    assert sum(len(d) for d in TRUTH.won.values()) == 4238
    assert set(TRUTH.won) <= set(TRUTH.office)


@pytest.mark.parametrize("month", ["2017-06", "2017-12"])
def test_revenue_month_leaderboard_matches_the_csv(played: Runtime, month: str) -> None:
    expected = ranked(TRUTH.revenue_by(month))
    got = board(played, "revenue-month", month)
    assert got["period"] == month
    assert got["total"] == len(expected)
    assert [(e["rank"], e["id"], e["value"]) for e in got["entries"]] == expected
    assert {e["name"] for e in got["entries"]} <= set(TRUTH.names.values())


@pytest.mark.parametrize("period", ["2017-Q2", "2017-Q4"])
def test_team_revenue_leaderboard_matches_the_csv(played: Runtime, period: str) -> None:
    expected = ranked(TRUTH.team_revenue(period))
    got = board(played, "team-revenue", period)
    assert got["total"] == len(expected) == 3
    assert [(e["rank"], e["id"], e["value"]) for e in got["entries"]] == expected


def test_top_closer_grades_are_granted_at_the_fifth_and_fiftieth_won_deal(played: Runtime) -> None:
    shown = profiles(played)
    for agent in TRUTH.office:
        deals = TRUTH.won.get(agent, [])
        closer = {b["grade"]: b for b in shown[agent]["badges"] if b["key"] == "top-closer"}
        expected = {grade for grade, at in (("Bronze", 5), ("Gold", 50)) if len(deals) >= at}
        assert set(closer) == expected, agent
        for grade, at in (("Bronze", 5), ("Gold", 50)):
            if grade in closer:
                day, opportunity, _ = deals[at - 1]
                awarded = dt.datetime.fromisoformat(closer[grade]["awarded_at"])
                assert awarded == dt.datetime.combine(day, dt.time(16), sales.TIMEZONE), (agent, grade)
                assert closer[grade]["event"] == f"{opportunity}-won"
    assert sum(1 for a in TRUTH.office if len(TRUTH.won.get(a, [])) >= 50) == 30  # the data: 5 agents never won


def test_hot_weeks_are_the_iso_weeks_with_three_won_deals(played: Runtime) -> None:
    shown = profiles(played)
    for agent in TRUTH.office:
        hot = {b["period"] for b in shown[agent]["badges"] if b["key"] == "hot-week"}
        assert hot == {week for week, n in TRUTH.weekly(agent).items() if n >= 3}, agent


def test_balances_levels_and_streaks_match_the_csv(played: Runtime) -> None:
    shown = profiles(played)
    for agent in TRUTH.office:
        body = shown[agent]
        xp = TRUTH.xp(agent)
        assert body["balances"] == {"xp": xp, "coins": TRUTH.coins(agent)}, agent
        level = "Legend" if xp >= 10_000 else "Closer" if xp >= 1_000 else "Rookie"
        assert body["level"]["name"] == level, agent
        (streak,) = body["streaks"]
        assert (streak["key"], streak["best"]) == ("daily-caller", TRUTH.best_streak(agent)), agent
        assert streak["current"] == 0  # the data ends in 2017
        assert body["teams"] == [TRUTH.office[agent]]


def test_replay_of_the_real_data_agrees_with_live_ingestion(played: Runtime) -> None:
    report = replay(played, PROGRAM)
    assert report.ok, report.mismatches[:10]
    assert report.events == TRUTH.events
