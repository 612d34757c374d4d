"""In-process batch ingestion benchmark: the engine path against a plain-INSERT floor.

For each database (a temporary SQLite file, and a fresh PostgreSQL schema made
and dropped here) it:

1. applies the ``acme-sales`` example program and registers the participants (in
   teams, with a quota), untimed;
2. ingests generated events through :func:`levelup.events.ingest.ingest`, one
   call (one transaction) per batch, timing each call: the **engine** figure;
3. reads back every row the run produced (events, ledger entries, and the merged
   position, metric and rule-counter rows) and writes exactly those rows into a
   fresh copy of the schema with plain batched ``INSERT`` statements (SQLAlchemy
   Core executemany), same batch size, one transaction per batch, same
   durability settings: the **floor**, what any design must at least pay to
   store the same result; and once more through the DB-API ``executemany``
   directly (the **driver floor**, informative).

The engine run is bounded by ``--max-engine-seconds`` (default 45 s a
database; 0 for none) so a slow engine still gives figures in a few minutes.
Per batch it also lists the SQL the engine sends: calls, rows and driver time
by statement kind and table.

It prints figures and never asserts: the targets are reported, not enforced.
Each database runs in a child process of its own, so its peak RSS is its own.

    python bench/ingest.py                        # 100,000 events, SQLite then PostgreSQL
    python bench/ingest.py --only sqlite --events 20000
    python bench/ingest.py --only sqlite --profile  # cProfile of the engine path (figures inflated)
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, make_url, or_, select, text

from levelup.events.ingest import batches, ingest
from levelup.participants import repository as participants
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime
from levelup.storage import sql as storage_sql
from levelup.storage import tables as t
from workload import SEED, generate

ROOT = Path(__file__).resolve().parents[1]
PROGRAM_FILE = ROOT / "examples" / "acme-sales.yaml"
PROGRAM_KEY = "acme-sales"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
TEAMS = ("east", "west", "north", "south")

# Tables the setup fills (copied untimed into the floor database); every other table is run output.
SETUP_TABLES = {"programs", "program_versions", "participants", "teams", "memberships", "api_keys", "audit_log"}
# Tables the database's own triggers fill from the rows written (migration 0004): the floor does not copy them.
DERIVED_TABLES = {"rank_boards", "rank_rows", "rank_buckets"}

# issue 8's targets, on the 2-core machine the figures in bench/README.md come from
TARGET_SQLITE_EPS = 10_000
TARGET_FLOOR_RATIO = 0.5  # SQLite engine / floor
TARGET_POSTGRES_EPS = 4_000


# ---------------------------------------------------------------------------- data


# ---------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


_SQL_TABLE = re.compile(r"\b(?:INTO|UPDATE|FROM)\s+\"?(\w+)", re.IGNORECASE)
_LOOKUP_TABLE = re.compile(r"\b(?:JOIN|FROM)\s+(\w+)\s+t\b", re.IGNORECASE)


@dataclass
class StatementStats:
    """Statements the engine sends to the driver, by kind and table: calls, parameter sets, time.

    Listens below SQLAlchemy (``before/after_cursor_execute``) so Core statements and
    raw driver SQL (``exec_driver_sql``) are both counted; the time is the driver
    call's (the database's work plus the driver's), not SQLAlchemy's preparation.
    """

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    _started: list[tuple[tuple[str, str], float]] = field(default_factory=list)

    _real_fetch: Any = None

    def listen(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        # key lookups that read through the transaction's DB-API cursor (storage.sql._fetch) skip those events
        self._real_fetch = getattr(storage_sql, "_fetch", None)
        if self._real_fetch is not None:
            storage_sql._fetch = self._timed_fetch

    def forget(self, engine: Engine) -> None:
        event.remove(engine, "before_cursor_execute", self._before)
        event.remove(engine, "after_cursor_execute", self._after)
        if self._real_fetch is not None:
            storage_sql._fetch = self._real_fetch

    def _timed_fetch(self, connection: Any, statement: str, parameters: Any) -> Any:
        found = _LOOKUP_TABLE.search(statement)
        key = ("LOOKUP", found.group(1) if found else "-")
        started = time.perf_counter()
        rows = self._real_fetch(connection, statement, parameters)
        self.seconds[key] += time.perf_counter() - started
        self.calls[key] += 1
        self.rows[key] += len(rows)  # for a lookup: the rows found
        return rows

    def _before(
        self, _conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        words = statement.lstrip().split(None, 1)
        kind = words[0].upper() if words else "?"
        if kind == "INSERT" and "ON CONFLICT" in statement.upper():
            kind = "UPSERT" if "DO UPDATE" in statement.upper() else "INS-IGN"
        found = _SQL_TABLE.search(statement)
        key = (kind, found.group(1) if found else "-")
        self.calls[key] += 1
        if executemany:
            self.rows[key] += len(parameters)
        elif isinstance(parameters, tuple) and parameters and isinstance(parameters[0], list):
            self.rows[key] += len(parameters[0])  # one array a column (PostgreSQL's unnest): a row an element
        else:
            self.rows[key] += 1
        self._started.append((key, time.perf_counter()))

    def _after(self, *_args: Any) -> None:
        if self._started:
            key, started = self._started.pop()
            self.seconds[key] += time.perf_counter() - started

    def table(self) -> list[tuple[str, str, int, int, float]]:
        return sorted(
            (
                (kind, table, self.calls[(kind, table)], self.rows[(kind, table)], self.seconds[(kind, table)])
                for kind, table in self.calls
            ),
            key=lambda s: (-s[4], s[0], s[1]),
        )


@dataclass
class Floor:
    """One way of writing the engine's rows without the engine, and what it took."""

    name: str
    latencies: list[float] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(self.latencies)


