"""``levelup demo``: the real CRM sales pipeline played through the acme-sales program, and a real
online shop's customers through the uci-rewards loyalty program."""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Connection, bindparam, func, select, update

from levelup.demo import retail, sales
from levelup.errors import Conflict
from levelup.events.ingest import Outcome, batches, ingest
from levelup.events.schema import MAX_BATCH
from levelup.keys import service as keys
from levelup.leaderboards import history, normalised, windows
from levelup.leaderboards.service import leaderboard
from levelup.ledger import expiry
from levelup.ledger.liability import liability
from levelup.links import service as links
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.compiled import CompiledProgram
from levelup.programs.validation import load_document
from levelup.rewards import service as rewards
from levelup.runtime import Runtime
from levelup.storage import tables
from levelup.storage.db import analyze
from levelup.tiers import service as tiers


def set_up(runtime: Runtime, folder: Path | None = None, *, actor: str = "demo") -> programs.ProgramRecord:
    """Apply the demo program and register the reps in the teams of their offices."""
    doc = load_document(sales.program_text())
    people = sales.participants(folder)
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, doc, actor=actor)
        for person in people:
            participants.set_profile(
                connection,
                record.id,
                person["id"],
                name=person["name"],
                teams=person["teams"],
                attributes=person["attributes"],
            )
        for team in {t for p in people for t in p["teams"]}:
            participants.set_team(connection, record.id, team, name=team.title())
    return record


def run_demo(
    runtime: Runtime,
    console: Console,
    ingest_with_progress: Callable[..., dict[str, int]],
    print_board: Callable[[dict[str, Any]], None],
) -> str:
    """Load both demos and print what they show; returns a key to call the API with."""
    record = set_up(runtime)
    events = list(sales.events())
    console.print(
        f"[bold]Levelup demo[/bold]: {len(events):,} events from the Maven CRM pipeline "
        f"(8,800 opportunities, 35 reps, 3 offices) into program [bold]{record.key}[/bold]"
    )
    counts = ingest_with_progress(runtime, record.key, events, label="pipeline")
    console.print(", ".join(f"{n:,} {status}" for status, n in counts.items()))
    with runtime.db.write() as connection:
        analyze(connection)  # after a bulk load: fresh planner statistics (PostgreSQL)
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        for key, period in (("revenue-month", "2017-12"), ("team-revenue", "2017-Q4"), ("xp-all", None)):
            print_board(leaderboard(connection, record, compiled, key, period=period, limit=5))
    loyalty = run_retail_demo(runtime, console)
    # the TV's change since yesterday and movement chart read the board-history job's days: those it would have
    # kept had it run over the last two weeks, derived from the stored data (all of it older: unchanged since)
    kept = history.backfill(runtime, program_keys=[record.key, loyalty.key])
    console.print(f"Board history: {kept:,} rows of the boards' tops over the last 14 days and today, for the TV")
    secret = os.environ.get("LEVELUP_ADMIN_KEY")
    if not secret:
        with runtime.db.write() as connection:
            _, secret = keys.create(
                connection, role="read", programs=[record.key, loyalty.key], creator=None, note="demo"
            )
        console.print(f"A read key for the API (shown once): [bold]{secret}[/bold]", soft_wrap=True)
        console.print(
            "An admin key (to apply documents, adjust, make keys): levelup keys create --role admin --program '*'",
            soft_wrap=True,
        )
    else:
        console.print("The API takes LEVELUP_ADMIN_KEY, an admin key for every program.", soft_wrap=True)
    return secret


def before_serving(runtime: Runtime, console: Console, base: str, secret: str) -> None:
    """Settle the sales periods now, then serve with the periodic jobs off (unless LEVELUP_CLOSE_EVERY says).

    The loyalty data ends in February 2011: run as of today, the expiry job would expire every
    bean and the tiers job would take every customer back to the first tier within a minute.
    """
    from levelup.challenges.closing import close_periods

    close_periods(runtime, program_keys=[sales.PROGRAM])
    if "LEVELUP_CLOSE_EVERY" not in os.environ:
        os.environ["LEVELUP_CLOSE_EVERY"] = "0"
        console.print(
            "\nPeriodic jobs (closing, expiry, tiers) are off while the demo serves, so the 2011 loyalty "
            "data stays as of its last day; LEVELUP_CLOSE_EVERY=60 turns them on."
        )
    console.print(f"Serving on {base}; pages to open (links valid for 30 days):")
    for label, path in demo_links(runtime):
        console.print(f"  {label}: {base}{path}", soft_wrap=True)
    auth = f"-H 'Authorization: Bearer {secret}'"
    console.print("and the API, try:")
    for path in (
        f"{sales.PROGRAM}/leaderboards/revenue-month?period=2017-12",
        f"{retail.PROGRAM}/leaderboards/spend-all",
        f"{retail.PROGRAM}/participants/14646",
        f"{retail.PROGRAM}/rewards?participant=14646",
    ):
        console.print(f"  curl {auth} '{base}/api/v1/programs/{path}'", soft_wrap=True)  # one line to copy


