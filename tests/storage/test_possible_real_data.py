"""Still possible on the real Maven CRM pipeline, against plain Python over the CSV.

Three competitions are added to acme-sales before the pipeline is loaded: ``spring-revenue`` (revenue,
1 April – 30 June 2017, three prizes), ``monthly-deals`` (won deals, every month, two prizes) and
``office-spring`` (the regional offices' revenue over the spring, two prizes). It is midnight in New
York on 16 May 2017 (``AS_OF``): the events up to then are loaded (a call at 10:00 on each engagement,
a won or lost deal at 16:00 on its close date), and what each prize rank takes, and the chance of it at
one's own pace, are recomputed here from the CSV with the rules docs/insights.md states — integers for
the gaps and the deals a gap takes, the Poisson tail summed term by term — not with possible.py's code.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from levelup.cli.demo import set_up
from levelup.demo import sales
from levelup.errors import Invalid
from levelup.events.ingest import ingest
from levelup.insights import possible
from levelup.programs import service as programs
from levelup.programs.validation import validate_document
from levelup.runtime import Runtime
from tests.conftest import fresh_database
from tests.storage.test_real_data import BATCH, FOLDER, PROGRAM

pytestmark = pytest.mark.skipif(
    not (FOLDER / "sales_pipeline.csv").is_file() or not (FOLDER / "sales_teams.csv").is_file(),
    reason=f"the Maven CRM data set is not at {FOLDER}",
)
NEW_YORK = ZoneInfo("America/New_York")
AS_OF = dt.datetime(2017, 5, 16, tzinfo=NEW_YORK).astimezone(dt.UTC)
SPRING = (dt.date(2017, 4, 1), dt.date(2017, 6, 30))
MAY = (dt.date(2017, 5, 1), dt.date(2017, 5, 31))
COMPETITIONS = [
    {"key": "spring-revenue", "kind": "competition", "metric": "revenue", "start": "2017-04-01", "end": "2017-06-30"}
    | {"prizes": [{"rank": r, "award": {"coins": 100 * (4 - r)}} for r in (1, 2, 3)]},
    {"key": "monthly-deals", "kind": "competition", "metric": "deals_won", "every": "month"}
    | {"prizes": [{"rank": r, "award": {"coins": 50}} for r in (1, 2)]},
    {"key": "office-spring", "kind": "competition", "mode": "team", "metric": "revenue", "start": "2017-04-01"}
    | {"end": "2017-06-30", "prizes": [{"rank": r, "award": {"coins": 10}} for r in (1, 2)]},
]


@dataclass
class Deal:
    agent: str
    office: str
    day: dt.date  # the close date, in New York
    amount: int


def won_deals() -> list[Deal]:
    """Every won deal of the CSV, with its agent's regional office (as the demo slugs both)."""
    with (FOLDER / "sales_teams.csv").open(newline="", encoding="utf-8") as f:
        office = {sales.slug(r["sales_agent"]): sales.slug(r["regional_office"]) for r in csv.DictReader(f)}
    with (FOLDER / "sales_pipeline.csv").open(newline="", encoding="utf-8") as f:
        return [
            Deal(sales.slug(r["sales_agent"]), office[sales.slug(r["sales_agent"])], day, int(r["close_value"]))
            for r in csv.DictReader(f)
            if r["deal_stage"] == "Won" and r["close_date"]
            for day in [dt.date.fromisoformat(r["close_date"])]
        ]


def at_least(k: int, mu: float) -> float:
    """P(N ≥ k) for N ~ Poisson(mu), one term after the other (no overflow for a k in the thousands)."""
    term, below = math.exp(-mu), 0.0
    for i in range(k):
        below += term
        term *= mu / (i + 1)
    return max(0.0, 1.0 - below)


def days(a: dt.datetime, b: dt.datetime) -> float:
    return (b - a).total_seconds() / 86400