@dataclass
class Result:
    database: str
    events: int = 0
    planned: int = 0
    batch: int = 0
    skipped: str | None = None
    stopped_early: bool = False
    engine_latencies: list[float] = field(default_factory=list)
    core: Floor = field(default_factory=lambda: Floor("floor: SQLAlchemy Core executemany"))
    driver: Floor = field(default_factory=lambda: Floor("driver floor: DB-API executemany"))
    floor_rows: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    rss_before_mb: float = 0.0
    rss_engine_mb: float = 0.0
    rss_end_mb: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    statements: list[tuple[str, str, int, int, float]] = field(default_factory=list)

    @property
    def engine_s(self) -> float:
        return sum(self.engine_latencies)

    def eps(self, seconds: float) -> float:
        return self.events / seconds if seconds else 0.0

    @property
    def engine_eps(self) -> float:
        return self.eps(self.engine_s)

    @property
    def floor_eps(self) -> float:
        return self.eps(self.core.seconds)

    @property
    def ratio(self) -> float:
        return self.engine_eps / self.floor_eps if self.floor_eps else 0.0


# ---------------------------------------------------------------------------- databases


def _sqlite_url(directory: str, name: str) -> str:
    return f"sqlite:///{Path(directory) / name}"


def _postgres_engine(url: str) -> Engine:
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"), connect_args={"connect_timeout": 5})


def _schema_url(url: str, schema: str) -> str:
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


def postgres_unreachable(url: str) -> str | None:
    """Why PostgreSQL at ``url`` cannot be used, or None when it answers."""
    engine = _postgres_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        engine.dispose()
    return None


def on_database(args: argparse.Namespace, name: str, bench: Callable[[str, argparse.Namespace], None]) -> None:
    """Run ``bench`` on SQLite (``--keep``'s file, else a temporary one) or, with ``--database postgres``, in
    a fresh schema of ``--postgres`` dropped afterwards (the scripts that store once and measure reads)."""
    if args.database == "sqlite":
        if args.keep:
            bench(f"sqlite:///{args.keep}", args)
            return
        with tempfile.TemporaryDirectory(prefix="levelup-bench-") as directory:
            bench(_sqlite_url(directory, f"{name}.db"), args)
        return
    reason = postgres_unreachable(args.postgres)
    if reason:
        sys.exit(f"PostgreSQL unreachable: {reason}")
    schema = f"bench_{name}_{uuid.uuid4().hex[:10]}"
    admin = _postgres_engine(args.postgres)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        bench(_schema_url(args.postgres, schema), args)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


# ---------------------------------------------------------------------------- phases