def demo_links(runtime: Runtime) -> list[tuple[str, str]]:
    """Signed links to the pages (docs/web.md): each program's TV board, the sales leader's home and a
    loyalty customer's home with the store."""
    with runtime.db.write() as connection:
        out = []
        for key, who in ((sales.PROGRAM, None), (retail.PROGRAM, "14646")):
            record = programs.find(connection, key)
            compiled = runtime.programs.compiled(connection, record)
            if who is None:
                board = leaderboard(connection, record, compiled, "xp-all", limit=1)  # the pipeline is 2017's
                who = board["entries"][0]["id"] if board["entries"] else None
            tv = links.create(connection, record, compiled, kind="tv", note="demo", actor="demo")
            out.append((f"{key} TV board", links.page_path(key, "tv", tv["token"])))
            if who is not None:
                home = links.create(
                    connection, record, compiled, kind="participant", participant=who, note="demo", actor="demo"
                )
                out.append((f"{key} home of {who}", links.page_path(key, "participant", home["token"])))
    return out


# --------------------------------------------------------------------------- the loyalty demo


def set_up_retail(runtime: Runtime, people: list[dict[str, Any]], *, actor: str = "demo") -> programs.ProgramRecord:
    """Apply the loyalty program and give each customer a name and their country (for scoped boards).

    Written in one statement: 1,700 one-by-one profile updates took seconds.
    """
    doc = load_document(retail.program_text())
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, doc, actor=actor)
        ids, _ = participants.ensure(connection, record.id, (person["id"] for person in people))
        p = tables.participants.c
        connection.execute(
            update(tables.participants)
            .where(p.id == bindparam("pid"))
            .values(name=bindparam("new_name"), attributes=bindparam("new_attributes")),
            [
                {"pid": ids[person["id"]], "new_name": person["name"], "new_attributes": person["attributes"]}
                for person in people
            ],
        )
        normalised.refresh(connection, record.id, ids.values())  # new handicaps: kept normalised quotients follow
        windows.handicaps_changed(connection, record.id, ids.values())
    return record


@dataclass
class Loaded:
    counts: Counter[str] = field(default_factory=Counter)  # accepted, duplicate, rejected
    accepted: Counter[str] = field(default_factory=Counter)  # accepted events by type
    rejected: list[Outcome] = field(default_factory=list)  # the first few


def end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59), retail.TIMEZONE)


def load_retail(
    runtime: Runtime, events: list[dict[str, Any]], *, advance: Callable[[int], None] | None = None
) -> Loaded:
    """Ingest the shop's events a trading day at a time, each day received at its end.

    Tier windows are judged on the day of receipt: received in 2026, purchases of 2011
    would lie outside every window. Received on their own day, as if the shop had run
    the program back then, each purchase moves its customer's tier at once and the next
    purchase earns with the new multiplier.
    """
    loaded = Loaded()
    for day, todays in retail.by_day(events):
        for chunk in batches(todays, MAX_BATCH):
            for event, outcome in zip(chunk, ingest(runtime, retail.PROGRAM, chunk, now=end_of(day)), strict=True):
                loaded.counts[outcome.status] += 1
                if outcome.status == "accepted":
                    loaded.accepted[event["type"]] += 1
                elif outcome.status == "rejected" and len(loaded.rejected) < 5:
                    loaded.rejected.append(outcome)
            if advance is not None:
                advance(len(chunk))
    return loaded


def review_program(runtime: Runtime, key: str, now: dt.datetime) -> int:
    """The tiers job for one program: every customer re-rated as of ``now``; returns the changes.

    ``tiers.service.review_all`` would also re-rate the other programs of the database, as of 2011.
    """
    with runtime.db.write() as connection:
        record = programs.find(connection, key)
        compiled = runtime.programs.compiled(connection, record)
        ids = connection.execute(
            select(tables.participants.c.id).where(tables.participants.c.program_id == record.id)
        ).scalars()
        return len(tiers.review(connection, record.id, compiled, list(ids), now))


