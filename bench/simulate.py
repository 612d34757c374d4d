"""Simulation benchmark: events/s of ``levelup simulate`` over N stored events, next to a floor.

It stores N generated events (the stream of ``workload.generate``, through ``ingest``, untimed) in
acme-sales, then, in the same run and process:

1. the **floor**: reading the same events from the database in ingestion order, as the simulation
   reads them (``replay.stored_events``: the same query, chunks, a server-side cursor on PostgreSQL),
   without scoring;
2. the **simulation**: :func:`levelup.insights.simulate.run` with a draft doubling every XP award, so
   every event is scored twice (the document in force and the draft), then the periods closed and the
   report built: once in this process, once with worker processes sharing the participants
   (``parallel=True``, what ``levelup simulate`` does with 2 CPUs or more: a worker a CPU, each reading
   the events of its share of the participants itself and scoring them by both documents).

It prints events/s of each, the time extrapolated to 1,000,000 events (linear: the work is per event,
the memory per participant) and, with ``--profile``, the cProfile top functions of the simulation.
It never asserts: the target (1,000,000 events in under 60 s, issue 12) is reported, not enforced.

    python bench/simulate.py                                  # 100,000 events on SQLite
    python bench/simulate.py --events 20000 --profile
    python bench/simulate.py --keep /tmp/sim.db --events 1000000   # load once, rerun on the same file
    python bench/simulate.py --keep /tmp/sim.db --events 1000000 --workers-only   # what levelup simulate does
    python bench/simulate.py --database postgres
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from ingest import (
    DEFAULT_POSTGRES,
    PROGRAM_FILE,
    PROGRAM_KEY,
    load,
    on_database,
    peak_rss_mb,
    print_profile,
    setup,
)
from levelup.events.ingest import batches, ingest
from levelup.events.replay import stored_events
from levelup.insights import simulate as sim
from levelup.programs import service as programs
from levelup.programs.document import ProgramDocument
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import tables as t
from workload import START, generate

WINDOW = (START - dt.timedelta(days=1), START + dt.timedelta(days=400))  # every generated event
MILLION = 1_000_000


def stored(runtime: Runtime) -> int:
    with runtime.db.read() as connection:
        try:
            record = programs.find(connection, PROGRAM_KEY)
        except Exception:
            return 0
        return int(connection.execute(select(func.count()).where(t.events.c.program_id == record.id)).scalar_one())


def fill(url: str, args: argparse.Namespace) -> Runtime:
    """The database with N events stored (kept from an earlier run with --keep when it holds them)."""
    runtime = Runtime.from_url(url)
    have = stored(runtime)
    if have >= args.events:
        print(f"  reusing {have:,} stored events", flush=True)
        return runtime
    if have:
        sys.exit(f"the database holds {have:,} events, fewer than --events: use another --keep file")
    runtime.db.dispose()
    runtime = setup(url, args.participants)
    started = time.perf_counter()
    for i, batch in enumerate(batches(generate(args.events, args.participants), 1000)):
        ingest(runtime, PROGRAM_KEY, batch)
        if i % 100 == 99:
            print(f"  stored {(i + 1) * 1000:,} events ({time.perf_counter() - started:,.0f} s)", flush=True)
    print(f"  stored {args.events:,} events in {time.perf_counter() - started:,.1f} s (untimed)", flush=True)
    return runtime


def draft() -> ProgramDocument:
    body = load_document(PROGRAM_FILE.read_bytes()).model_dump(mode="json", by_alias=True, exclude_none=True)
    for rule in body["rules"]:
        rule["award"] = {c: f"2 * ({a})" if c == "xp" else a for c, a in rule["award"].items()}
    return ProgramDocument.model_validate(body)


def floor(runtime: Runtime) -> tuple[int, float]:
    started = time.perf_counter()
    with runtime.db.read() as connection:
        record = programs.find(connection, PROGRAM_KEY)
        n = sum(1 for _ in stored_events(connection, record.id, start=WINDOW[0], end=WINDOW[1]))
    return n, time.perf_counter() - started


def timed(runtime: Runtime, n: int, *, parallel: bool, profile: bool) -> tuple[float, cProfile.Profile | None]:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = sim.run(runtime, PROGRAM_KEY, draft(), *WINDOW, parallel=parallel)
    if profiler is not None:
        profiler.disable()
    assert report["window"]["events"] == n
    return time.perf_counter() - started, profiler


def bench(url: str, args: argparse.Namespace) -> None:
    runtime = fill(url, args)
    n, read_s = floor(runtime)
    one_s, profiler = timed(runtime, n, parallel=False, profile=args.profile) if not args.workers_only else (0, None)
    two_s, _ = timed(runtime, n, parallel=True, profile=False)
    runtime.db.dispose()
    print(f"\n  {n:,} events, {args.participants:,} participants, {load()}")
    print(f"  floor (read the events, no scoring):      {read_s:7.2f} s  {n / read_s:10,.0f} events/s")
    if one_s:
        print(f"  simulation, one process (two documents):  {one_s:7.2f} s  {n / one_s:10,.0f} events/s")
        print(f"  scoring one document, an event: {(one_s - read_s) / 2 / n * 1e6:,.0f} µs")
    print(f"  simulation, {sim.workers()} workers sharing participants: {two_s:7.2f} s  {n / two_s:10,.0f} events/s")
    print(
        f"  1,000,000 events, extrapolated: floor {read_s * MILLION / n:,.0f} s, "
        + (f"one process {one_s * MILLION / n:,.0f} s, " if one_s else "")
        + f"workers {two_s * MILLION / n:,.0f} s (target 60 s); peak RSS of this process {peak_rss_mb():,.0f} MB"
    )
    if profiler is not None:
        print_profile(profiler, args.profile_top, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events stored and simulated (default 100,000)")
    parser.add_argument("--participants", type=int, default=1_000, help="participants (default 1,000)")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=os.environ.get("LEVELUP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--keep", type=Path, help="SQLite file to load once and reuse (default: a temporary one)")
    parser.add_argument("--profile", action="store_true", help="cProfile the one-process simulation (slower)")
    parser.add_argument("--workers-only", action="store_true", help="time only the floor and the workers")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()
    print(
        f"Levelup simulation benchmark: {args.events:,} events, {args.participants:,} participants, "
        f"{args.database}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {load()}",
        flush=True,
    )
    on_database(args, "sim", bench)


if __name__ == "__main__":
    main()