def expected(
    deals: list[Deal],
    dates: tuple[dt.date, dt.date],
    ranks: list[int],
    *,
    amount: bool,
    team: bool,
    as_of: dt.datetime = AS_OF,
) -> dict[str, Any]:
    """What the competition over ``dates`` should answer at ``as_of`` (a New York midnight): its board, and
    for each subject each prize rank's gap and chance, from the won deals closed in the competition before
    then (16:00 on a close date before that day)."""
    first = dt.datetime.combine(dates[0], dt.time(), NEW_YORK).astimezone(dt.UTC)
    after = dt.datetime.combine(dates[1] + dt.timedelta(days=1), dt.time(), NEW_YORK).astimezone(dt.UTC)
    elapsed, left = days(first, as_of), days(as_of, after)
    value: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for deal in deals:
        if dates[0] <= deal.day < as_of.astimezone(NEW_YORK).date():
            who = deal.office if team else deal.agent
            value[who] += deal.amount if amount else 1
            count[who] += 1
    board = sorted(value, key=lambda who: (-value[who], who))
    rows = {}
    for who in board:
        others = [value[o] for o in board if o != who]
        mu = count[who] / elapsed * left
        prizes = []
        for r in ranks:
            needed = max(0, others[r - 1] - value[who]) if len(others) >= r else 0
            holds = needed == 0
            # the deals the gap takes at the subject's average (value ÷ deals): ⌈needed × deals ÷ value⌉
            deals_needed = -(-needed * count[who] // value[who])
            chance = 1.0 if holds else at_least(max(1, deals_needed), mu)
            prizes.append((r, float(needed), chance, holds))
        rows[who] = {"value": float(value[who]), "events": count[who], "per_day": count[who] / elapsed} | {
            "prizes": prizes
        }
    return {
        "board": board,
        "elapsed": elapsed,
        "left": left,
        "holders": [(r, board[r - 1], float(value[board[r - 1]])) for r in ranks],
        "rows": rows,
    }


def load(kind: str, folder: Path, until: dt.datetime) -> Iterator[Runtime]:
    """acme-sales with the three competitions, and the pipeline's events before ``until``."""
    for url in fresh_database(kind, folder):
        runtime = Runtime.from_url(url)
        try:
            set_up(runtime, FOLDER, actor="test")
            with runtime.db.write() as connection:
                document = programs.document_of(connection, programs.find(connection, PROGRAM))
                document["challenges"] = document["challenges"] + COMPETITIONS
                programs.apply(connection, validate_document(document), actor="test")
            events = [e for e in sales.events(FOLDER) if dt.datetime.fromisoformat(e["occurred_at"]) < until]
            for start in range(0, len(events), BATCH):
                assert {o.status for o in ingest(runtime, PROGRAM, events[start : start + BATCH])} == {"accepted"}
            yield runtime
        finally:
            runtime.db.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def played(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """The pipeline as it stood on AS_OF: what is still possible is asked of the present."""
    yield from load(request.param, tmp_path_factory.mktemp("possible-real-data"), AS_OF)


def possible_of(runtime: Runtime, as_of: dt.datetime = AS_OF, **options: Any) -> dict[str, Any]:
    with runtime.db.read() as connection:
        record = programs.find(connection, PROGRAM)
        compiled = runtime.programs.compiled(connection, record)
        return possible.possible(connection, record, compiled, as_of=as_of, **options)


def check(found: dict[str, Any], truth: dict[str, Any]) -> None:
    """The service's answer for one competition equals the CSV's, chance by chance (to its 4 decimals)."""
    assert (found["days_elapsed"], found["days_left"]) == (round(truth["elapsed"], 4), round(truth["left"], 4))
    assert found["entrants"] == len(truth["board"])
    assert [(p["rank"], p["holder"], p["value"]) for p in found["prizes"]] == truth["holders"]
    assert [r["id"] for r in found["participants"]] == truth["board"]
    for row in found["participants"]:
        want = truth["rows"][row["id"]]
        pace = (want["value"], want["events"], round(want["per_day"], 4))
        assert (row["value"], row["events"], row["per_day"]) == pace, row["id"]
        got = [(p["rank"], p["needed"], p["chance"], p["holds"]) for p in row["prizes"]]
        assert [(r, n, h) for r, n, _, h in got] == [(r, n, h) for r, n, _, h in want["prizes"]], row["id"]
        for (rank, _, chance, _), (_, _, truth_chance, _) in zip(got, want["prizes"], strict=True):
            assert chance == pytest.approx(truth_chance, abs=5.001e-5), (row["id"], rank)


def test_still_possible_over_the_real_pipeline_is_what_the_csv_says(played: Runtime) -> None:
    deals = won_deals()
    body = possible_of(played)
    found = {c["challenge"]: c for c in body["competitions"]}
    assert list(found) == ["spring-revenue", "monthly-deals", "office-spring"]  # october-blitz (2026) is not open
    assert (found["spring-revenue"]["period"], found["monthly-deals"]["period"]) == ("20170401-20170630", "2017-05")
    spring = expected(deals, SPRING, [1, 2, 3], amount=True, team=False)
    assert (spring["elapsed"], spring["left"]) == (45.0, 46.0)  # no clock change in the spring: whole days
    check(found["spring-revenue"], spring)
    check(found["monthly-deals"], expected(deals, MAY, [1, 2], amount=False, team=False))
    offices = expected(deals, SPRING, [1, 2], amount=True, team=True)
    assert offices["board"] == sorted(offices["board"], key=lambda o: -offices["rows"][o]["value"])
    assert len(offices["board"]) == 3  # central, east and west, each with revenue in the spring
    check(found["office-spring"], offices)
    # the middle of the board has something within reach: not every chance is 0 or 1
    middle = [p[2] for row in spring["rows"].values() for p in row["prizes"] if 0.01 < p[2] < 0.99]
    assert middle


def test_one_participant_and_one_competition(played: Runtime) -> None:
    deals = won_deals()
    spring = expected(deals, SPRING, [1, 2, 3], amount=True, team=False)
    last = spring["board"][-1]  # the smallest spring revenue: every prize is a gap
    [only] = possible_of(played, challenge="spring-revenue", participant=last)["competitions"]
    assert only["entrants"] == len(spring["board"]) and [r["id"] for r in only["participants"]] == [last]
    row, want = only["participants"][0], spring["rows"][last]
    assert [(p["rank"], p["needed"], p["holds"]) for p in row["prizes"]] == [(r, n, h) for r, n, _, h in want["prizes"]]
    for got, (_, _, chance, _) in zip(row["prizes"], want["prizes"], strict=True):
        assert got["chance"] == pytest.approx(chance, abs=5.001e-5)
    assert all(not p["holds"] and p["needed"] > 0 for p in row["prizes"])
    top = possible_of(played, challenge="spring-revenue", limit=3)["competitions"][0]["participants"]
    assert [r["id"] for r in top] == spring["board"][:3]


def test_a_past_as_of_is_refused_once_the_board_holds_later_events(tmp_path: Path) -> None:
    """The spring loaded up to its last day: asked as of 16 May, the stored board (to 29 June) and the pace
    (to 16 May) would disagree — the defect this guards against read darcel-schlecht's revenue to the end
    of the spring (310,075, against 147,181 on 16 May) over their deals up to 16 May, and gave zane-levy a
    100% chance of 11,946 more — so it is refused, naming ``as_of``; asked as of midnight on 30 June, the
    answer is the CSV's."""
    june = dt.datetime(2017, 6, 30, tzinfo=NEW_YORK).astimezone(dt.UTC)
    for runtime in load("sqlite", tmp_path, june):
        with pytest.raises(Invalid) as refused:
            possible_of(runtime, challenge="spring-revenue")
        [error] = refused.value.errors
        assert error.path == "as_of" and "spring-revenue already counts events after as_of" in error.message
        [spring] = possible_of(runtime, as_of=june, challenge="spring-revenue")["competitions"]
        truth = expected(won_deals(), SPRING, [1, 2, 3], amount=True, team=False, as_of=june)
        assert (truth["elapsed"], truth["left"]) == (90.0, 1.0)
        check(spring, truth)