def setup(url: str, n_participants: int) -> Runtime:
    """Migrate, apply the example program, register the participants in teams with a quota."""
    runtime = Runtime.from_url(url)
    doc = load_document(PROGRAM_FILE.read_bytes())
    rng = random.Random(SEED + 1)
    with runtime.db.write() as connection:
        programs.apply(connection, doc, actor="bench")
        record = programs.find(connection, PROGRAM_KEY)
        for i in range(n_participants):
            participants.set_profile(
                connection,
                record.id,
                f"rep-{i:05d}",
                name=f"Rep {i}",
                teams=[TEAMS[i % len(TEAMS)]],
                attributes={"quota": rng.choice([25_000, 50_000, 100_000]), "region": TEAMS[i % len(TEAMS)]},
            )
    return runtime


def run_engine(runtime: Runtime, args: argparse.Namespace, result: Result) -> None:
    """Ingest the generated events through the engine, one ``ingest()`` call (transaction) per batch."""
    stats = StatementStats()
    stats.listen(runtime.db.engine)
    profiler = cProfile.Profile() if args.profile else None
    outcomes: Counter[str] = Counter()
    started_all = time.perf_counter()
    for batch in batches(generate(args.events, args.participants), args.batch):
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        done = ingest(runtime, PROGRAM_KEY, batch)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
        result.engine_latencies.append(elapsed)
        outcomes.update(o.status for o in done)
        if args.max_engine_seconds and time.perf_counter() - started_all > args.max_engine_seconds:
            result.stopped_early = sum(outcomes.values()) < args.events
            break
    stats.forget(runtime.db.engine)
    result.outcomes = dict(outcomes)
    result.events = sum(outcomes.values())
    result.statements = stats.table()
    if profiler is not None:
        print_profile(profiler, args.profile_top, args.profile_out)


def _short(line: str) -> str:
    """A pstats line with the virtualenv and repository prefixes cut from file names."""
    for prefix in sorted({*sys.path, str(ROOT)}, key=len, reverse=True):
        if prefix and prefix.startswith("/") and len(prefix) > 1:
            line = line.replace(prefix.rstrip("/") + "/", "")
    return line


def print_profile(profiler: cProfile.Profile, top: int, out: str | None) -> None:
    if out:
        profiler.dump_stats(out)
        print(f"  cProfile stats written to {out}")
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats(order).print_stats(top)
        print(f"\n  --- cProfile of the engine path, top {top} by {order} ---")
        lines = buffer.getvalue().splitlines()
        start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        for line in lines[start:]:
            if line.strip():
                print("  " + _short(line))


Batch = list[tuple[Table, list[dict[str, Any]]]]
Writer = Callable[[Connection, Table, list[dict[str, Any]]], None]


