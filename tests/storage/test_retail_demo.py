"""The loyalty demo (UCI Online Retail through uci-rewards), checked against plain Python over the raw CSVs.

The database is loaded as ``levelup demo`` loads it (the packaged per-invoice file, the
real ingestion a trading day at a time, each day received at its end, then the expiry job
and a tiers review as of the last day). The expectations are computed here from the 68
daily files of invoice lines with the csv module and exact arithmetic: which invoices
are purchases, which cancellations refund which purchases and by what share, every
customer's beans (1 per pound, rounded down, times the multiplier of the tier held when
the purchase was made: a purchase or refund moves its customer's tier at once), their
tiers, and what expired.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select

from levelup.cli.demo import load_retail, review_program, run_retail_demo, set_up_retail
from levelup.demo import retail
from levelup.events.replay import replay
from levelup.ledger import expiry
from levelup.programs import service as programs
from levelup.runtime import Runtime
from levelup.storage import tables as t
from tests.conftest import SHARED_DATA, fresh_database

FOLDER = SHARED_DATA / "uci-online-retail-by-day" / "by-day"
WHOLE = 1_000_000
MULTIPLIER = {None: 1, "Green": 1, "Gold": Fraction(5, 4), "Reserve": Fraction(3, 2)}
STEPS = (("Reserve", 5000), ("Gold", 1000), ("Green", 0))  # uci-rewards tiers, highest first
WINDOW_DAYS = 90
EXPIRES_AFTER = dt.timedelta(days=60)
AS_OF = dt.datetime(2011, 2, 28, 23, 59, 59)  # the demo's "now" (London is on UTC in winter)

pytestmark = pytest.mark.skipif(not FOLDER.is_dir(), reason=f"the UCI Online Retail daily files are not at {FOLDER}")


# --------------------------------------------------------------------------- the expectations, from the raw lines


@dataclass
class Sale:
    number: str
    customer: str
    at: dt.datetime
    total: Decimal
    values: dict[str, Decimal] = field(default_factory=dict)  # stock code → value (negative on a cancellation)


def read_lines(folder: Path) -> list[Sale]:
    """Invoices of identified customers (cancellations included), ordered by time then invoice number."""
    invoices: dict[str, Sale] = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if not row["CustomerID"]:
                    continue
                at = dt.datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S")
                inv = invoices.setdefault(
                    row["InvoiceNo"], Sale(row["InvoiceNo"], str(int(float(row["CustomerID"]))), at, Decimal(0))
                )
                inv.at = min(inv.at, at)
                value = int(row["Quantity"]) * Decimal(row["UnitPrice"])
                inv.total += value
                inv.values[row["StockCode"]] = inv.values.get(row["StockCode"], Decimal(0)) + value
    return sorted(invoices.values(), key=lambda i: (i.at, int(i.number.lstrip("C"))))


def tier_for(spend: Fraction) -> str:
    return next(name for name, at in STEPS if spend >= at)


@dataclass
class Truth:
    sales: int = 0
    cancellations: int = 0
    unmatched: int = 0  # cancellations without an earlier purchase of their customer
    refunds: list[tuple[str, str, int]] = field(default_factory=list)  # (cancellation, purchase, share)
    earned: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    spend: dict[str, Fraction] = field(default_factory=lambda: defaultdict(Fraction))
    tier: dict[str, str | None] = field(default_factory=dict)
    held_after_expiry: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    expired: int = 0


def compute(invoices: list[Sale]) -> Truth:
    """Replays the shop's days with the program's rules, in exact arithmetic."""
    truth = Truth()
    bought: dict[str, list[Sale]] = defaultdict(list)  # customer → their purchases so far
    award: dict[str, int] = {}  # purchase → beans it earned
    left: dict[str, int] = {}  # purchase → its beans not taken back by refunds
    refunded: dict[str, int] = {}  # purchase → millionths refunded
    by_id = {i.number: i for i in invoices}
    daily: dict[str, dict[dt.date, Fraction]] = defaultdict(lambda: defaultdict(Fraction))
    days: dict[dt.date, list[Sale]] = defaultdict(list)
    for inv in invoices:
        days[inv.at.date()].append(inv)
    for day in sorted(days):

        def review(who: str, day: dt.date = day) -> None:  # at once: spend over the last 90 days, as of this day
            first = day - dt.timedelta(days=WINDOW_DAYS - 1)
            truth.tier[who] = tier_for(sum((v for d, v in daily[who].items() if first <= d <= day), Fraction()))

        for inv in days[day]:
            who = inv.customer
            if not inv.number.startswith("C"):
                if inv.total <= 0:
                    continue
                truth.sales += 1
                bought[who].append(inv)
                award[inv.number] = left[inv.number] = math.floor(
                    math.floor(inv.total) * MULTIPLIER[truth.tier.get(who)]
                )
                truth.earned[who] += award[inv.number]
                daily[who][day] += Fraction(inv.total)
                review(who)
                continue
            truth.cancellations += 1
            if not bought[who]:
                truth.unmatched += 1
                continue
            hit: dict[str, Decimal] = {}
            for code, value in inv.values.items():
                having = [s for s in bought[who] if code in s.values]
                target = (having or bought[who])[-1].number
                hit[target] = hit.get(target, Decimal(0)) - value
            for purchase, value in hit.items():
                total = by_id[purchase].total
                done = refunded.get(purchase, 0)
                exact = int((value / total * WHOLE).quantize(Decimal(1), rounding=ROUND_HALF_UP))
                share = min(max(1, exact), WHOLE - done)
                if value <= 0 or share <= 0:
                    continue
                refunded[purchase] = done + share
                truth.refunds.append((inv.number, purchase, share))
                back = award[purchase] * (done + share) // WHOLE - award[purchase] * done // WHOLE
                truth.earned[who] -= back
                left[purchase] -= back
                daily[who][by_id[purchase].at.date()] -= Fraction(total) * share / WHOLE
                review(who)
    for who, spent in daily.items():
        truth.spend[who] = sum(spent.values(), Fraction())
    for who, purchases in bought.items():
        for sale in purchases:
            if sale.at + EXPIRES_AFTER <= AS_OF:
                truth.expired += left[sale.number]
            else:
                truth.held_after_expiry[who] += left[sale.number]
    return truth


INVOICES = read_lines(FOLDER) if FOLDER.is_dir() else []
TRUTH = compute(INVOICES)


# --------------------------------------------------------------------------- the database, loaded once per engine


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """uci-rewards loaded as ``levelup demo`` loads it, then expired and re-rated as of the last day."""
    for url in fresh_database(request.param, tmp_path_factory.mktemp("retail")):
        runtime = Runtime.from_url(url)
        try:
            invoices = retail.read_invoices()
            plan = retail.plan(invoices)
            set_up_retail(runtime, retail.customers(invoices, plan.events), actor="test")
            result = load_retail(runtime, plan.events)
            assert result.counts == {"accepted": len(plan.events)}, result.rejected
            expiry.run(runtime, now=retail.AS_OF, program_keys=[retail.PROGRAM])
            review_program(runtime, retail.PROGRAM, retail.AS_OF)
            yield runtime
        finally:
            runtime.db.dispose()


def per_customer(runtime: Runtime) -> dict[str, tuple[str | None, int, int]]:
    """customer → (tier, beans earned, beans held)."""
    p, pos = t.participants.c, t.positions.c
    with runtime.db.read() as connection:
        record = programs.find(connection, retail.PROGRAM)
        rows = connection.execute(
            select(p.external_id, p.tier, pos.earned, pos.available)
            .outerjoin(t.positions, (pos.participant_id == p.id) & (pos.currency == "beans"))
            .where(p.program_id == record.id)
        ).all()
    return {r.external_id: (r.tier, int(r.earned or 0), int(r.available or 0)) for r in rows}


def differences(expected: dict[str, object], got: dict[str, object]) -> list[str]:
    keys = sorted(set(expected) | set(got), key=int)
    return [f"{k}: expected {expected.get(k)!r}, got {got.get(k)!r}" for k in keys if expected.get(k) != got.get(k)][
        :10
    ]


# --------------------------------------------------------------------------- the checks


def test_the_raw_files_are_what_these_tests_expect() -> None:
    assert len(list(FOLDER.glob("*.csv"))) == 68
    assert TRUTH.sales == 3384  # 3,385 sales invoices of identified customers, one of them of £0
    assert TRUTH.cancellations == 761
    assert TRUTH.unmatched == 169


def test_the_packaged_invoices_match_the_raw_lines() -> None:
    packaged = {i.number: i for i in retail.read_invoices()}
    assert len(packaged) == len(INVOICES) == 4146
    for raw in INVOICES:
        mine = packaged[raw.number]
        assert (mine.customer, mine.at.replace(tzinfo=None), mine.total) == (raw.customer, raw.at, raw.total)
        if raw.number.startswith("C"):
            assert dict(mine.returned) == {code: -value for code, value in raw.values.items()}


def test_sales_invoices_and_mapped_returns_are_the_events(loaded: Runtime) -> None:
    e = t.events.c
    with loaded.db.read() as connection:
        record = programs.find(connection, retail.PROGRAM)
        counts = dict(
            connection.execute(select(e.type, func.count()).where(e.program_id == record.id).group_by(e.type)).all()
        )
        refunds = {
            (data["cancellation"], reverses)
            for data, reverses in connection.execute(
                select(e.data, e.reverses).where(e.program_id == record.id, e.type == "purchase.refunded")
            )
        }
    assert counts == {"purchase.completed": TRUTH.sales, "purchase.refunded": len(TRUTH.refunds)}
    assert refunds == {(c, p) for c, p, _ in TRUTH.refunds}
    assert len(TRUTH.refunds) == 667
    assert len({c for c, _, _ in TRUTH.refunds}) == 590


def test_refund_portions_are_the_returned_share_of_the_purchase() -> None:
    plan = retail.plan(retail.read_invoices())
    assert [(r.cancellation, r.purchase, r.share) for r in plan.refunds] == TRUTH.refunds
    portions = {e["id"]: e.get("portion", 1.0) for e in plan.events if e["type"] == "purchase.refunded"}
    assert all(0 < p <= 1 for p in portions.values())
    total: Counter[str] = Counter()
    for _, purchase, share in TRUTH.refunds:
        total[purchase] += share
    assert max(total.values()) == WHOLE  # some purchases are refunded in full, none beyond


def test_beans_earned_by_every_customer(loaded: Runtime) -> None:
    got = {c: earned for c, (_, earned, _) in per_customer(loaded).items()}
    expected = {c: TRUTH.earned.get(c, 0) for c in got}
    assert set(got) == {s.customer for s in INVOICES if not s.number.startswith("C") and s.total > 0}
    assert differences(dict(expected), dict(got)) == []
    # 12346 bought 74,215 storage jars for £77,183.60 and sent them all back minutes later
    assert got["12346"] == 0
    # the biggest customer bought at the Reserve rate for most of the winter
    assert got["14646"] > TRUTH.spend["14646"] * Fraction(5, 4)


def test_tiers_follow_spend_over_the_last_90_days(loaded: Runtime) -> None:
    got = {c: tier for c, (tier, _, _) in per_customer(loaded).items()}
    expected = {c: tier_for(TRUTH.spend[c]) for c in got}
    assert differences(dict(expected), dict(got)) == []
    assert got["12346"] == "Green"
    assert got["14646"] == "Reserve"
    counts = Counter(got.values())
    assert counts["Reserve"] > 0 and counts["Gold"] > counts["Reserve"] and counts["Green"] > counts["Gold"]


def test_beans_older_than_60_days_expired(loaded: Runtime) -> None:
    got = {c: held for c, (_, _, held) in per_customer(loaded).items()}
    expected = {c: TRUTH.held_after_expiry.get(c, 0) for c in got}
    assert differences(dict(expected), dict(got)) == []
    e = t.ledger_entries.c
    with loaded.db.read() as connection:
        record = programs.find(connection, retail.PROGRAM)
        expired = connection.execute(
            select(func.sum(e.amount)).where(e.program_id == record.id, e.kind == "expiry")
        ).scalar_one()
    assert -expired == TRUTH.expired > 0


def test_replay_matches_what_ingestion_stored(loaded: Runtime) -> None:
    report = replay(loaded, retail.PROGRAM)
    assert report.ok, report.mismatches[:5]


def test_the_demo_reports_and_reruns_without_doing_anything_twice(tmp_path: Path) -> None:
    """What ``levelup demo`` prints for the loyalty program, then the same again on the same database."""
    runtime = Runtime.from_url(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        first_console, again_console = Console(record=True, width=200), Console(record=True, width=200)
        first = run_retail_demo(runtime, first_console)
        again = run_retail_demo(runtime, again_console)
    finally:
        runtime.db.dispose()
    out, rerun = (" ".join(c.export_text().split()) for c in (first_console, again_console))  # unwrapped
    assert "4,051 accepted, 0 duplicate, 0 rejected" in out
    assert "0 accepted, 4,051 duplicate, 0 rejected" in rerun
    tiers = Counter(tier_for(spend) for spend in TRUTH.spend.values())
    for tier, n in tiers.items():
        assert f"│ {tier} │ {n:,} │" in out, (tier, n)
    assert "590 cancellation invoices refund earlier purchases: 667 refunds in the log" in out
    assert "169 cancellations with no earlier purchase in the window dropped" in out
    assert f"{TRUTH.expired:,} beans expired" in out and "nothing new expired" in rerun
    made = [a for a in first.attempts if a.outcome == "redeemed"]
    assert made and {a.outcome for a in first.attempts} <= {"redeemed", "insufficient_balance"}
    assert [(a.customer, a.reward) for a in again.attempts if a.outcome == "already redeemed"] == [
        (a.customer, a.reward) for a in made
    ]
    spent = sum(int(a.detail.split()[0].replace(",", "")) for a in made)
    for report in (first.report, again.report):
        beans = report["currencies"][0]
        assert beans["outstanding"] == sum(TRUTH.held_after_expiry.values()) - spent
        assert sum(beans["redeemed_by_month"].values()) == spent
        assert sum(beans["expired_by_month"].values()) == TRUTH.expired


def test_return_mapping_on_a_small_shop() -> None:
    """Codes go to the latest earlier sale holding them, else the latest sale; shares are capped at the whole."""
    at = dt.datetime(2011, 1, 3, 10, tzinfo=retail.TIMEZONE)

    def invoice(number: str, minutes: int, total: str, codes: str = "", returned: str = "") -> retail.Invoice:
        items = tuple((c, Decimal(v)) for c, v in (i.split("=") for i in returned.split() if i))
        return retail.Invoice(
            number, "7", "UK", at + dt.timedelta(minutes=minutes), 1, Decimal(total), frozenset(codes.split()), items
        )

    plan = retail.plan(
        [
            invoice("C1", 0, "-5", returned="X=5"),  # before any purchase: dropped
            invoice("1", 1, "100", "X Y"),
            invoice("2", 2, "50", "X"),
            invoice("C2", 3, "-40", returned="X=30 Z=10"),  # X: sale 2 (the latest with X); Z: sale 2 (the latest)
            invoice("C3", 4, "-30", returned="Y=25 X=20"),  # Y: sale 1; X: sale 2, capped at what is left
            invoice("C4", 5, "-1", returned="X=1"),  # sale 2 is refunded in full already
        ]
    )
    assert plan.unmatched == ["C1"]
    assert [(r.id, r.share) for r in plan.refunds] == [("C2-2", 800_000), ("C3-1", 250_000), ("C3-2", 200_000)]
    assert [r.id for r in plan.nothing_left] == ["C4-2"]
    assert [e.get("portion") for e in plan.events if e.get("reverses")] == [0.8, 0.25, 0.2]
    whole = retail.plan([invoice("1", 1, "100", "X"), invoice("C2", 2, "-100", returned="X=100")])
    assert [e for e in whole.events if e.get("reverses")] == [  # all of it: a plain reversal, no portion
        {
            "id": "C2-1",
            "type": "purchase.refunded",
            "participant": "7",
            "occurred_at": "2011-01-03T10:02:00+00:00",
            "data": {"amount": 100.0, "cancellation": "C2"},
            "reverses": "1",
        }
    ]