@dataclass
class Attempt:
    customer: str
    reward: str
    outcome: str  # "redeemed", "already redeemed" (a rerun) or the refusal's code
    detail: str


def redeem_for(runtime: Runtime, key: str, customers: list[str], reward_keys: tuple[str, ...]) -> list[Attempt]:
    """Each customer asks for each reward, once: fixed idempotency keys make a rerun find the first answer."""
    attempts = []
    for customer in customers:
        for reward in reward_keys:
            try:
                with runtime.db.write() as connection:
                    record = programs.find(connection, key)
                    made, created = rewards.redeem(
                        connection,
                        record,
                        runtime.programs.compiled(connection, record),
                        participant=customer,
                        reward_key=reward,
                        idempotency_key=f"demo-{customer}-{reward}",
                        now=retail.AS_OF,
                    )
            except Conflict as exc:
                attempts.append(Attempt(customer, reward, str(exc.problem()["code"]), exc.detail))
                continue
            cost = ", ".join(f"{n:,} {c}" for c, n in made["cost"].items())
            attempts.append(Attempt(customer, reward, "redeemed" if created else "already redeemed", cost))
    return attempts


@dataclass
class RetailDemo:
    key: str
    plan: retail.Plan
    loaded: Loaded
    expired: dict[str, int]
    tier_changes: int
    attempts: list[Attempt]
    report: dict[str, Any]
    compiled: CompiledProgram


def run_retail_demo(runtime: Runtime, console: Console) -> RetailDemo:
    """Load three months of the shop, run the time-driven jobs as of the last day, redeem, and report."""
    invoices = retail.read_invoices()
    plan = retail.plan(invoices)
    record = set_up_retail(runtime, retail.customers(invoices, plan.events))
    console.print(
        f"\n[bold]Loyalty demo[/bold]: {len(plan.events):,} events from UCI Online Retail "
        f"(2010-12-01 … {retail.LAST_DAY}, {plan.purchases:,} invoices, {len(plan.refunds):,} refunds) "
        f"into program [bold]{record.key}[/bold], a trading day at a time"
    )
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("invoices", total=len(plan.events))
        loaded = load_retail(runtime, plan.events, advance=lambda n: progress.advance(task, n))
    with runtime.db.write() as connection:
        analyze(connection)
    console.print(", ".join(f"{loaded.counts[s]:,} {s}" for s in ("accepted", "duplicate", "rejected")))
    for outcome in loaded.rejected:
        console.print(f"[yellow]rejected[/yellow] {outcome.id}: " + "; ".join(str(e.message) for e in outcome.errors))
    done = expiry.run(runtime, now=retail.AS_OF, program_keys=[record.key])
    expired = {c: n for item in done for c, n in item.amount.items()}
    changes = review_program(runtime, record.key, retail.AS_OF)
    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        top = leaderboard(connection, record, compiled, "spend-all", limit=5, now=retail.AS_OF)["entries"]
    attempts = redeem_for(runtime, record.key, [e["id"] for e in top], ("preview-day", "gift-hamper", "voucher-25"))
    with runtime.db.read() as connection:
        report = liability(connection, record, compiled, now=retail.AS_OF)
        demo = RetailDemo(record.key, plan, loaded, expired, changes, attempts, report, compiled)
        _print_retail(console, connection, record, demo, top)
    return demo


