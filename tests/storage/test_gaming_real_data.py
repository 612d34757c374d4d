"""Anti-gaming flags, a clawback and a holdout on the real Maven CRM pipeline, against plain Python over the CSV.

The demo's events (a call at 10:00 New York on each engagement, a won or lost deal at 16:00 on its close
date) are loaded once; the flags the API computes in SQL are recomputed here from the CSV with the
rules docs/insights.md states: bursts (a day ≥ 10, ≥ 3 × the median of the other active days, at least 3
of them, robust z ≥ 5), days near the call cap (18–20 paid calls of 20), identical data (none: each event
names its opportunity). Then a won deal is clawed back and replay still equals live.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

from levelup.demo import sales
from levelup.engine.experiments import draw
from levelup.events.clawback import clawback
from levelup.events.replay import replay
from levelup.insights import experiments, gaming
from levelup.programs import service as programs
from levelup.programs.validation import validate_document
from levelup.runtime import Runtime
from tests.conftest import fresh_database
from tests.storage.test_real_data import CALL_CAP, FOLDER, PROGRAM, play_pipeline

pytestmark = pytest.mark.skipif(
    not (FOLDER / "sales_pipeline.csv").is_file(), reason=f"the Maven CRM data set is not at {FOLDER}"
)
START, END = dt.datetime(2016, 1, 1, tzinfo=dt.UTC), dt.datetime(2018, 6, 1, tzinfo=dt.UTC)


def daily_counts() -> dict[tuple[str, str], Counter[str]]:
    """(agent, event type) → events per local day, from the CSV."""
    days: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    with (FOLDER / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            agent = sales.slug(row["sales_agent"])
            if row["engage_date"]:
                days[(agent, "activity.logged")][row["engage_date"]] += 1
            if row["deal_stage"] in ("Won", "Lost") and row["close_date"]:
                days[(agent, f"deal.{row['deal_stage'].lower()}")][row["close_date"]] += 1
    return days


def expected_bursts(days: dict[tuple[str, str], Counter[str]]) -> set[tuple[str, str, str, int]]:
    found = set()
    for (agent, kind), counts in days.items():
        for day, n in counts.items():
            others = [m for d, m in counts.items() if d != day]
            if n < 10 or len(others) < 3:
                continue
            usual = statistics.median(others)
            spread = statistics.median([abs(m - usual) for m in others])
            if (n - usual) / max(1.4826 * spread, 1) >= 5 and n >= 3 * usual:
                found.add((agent, kind, day, n))
    return found


def expected_near_cap(days: dict[tuple[str, str], Counter[str]]) -> set[tuple[str, int, int]]:
    """(agent, days with 18–20 paid calls, days with a paid call) for those flagged."""
    found = set()
    for (agent, kind), counts in days.items():
        if kind != "activity.logged":
            continue
        paid = [min(n, CALL_CAP) for n in counts.values()]
        near = sum(1 for n in paid if n >= CALL_CAP - 2)
        if near >= 3 and near / len(paid) >= 0.5:
            found.add((agent, near, len(paid)))
    return found


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    for url in fresh_database("sqlite", tmp_path_factory.mktemp("gaming-real-data")):
        runtime = Runtime.from_url(url)
        try:
            play_pipeline(runtime)
            yield runtime
        finally:
            runtime.db.dispose()


def flags_of(runtime: Runtime) -> dict[str, object]:
    with runtime.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        compiled = runtime.programs.compiled(connection, record)
        return gaming.flags(connection, record, compiled, start=START, end=END, limit=1000)


def test_flags_over_the_real_pipeline_are_what_the_csv_says(played: Runtime) -> None:
    days = daily_counts()
    body = flags_of(played)
    flags = body["flags"]
    assert isinstance(flags, list)
    bursts = {
        (f["participants"][0], f["detail"]["type"], f["detail"]["day"], f["detail"]["count"])
        for f in flags
        if f["kind"] == "burst"
    }
    assert bursts == expected_bursts(days)
    near = {
        (f["participants"][0], f["detail"]["at_cap"], f["detail"]["periods"]) for f in flags if f["kind"] == "near_cap"
    }
    assert near == expected_near_cap(days)
    assert body["kinds"] == {"burst": len(bursts), "near_cap": len(near), "repeated": 0, "kudos_ring": 0}
    for flag in (f for f in flags if f["kind"] == "burst"):  # each lists that day's events of that type
        assert len(flag["events"]) == flag["detail"]["count"]


def test_a_holdout_on_the_real_pipeline_compares_what_the_csv_says(played: Runtime) -> None:
    """A program holdout of 30 % (salt "maven") over the real pipeline: the groups, their mean revenue per
    agent and the difference equal plain Python over the CSV (groups by the same draw), and the interval
    holds the difference. Applied after the load: holdouts change awards, not metrics (before the clawback
    below, which takes a deal's revenue back)."""
    with played.db.write() as connection:
        document = programs.document_of(connection, programs.find(connection, PROGRAM))
        experiment = {"key": "ab", "holdout": 0.3, "salt": "maven", "applies_to": {"program": True}}
        with_holdout = validate_document(document | {"experiments": [experiment | {"metric": "revenue"}]})
        programs.apply(connection, with_holdout, actor="test")
    revenue: dict[str, float] = defaultdict(float)
    with (FOLDER / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            agent = sales.slug(row["sales_agent"])
            if row["engage_date"] or (row["deal_stage"] in ("Won", "Lost") and row["close_date"]):
                revenue[agent] += int(row["close_value"] or 0) if row["deal_stage"] == "Won" else 0
    held = [v for agent, v in revenue.items() if draw("maven", agent) < 0.3]
    treated = [v for agent, v in revenue.items() if draw("maven", agent) >= 0.3]
    with played.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        compiled = played.programs.compiled(connection, record)
        [found] = experiments.experiments(connection, record, compiled, START, END)["experiments"]
    assert (found["treated"]["participants"], found["held_out"]["participants"]) == (len(treated), len(held))
    assert found["treated"]["mean"] == pytest.approx(statistics.fmean(treated), abs=1e-3)
    assert found["held_out"]["mean"] == pytest.approx(statistics.fmean(held), abs=1e-3)
    difference = statistics.fmean(treated) - statistics.fmean(held)
    assert found["difference"] == pytest.approx(difference, abs=1e-3)
    # Welch's interval: the difference ± t × its standard error, t between the normal's 1.96 and df 5's 2.571
    error = math.sqrt(statistics.variance(treated) / len(treated) + statistics.variance(held) / len(held))
    low, high = found["low"], found["high"]
    assert low < difference < high and 1.96 <= (high - low) / 2 / error <= 2.571
    assert found["real"] == (low > 0 or high < 0)


def test_a_clawback_on_the_real_pipeline_keeps_replay_equal_to_live(played: Runtime) -> None:
    with (FOLDER / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        won = next(row["opportunity_id"] for row in csv.DictReader(f) if row["deal_stage"] == "Won")
    done = clawback(played, PROGRAM, f"{won}-won", note="test", actor="test")
    assert done["status"] == "accepted" and done["taken"]["xp"] < 0
    assert clawback(played, PROGRAM, f"{won}-won", note="again", actor="test")["status"] == "duplicate"
    report = replay(played, PROGRAM)
    assert report.mismatches == []