class EngineRows:
    """The rows the engine run left in its database, read back batch by batch (untimed).

    Events go in ingestion order, ``batch`` a batch; rows that belong to an event
    (an ``event_seq`` column: ledger entries) with their event; the merged
    projection rows (positions, metric totals, rule counters…, as they stand at
    the end of the run) spread evenly over the batches.
    """

    def __init__(self, runtime: Runtime, batch: int) -> None:
        self.db = runtime.db
        with self.db.read() as connection:
            seqs = connection.execute(select(t.events.c.seq).order_by(t.events.c.seq)).scalars().all()
            self.counts = {
                table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in t.metadata.sorted_tables
            }
        self.bounds = [(seqs[i], seqs[min(i + batch, len(seqs)) - 1]) for i in range(0, len(seqs), batch)] or [(0, 0)]
        self.output = [
            table
            for table in t.metadata.sorted_tables
            if table.name not in SETUP_TABLES | DERIVED_TABLES and self.counts[table.name]
        ]

    def __len__(self) -> int:
        return len(self.bounds)

    def setup(self) -> Batch:
        with self.db.read() as connection:
            return [
                (table, [dict(r._mapping) for r in connection.execute(select(table))])
                for table in t.metadata.sorted_tables
                if table.name in SETUP_TABLES and self.counts[table.name]
            ]

    def batch(self, index: int) -> Batch:
        low, high = self.bounds[index]
        last = index == len(self.bounds) - 1
        out: Batch = []
        with self.db.read() as connection:
            for table in self.output:
                query = select(table).order_by(*table.primary_key.columns)
                if table.name == "events":
                    query = query.where(table.c.seq.between(low, high))
                elif "event_seq" in table.c:
                    in_batch = table.c.event_seq.between(low, high)
                    query = query.where(or_(in_batch, table.c.event_seq.is_(None)) if last else in_batch)
                else:
                    size = -(-self.counts[table.name] // len(self.bounds))
                    query = query.limit(size).offset(index * size)
                rows = [dict(r._mapping) for r in connection.execute(query)]
                if rows:
                    out.append((table, rows))
        return out


def write_core(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """The floor: a plain Core INSERT, executemany."""
    connection.execute(table.insert(), rows)


class DriverWriter:
    """The driver floor: the same INSERTs compiled once, values bound with the column types'
    own processors (JSON, UTC datetimes) and handed to the DB-API ``executemany``: what the
    database and its driver cost, without SQLAlchemy's per-row statement machinery."""

    def __init__(self) -> None:
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]], bool]] = {}

    def __call__(self, connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
        dialect = connection.dialect
        columns = tuple(rows[0])
        key = (table.name, columns)
        if key not in self._compiled:
            compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
            names = list(compiled.positiontup or []) if compiled.positional else list(compiled.binds)
            processors = [(n, compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names]
            self._compiled[key] = (str(compiled), processors, compiled.positional)
        sql, processors, positional = self._compiled[key]
        if positional:
            params: list[Any] = [tuple(p(row[n]) if p else row[n] for n, p in processors) for row in rows]
        else:
            params = [{n: p(row[n]) if p else row[n] for n, p in processors} for row in rows]
        connection.exec_driver_sql(sql, params)


def run_floors(engine_rows: EngineRows, core_url: str, driver_url: str, result: Result) -> None:
    """Write the engine's rows again, batch by batch, into two fresh copies of the schema."""
    targets: list[tuple[Floor, Runtime, Writer]] = [
        (result.core, Runtime.from_url(core_url), write_core),
        (result.driver, Runtime.from_url(driver_url), DriverWriter()),
    ]
    try:
        setup_rows = engine_rows.setup()
        for _, floor, _ in targets:
            with floor.db.write() as connection:
                for table, rows in setup_rows:
                    connection.execute(table.insert(), rows)
        del setup_rows
        totals: Counter[str] = Counter()
        for index in range(len(engine_rows)):
            batch = engine_rows.batch(index)
            for table, rows in batch:
                totals[table.name] += len(rows)
            for measure, floor, write in targets:
                started = time.perf_counter()
                with floor.db.write() as connection:
                    for table, rows in batch:
                        write(connection, table, rows)
                measure.latencies.append(time.perf_counter() - started)
        result.floor_rows = dict(totals)
        for measure, floor, _ in targets:
            with floor.db.read() as connection:
                for table in engine_rows.output:
                    copied = connection.execute(select(func.count()).select_from(table)).scalar_one()
                    if copied != engine_rows.counts[table.name]:
                        measure.mismatches.append(
                            f"{table.name}: {copied:,} rows, the engine has {engine_rows.counts[table.name]:,}"
                        )
    finally:
        for _, floor, _ in targets:
            floor.db.dispose()


# ---------------------------------------------------------------------------- per database


def bench_database(database: str, args: argparse.Namespace) -> Result:
    """One database, in its own process: setup, engine run, the two floors."""
    result = Result(database, planned=args.events, batch=args.batch)
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="levelup-bench-", dir=args.tmpdir) as directory:
            engine_url, core_url, driver_url = (
                _sqlite_url(directory, f"{n}.db") for n in ("engine", "floor", "driver")
            )
            _bench(result, engine_url, core_url, driver_url, args)
        return result
    shown = make_url(args.postgres).render_as_string(hide_password=True)
    reason = postgres_unreachable(args.postgres)
    if reason:
        result.skipped = f"PostgreSQL at {shown} unreachable ({reason})"
        print(f"[postgres] skipped: {result.skipped}", flush=True)
        return result
    tag = uuid.uuid4().hex[:10]
    schemas = [f"bench_{tag}_{name}" for name in ("engine", "floor", "driver")]
    admin = _postgres_engine(args.postgres)
    try:
        with admin.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine_url, core_url, driver_url = (_schema_url(args.postgres, schema) for schema in schemas)
        _bench(result, engine_url, core_url, driver_url, args)
    finally:
        with admin.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return result


def _bench(result: Result, engine_url: str, core_url: str, driver_url: str, args: argparse.Namespace) -> None:
    name = result.database
    mark = time.perf_counter()

    def phase(label: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        result.phases[label] = now - mark
        mark = now

    print(
        f"[{name}] setup: program {PROGRAM_KEY}, {args.participants:,} participants in {len(TEAMS)} teams", flush=True
    )
    runtime = setup(engine_url, args.participants)
    phase("setup")
    try:
        result.rss_before_mb = peak_rss_mb()
        print(f"[{name}] engine: {args.events:,} events in batches of {args.batch:,}", flush=True)
        run_engine(runtime, args, result)
        result.rss_engine_mb = peak_rss_mb()
        phase("engine")
        print(f"[{name}] floors: the same rows again with plain INSERTs, one transaction a batch", flush=True)
        run_floors(EngineRows(runtime, args.batch), core_url, driver_url, result)
        phase("floors")
    finally:
        runtime.db.dispose()
    result.rss_end_mb = peak_rss_mb()
    print_result(result)


# ---------------------------------------------------------------------------- report


def _latency(latencies: Sequence[float]) -> str:
    ms = [x * 1000 for x in latencies]
    return f"p50 {percentile(ms, 50):.1f} ms   p99 {percentile(ms, 99):.1f} ms   max {max(ms):.1f} ms"


def print_result(r: Result) -> None:
    n_batches = len(r.engine_latencies)
    early = f"  (stopped by --max-engine-seconds after {r.events:,} of {r.planned:,})" if r.stopped_early else ""
    print(f"\n=== {r.database}: {r.events:,} events, batches of {r.batch:,} ({n_batches} transactions){early} ===")
    print(f"  outcomes                 {', '.join(f'{n:,} {s}' for s, n in sorted(r.outcomes.items()))}")
    print(f"  engine  events/s         {r.engine_eps:>10,.0f}   ({r.engine_s:.2f} s in ingest())")
    print(f"  engine  batch latency    {_latency(r.engine_latencies)}")
    quarters = [r.engine_latencies[i * n_batches // 4 : (i + 1) * n_batches // 4] for i in range(4)]
    means = "   ".join(f"q{i + 1} {1000 * sum(q) / len(q):.0f}" for i, q in enumerate(quarters) if q)
    print(f"  engine  batch mean ms    {means}   (by quarter of the run: growth = cost of a bigger database)")
    print(f"  floor   events/s         {r.floor_eps:>10,.0f}   ({r.core.seconds:.2f} s, SQLAlchemy Core executemany)")
    print(f"  floor   batch latency    {_latency(r.core.latencies)}")
    print(f"  engine / floor           {r.ratio:>10.2f}")
    driver_eps = r.eps(r.driver.seconds)
    print(
        f"  driver floor events/s    {driver_eps:>10,.0f}   ({r.driver.seconds:.2f} s, DB-API executemany, informative)"
    )
    print(f"  engine / driver floor    {r.engine_eps / driver_eps if driver_eps else 0:>10.2f}")
    for floor in (r.core, r.driver):
        for mismatch in floor.mismatches:
            print(f"  WARNING {floor.name}: {mismatch}")
    rows = ", ".join(f"{table} {n:,}" for table, n in r.floor_rows.items())
    per_event = sum(r.floor_rows.values()) / r.events if r.events else 0
    print(f"  floor rows               {sum(r.floor_rows.values()):,} = {per_event:.2f} an event ({rows})")
    print(
        f"  peak RSS                 {r.rss_engine_mb:,.0f} MB after the engine run "
        f"({r.rss_before_mb:,.0f} MB after setup, {r.rss_end_mb:,.0f} MB at the end)"
    )
    print(f"  wall time                {', '.join(f'{k} {v:.1f} s' for k, v in r.phases.items())}")
    in_driver = sum(st[4] for st in r.statements)
    print(
        f"  engine SQL a batch       {1000 * in_driver / max(n_batches, 1):.0f} ms in the driver of "
        f"{1000 * r.engine_s / max(n_batches, 1):.0f} ms (kind, table: calls, parameter sets, driver ms; "
        f"over {n_batches} batches)"
    )
    for kind, table, calls, rows_n, seconds in r.statements:
        print(
            f"    {kind:<7} {table:<22} {calls / n_batches:>5.1f} calls {rows_n / n_batches:>8.1f} rows "
            f"{1000 * seconds / n_batches:>8.1f} ms"
        )


def print_summary(results: Sequence[Result]) -> None:
    print("\n=== summary ===")
    header = ("engine ev/s", "floor ev/s", "ratio", "driver ev/s", "p50 ms", "p99 ms", "RSS MB")
    print(f"  {'database':<10} " + " ".join(f"{h:>12}" for h in header))
    for r in results:
        if r.skipped:
            print(f"  {r.database:<10} skipped: {r.skipped}")
            continue
        ms = [x * 1000 for x in r.engine_latencies]
        figures = (
            f"{r.engine_eps:,.0f}",
            f"{r.floor_eps:,.0f}",
            f"{r.ratio:.2f}",
            f"{r.eps(r.driver.seconds):,.0f}",
            f"{percentile(ms, 50):.1f}",
            f"{percentile(ms, 99):.1f}",
            f"{r.rss_engine_mb:,.0f}",
        )
        print(f"  {r.database:<10} " + " ".join(f"{f:>12}" for f in figures))
    for r in results:
        if r.skipped:
            continue
        if r.database == "sqlite":
            verdict = "meets" if r.engine_eps >= TARGET_SQLITE_EPS else "MISSES"
            print(f"  target SQLite engine >= {TARGET_SQLITE_EPS:,} events/s: {verdict} ({r.engine_eps:,.0f})")
            verdict = "meets" if r.ratio >= TARGET_FLOOR_RATIO else "MISSES"
            print(
                f"  target SQLite engine/floor >= {TARGET_FLOOR_RATIO}: {verdict} "
                f"({r.engine_eps:,.0f} / {r.floor_eps:,.0f} = {r.ratio:.2f})"
            )
        else:
            verdict = "meets" if r.engine_eps >= TARGET_POSTGRES_EPS else "MISSES"
            print(
                f"  target PostgreSQL engine >= {TARGET_POSTGRES_EPS:,} events/s: {verdict} ({r.engine_eps:,.0f}; "
                f"floor {r.floor_eps:,.0f}, ratio {r.ratio:.2f})"
            )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events to ingest (default 100,000)")
    parser.add_argument("--participants", type=int, default=1_000, help="participants (default 1,000)")
    parser.add_argument("--batch", type=int, default=1_000, help="events a batch / transaction (default 1,000)")
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="run one database only")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LEVELUP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="PostgreSQL URL; fresh schemas are made there and dropped (default: $LEVELUP_BENCH_POSTGRES_URL or local)",
    )
    parser.add_argument(
        "--max-engine-seconds",
        type=float,
        default=45.0,
        help="stop the engine run of a database after this long, 0 for no bound (default 45)",
    )
    parser.add_argument("--tmpdir", default=None, help="where the SQLite files go (default: the system temp dir)")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine path (slows it down)")
    parser.add_argument("--profile-top", type=int, default=30, help="functions to list with --profile")
    parser.add_argument("--profile-out", default=None, help="also write the pstats file here")
    args = parser.parse_args(argv)
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be 1..1000 (the engine's batch limit)")
    if args.events < 1 or args.participants < 1:
        parser.error("--events and --participants must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    databases = [args.only] if args.only else ["sqlite", "postgres"]
    print(
        f"Levelup ingest benchmark: {args.events:,} events, {args.participants:,} participants, "
        f"batches of {args.batch:,}, program {PROGRAM_KEY}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{load()}",
        flush=True,
    )
    results = []
    for database in databases:
        # a fresh process per database: its peak RSS and caches are its own
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            results.append(pool.submit(bench_database, database, args).result())
        sys.stdout.flush()
    print_summary(results)
    print(f"  {load()} (other processes on the machine lower every figure)")


if __name__ == "__main__":
    main()
