"""Insights latency at scale: every ``GET …/insights/…`` analysis and a clawback over N participants.

It stores N generated events (``workload.generate`` through ``ingest``, untimed) for P participants in
acme-sales (kudos on), plants what the anti-gaming flags look for — reps with a burst of calls, reps who
stop just under the call cap, deals sent twice, kudos rings — then times, in this process, the function
behind each route on a read connection (what the route adds is JSON): engagement, fairness, segments,
churn, targets, flags, still possible, and one clawback (a write: ingestion of one reversal and the
audit entry). Each analysis runs twice; both times are printed (the first with a cold cache).

    python bench/insights.py                                   # 100,000 participants, 500,000 events, SQLite
    python bench/insights.py --participants 10000 --events 50000
    python bench/insights.py --keep /tmp/insights.db           # load once, rerun on the same file
    python bench/insights.py --database postgres
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ingest import (
    DEFAULT_POSTGRES,
    PROGRAM_FILE,
    PROGRAM_KEY,
    load,
    on_database,
    peak_rss_mb,
    setup,
)
from levelup.events.clawback import clawback
from levelup.events.ingest import batches, ingest
from levelup.insights import engagement, fairness, gaming, possible, segments, targets
from levelup.kudos import service as kudos
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables
from simulate import stored
from workload import START, generate

WINDOW = (START - dt.timedelta(days=1), START + dt.timedelta(days=100))  # every generated event
BLITZ_END = dt.datetime(2026, 11, 1, 4, 0, tzinfo=dt.UTC)  # october-blitz ends at midnight in New York
PLANTED = 50  # reps with each planted pattern
GIVEN = START + dt.timedelta(days=40)  # when the planted kudos are given: inside the window
KUDOS = "kudos: {currency: coins, budget: {amount: 1000, per: week}}\n"


def call(rep: str, event_id: str, at: dt.datetime, seconds: int) -> dict[str, Any]:
    data = {"kind": "call", "duration_s": seconds, "contact": event_id}
    return {"id": event_id, "type": "activity.logged", "participant": rep, "occurred_at": at.isoformat(), "data": data}


def planted(participants: int) -> list[dict[str, Any]]:
    """Bursts (4 quiet days of one call, then 15), days just under the cap (19 paid calls, 5 days), twice-sent
    deals: ``PLANTED`` reps each, spread over the population."""
    step = max(1, participants // (3 * PLANTED))
    events: list[dict[str, Any]] = []
    day = START + dt.timedelta(days=30, hours=15)
    for n in range(PLANTED):
        rep = f"rep-{(3 * n * step) % participants:05d}"
        for d in range(4):
            events.append(call(rep, f"burst-{n}-{d}", day + dt.timedelta(days=d), 45))
        events += [call(rep, f"burst-{n}-x{i}", day + dt.timedelta(days=7, minutes=i), 45) for i in range(15)]
        rep = f"rep-{((3 * n + 1) * step) % participants:05d}"
        for d in range(5):
            at = day + dt.timedelta(days=d)
            events += [call(rep, f"cap-{n}-{d}-{i}", at + dt.timedelta(minutes=i), 90) for i in range(19)]
        rep = f"rep-{((3 * n + 2) * step) % participants:05d}"
        deal = {"amount": 5000, "deal_id": f"D-twice-{n}"}
        for copy in range(2):
            when = (day + dt.timedelta(days=2, minutes=copy)).isoformat()
            events.append({"id": f"twice-{n}-{copy}", "type": "deal.won", "participant": rep, "occurred_at": when})
            events[-1]["data"] = deal
    return sorted(events, key=lambda e: e["occurred_at"])


def fill(url: str, args: argparse.Namespace) -> Runtime:
    runtime = Runtime.from_url(url)
    if stored(runtime) >= args.events:
        print("  reusing the stored events", flush=True)
        return runtime
    runtime.db.dispose()
    runtime = setup(url, args.participants)
    with runtime.db.write() as connection:
        programs.apply(connection, load_document(PROGRAM_FILE.read_bytes() + KUDOS.encode()), actor="bench")
    started = time.perf_counter()
    for i, batch in enumerate(batches(generate(args.events, args.participants), 1000)):
        ingest(runtime, PROGRAM_KEY, batch)
        if i % 100 == 99:
            print(f"  stored {(i + 1) * 1000:,} events ({time.perf_counter() - started:,.0f} s)", flush=True)
    for batch in batches(planted(args.participants), 1000):
        ingest(runtime, PROGRAM_KEY, batch)
    with runtime.db.write() as connection:
        record = programs.find(connection, PROGRAM_KEY)
        compiled = runtime.programs.compiled(connection, record)
        for n in range(PLANTED):  # rings: two reps trade kudos three times each way
            a, b = f"rep-{(7 * n) % args.participants:05d}", f"rep-{(7 * n + 3) % args.participants:05d}"
            for giver, receiver in [(a, b), (b, a)] * 3:
                kudos.give(
                    connection, record, compiled, giver=giver, receiver=receiver, amount=10, message="ty", now=GIVEN
                )
    print(f"  stored in {time.perf_counter() - started:,.1f} s (untimed)", flush=True)
    return runtime


def timed(runtime: Runtime, work: Callable[..., dict[str, Any]], **options: Any) -> tuple[float, float, Any]:
    """Two runs of an analysis on a read connection: (first s, second s, the answer)."""
    times = []
    for _ in range(2):
        started = time.perf_counter()
        with runtime.db.read() as connection:
            record = programs.find(connection, PROGRAM_KEY)
            body = work(connection, record, runtime.programs.compiled(connection, record), **options)
        times.append(time.perf_counter() - started)
    return times[0], times[1], body


def bench(url: str, args: argparse.Namespace) -> None:
    runtime = fill(url, args)
    start, end = WINDOW
    cases: list[tuple[str, Callable[..., dict[str, Any]], dict[str, Any], Callable[[Any], str]]] = [
        ("engagement (week)", engagement.engagement, {"start": start, "end": end}, lambda b: f"{b['active']:,} active"),
        (
            "fairness (revenue, 2026-10)",
            fairness.fairness,
            {"period": "2026-10", "metric": "revenue"},
            lambda b: f"gini {b['gini']}",
        ),
        ("segments", segments.rfm, {"as_of": end}, lambda b: f"{b['participants']:,} scored"),
        (
            "churn",
            lambda c, r, _, **o: segments.churn(c, r, **o),
            {"as_of": end},
            lambda b: f"{b['total']:,} scored",
        ),
        (
            "targets (five-a-week)",
            targets.targets,
            {"challenge": "five-a-week", "as_of": end},
            lambda b: f"{b['total']:,} targets",
        ),
        ("flags", gaming.flags, {"start": start, "end": end}, lambda b: f"{b['kinds']}"),
        ("possible (october-blitz)", possible.possible, {"as_of": _board_end(runtime)}, _contenders),
    ]
    rows = []
    for name, work, options, said in cases:
        first, second, body = timed(runtime, work, **options)
        rows.append((name, first, second, said(body)))
        print(f"  {name:30} {first:7.2f} s  {second:7.2f} s  {said(body)}", flush=True)
    started = time.perf_counter()
    done = clawback(runtime, PROGRAM_KEY, "twice-0-1", note="bench", actor="bench")
    one = time.perf_counter() - started
    runtime.db.dispose()
    print(f"\n  {args.participants:,} participants, {args.events:,} events (+ planted), {load()}")
    print(f"  {'analysis':30} {'first':>9} {'second':>9}")
    for name, first, second, said_text in rows:
        print(f"  {name:30} {first:7.2f} s {second:7.2f} s  {said_text}")
    print(f"  clawback of one event (write, audited): {one:.3f} s ({done['status']}, {done['taken']})")
    print(f"  peak RSS of this process {peak_rss_mb():,.0f} MB")


def _board_end(runtime: Runtime) -> dt.datetime:
    """Just after the last stored event of october-blitz: still possible reads the board as it stands, and
    refuses an earlier ``as_of`` (the generated events run past October)."""
    e = tables.events.c
    with runtime.db.read() as connection:
        query = select(e.occurred_at).where(e.occurred_at < BLITZ_END).order_by(e.occurred_at.desc()).limit(1)
        last: dt.datetime = connection.execute(query).scalar_one()
    return last + dt.timedelta(microseconds=1)


def _contenders(body: dict[str, Any]) -> str:
    return ", ".join(f"{c['challenge']}: {c['entrants']:,} entrants" for c in body["competitions"]) or "none open"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=100_000, help="participants (default 100,000)")
    parser.add_argument("--events", type=int, default=500_000, help="generated events (default 500,000)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=os.environ.get("LEVELUP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--keep", type=Path, help="SQLite file to load once and reuse (default: a temporary one)")
    args = parser.parse_args()
    print(
        f"Levelup insights benchmark: {args.participants:,} participants, {args.events:,} events, "
        f"{args.database}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {load()}",
        flush=True,
    )
    on_database(args, "insights", bench)


if __name__ == "__main__":
    main()