def _print_retail(
    console: Console,
    connection: Connection,
    record: programs.ProgramRecord,
    demo: RetailDemo,
    top: list[dict[str, Any]],
) -> None:
    p, pos, lot = tables.participants.c, tables.positions.c, tables.lots.c
    as_of = f"{retail.AS_OF:%Y-%m-%d %H:%M} London"
    beans = next(c for c in demo.report["currencies"] if c["currency"] == "beans")
    expired = ", ".join(f"{n:,} {c}" for c, n in demo.expired.items()) or "nothing new"
    console.print(f"Expiry job as of {as_of}: {expired} expired; tiers job: {demo.tier_changes} changes")

    tiers_held: dict[str | None, int] = dict(
        connection.execute(select(p.tier, func.count()).where(p.program_id == record.id).group_by(p.tier)).all()
    )
    table = Table(title="customers by tier")
    table.add_column("tier")
    table.add_column("customers", justify="right")
    steps = demo.compiled.doc.tiers.steps if demo.compiled.doc.tiers else []
    for step in steps:
        table.add_row(step.name, f"{tiers_held.get(step.name, 0):,}")
    console.print(table)

    held = {
        r.external_id: r
        for r in connection.execute(
            select(p.external_id, p.tier, p.attributes, pos.available, pos.earned)
            .join(tables.positions, (pos.participant_id == p.id) & (pos.currency == "beans"))
            .where(p.program_id == record.id, p.external_id.in_([e["id"] for e in top]))
        )
    }
    table = Table(title="top customers by spend, all time, net of returns")
    table.add_column("#", justify="right")
    table.add_column("customer")
    table.add_column("country", no_wrap=True)
    for name in ("spend £", "tier", "beans earned", "beans held"):
        table.add_column(name, justify="right")
    for entry in top:
        row = held.get(entry["id"])
        table.add_row(
            str(entry["rank"]),
            entry["id"],
            row.attributes.get("country", "") if row else "",
            f"{entry['value']:,.2f}",
            row.tier if row else "",
            f"{row.earned:,}" if row else "0",
            f"{row.available:,}" if row else "0",
        )
    console.print(table)

    soon = retail.AS_OF + dt.timedelta(days=30)
    holders, amount = connection.execute(
        select(func.count(func.distinct(lot.participant_id)), func.coalesce(func.sum(lot.remaining), 0)).where(
            lot.program_id == record.id, lot.remaining > 0, lot.expires_at > retail.AS_OF, lot.expires_at <= soon
        )
    ).one()
    console.print(
        f"Beans expiring in the next 30 days (to {soon:%Y-%m-%d}): {int(amount):,}, held by {holders:,} customers"
    )

    plan = demo.plan
    whole = sum(1 for r in plan.refunds if r.share == retail.WHOLE)
    e, ledger = tables.events.c, tables.ledger_entries.c
    logged = connection.execute(
        select(func.count()).where(e.program_id == record.id, e.type == "purchase.refunded")
    ).scalar_one()
    taken = connection.execute(
        select(func.coalesce(func.sum(ledger.amount), 0)).where(
            ledger.program_id == record.id, ledger.kind == "reversal"
        )
    ).scalar_one()
    line = (
        f"Returns: {len({r.cancellation for r in plan.refunds}):,} cancellation invoices refund earlier purchases: "
        f"{logged:,} refunds in the log ({whole:,} of a whole purchase, {len(plan.refunds) - whole:,} partial), "
        f"£{sum(r.value for r in plan.refunds):,.2f} returned, {-int(taken):,} beans taken back; "
        f"{len(plan.unmatched):,} cancellations with no earlier purchase in the window dropped"
    )
    if plan.nothing_left:
        line += f", {len(plan.nothing_left):,} refunds found their purchase already refunded in full"
    console.print(line)

    rewards_tried = list(dict.fromkeys(a.reward for a in demo.attempts))
    table = Table(title=f"redemptions by the top customers on {retail.LAST_DAY}")
    table.add_column("customer")
    for reward in rewards_tried:
        table.add_column(reward)
    outcome = {(a.customer, a.reward): a for a in demo.attempts}
    for customer in dict.fromkeys(a.customer for a in demo.attempts):
        cells = []
        for reward in rewards_tried:
            a = outcome[(customer, reward)]
            ok = a.outcome in ("redeemed", "already redeemed")
            cells.append(f"[green]{a.outcome}[/green]" if ok else f"[yellow]{a.outcome}[/yellow]")
        table.add_row(customer, *cells)
    console.print(table)
    for a in demo.attempts:
        if a.outcome not in ("redeemed", "already redeemed"):
            console.print(f"  {a.customer} {a.reward}: {a.outcome} ({a.detail})")

    table = Table(title="liability report, beans")
    table.add_column("what")
    table.add_column("beans", justify="right")
    for label, value in (
        ("outstanding", beans["outstanding"]),
        ("spendable", beans["spendable"]),
        ("pending", beans["pending"]),
        ("arrears (owed back)", beans["arrears"]),
        ("holders", beans["holders"]),
        ("expiring within 30 days", beans["expiring"]["30d"]),
        ("expiring within 90 days", beans["expiring"]["90d"]),
        ("redeemed", sum(beans["redeemed_by_month"].values())),
    ):
        table.add_row(label, f"{value:,}")
    for month, n in beans["expired_by_month"].items():
        table.add_row(f"expired in {month}", f"{n:,}")
    console.print(table)
