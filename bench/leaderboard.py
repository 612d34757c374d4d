"""Leaderboard benchmark: top-10, around= and rank of one participant at 100,000 and 1,000,000
participants, on SQLite and PostgreSQL, next to the same query done naively.

For each database and size, in a fresh SQLite file or PostgreSQL schema (dropped at the end):

1. **load** (timed, not a target): the ``acme-sales`` example program without its leaderboards,
   N participants and N ``metric_totals`` rows for ``revenue`` in ``2026-11`` (the
   ``revenue-month`` board), written in bulk (SQLite ``executemany``, PostgreSQL ``COPY``),
   through the triggers: with no board registered they only look the board up;
2. **fill** (timed): the program again, with its leaderboards. The new version registers the
   plain boards and its trigger copies the N rows into ``rank_rows`` and counts them into
   ``rank_buckets`` (what happens when a board is added to a big program). On PostgreSQL the
   tables are then vacuumed and analyzed, as autovacuum does after a bulk insert. The first
   page and one rank are checked against a sort done here, and the total against N;
3. **queries**, each in a read transaction of its own, through the service functions the
   HTTP route calls (``levelup.leaderboards.service``), at participants picked uniformly over
   the ranks (and among the last 0.2% for "deep"):

   - top-10: ``leaderboard(limit=10)``; naive: ``ORDER BY value DESC, id LIMIT 10`` over the
     board's ``metric_totals`` rows (a sort of all of them);
   - page at offset ~99%: ``leaderboard(offset=k, limit=10)``; naive: ``… LIMIT 10 OFFSET k``;
   - around=: ``leaderboard(around=p, limit=10)``, 10 each side; naive: ``rank()`` and
     ``row_number()`` over the whole board, then the 21 rows around p;
   - rank of one: ``standing(p)`` (rank, value, total); naive: ``count(*) + 1 WHERE value > x``,
     a scan of the board's rows;
   - rank of one, deep (ranks past 99.8%): the same; and the count over the ordered index of
     ``rank_rows``, which walks the index up to the rank (what the issue measured).

   The previous implementation (every row of the board and every participant loaded and
   ranked in Python) is timed too, a few times, as ``python sort``.

Latencies are p50/p99 of ``--samples`` calls (naive ones: ``--naive-samples``), each loop
stopped after ``--max-seconds``. The target (rank of one p99 <= 10 ms at 1,000,000 on
PostgreSQL) is printed as ``meets`` or ``MISSES``. It prints figures and never asserts.

    python bench/leaderboard.py                                  # SQLite and PostgreSQL, 100k and 1M
    python bench/leaderboard.py --only sqlite --sizes 100000
    python bench/leaderboard.py --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import io
import math
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, make_url, text

from levelup.leaderboards import service
from levelup.programs import service as programs
from levelup.programs.validation import load_document
from levelup.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
ACME = (ROOT / "examples" / "acme-sales.yaml").read_text()
KEY = "acme-sales"
BOARD, METRIC, PERIOD = "revenue-month", "revenue", "2026-11"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_MS = 10.0  # rank of one participant, p99, 1,000,000 participants, PostgreSQL
SEED = 20261130
ON_BOARD = "program_id = :p AND metric = 'revenue' AND period = '2026-11' AND subject_kind = 'p'"
TOP_NAIVE = f"SELECT subject_id, value FROM metric_totals WHERE {ON_BOARD} ORDER BY value DESC, subject_id LIMIT 10"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] if ordered else math.nan


def board_values(n: int) -> list[float]:
    """Revenue as a month of sales might have it: log-normal around 20,000 (cents), 2% on round
    thousands (ties), 0.1% at zero (a reversed deal)."""
    rng = random.Random(SEED + n)
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.001:
            out.append(0.0)
        elif roll < 0.021:
            out.append(float(rng.randrange(1, 51) * 1000))
        else:
            out.append(round(rng.lognormvariate(math.log(20_000), 1.2), 2))
    return out


# ---------------------------------------------------------------------------- databases


@dataclass
class Target:
    name: str
    url: str
    cleanup: Callable[[], None] = lambda: None


def sqlite_target(directory: str) -> Target:
    path = Path(directory) / f"leaderboard-{uuid.uuid4().hex[:8]}.db"

    def cleanup() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    return Target("sqlite", f"sqlite:///{path}", cleanup)


def postgres_target(url: str) -> Target | str:
    """A fresh schema of its own, or why PostgreSQL cannot be used."""
    schema = f"bench_lb_{uuid.uuid4().hex[:10]}"
    admin = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # unreachable: say so and go on
        admin.dispose()
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"

    def cleanup() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    scoped = (
        make_url(url).set(drivername="postgresql+psycopg").update_query_dict({"options": f"-csearch_path={schema}"})
    )
    return Target("postgres", scoped.render_as_string(hide_password=False), cleanup)


def apply(runtime: Runtime, document: str) -> programs.ProgramRecord:
    with runtime.db.write() as connection:
        record, _ = programs.apply(connection, load_document(document, program=KEY), actor="bench")
    return record


def load(runtime: Runtime, program_id: int, values: Sequence[float]) -> list[int]:
    """Participants rep-0000000… and their revenue rows, in bulk; returns their internal ids in order."""
    n = len(values)
    names = [f"rep-{i:07d}" for i in range(n)]
    with runtime.db.write() as connection:
        if runtime.db.is_sqlite:
            connection.exec_driver_sql(
                "INSERT INTO participants (program_id, external_id, name, attributes, created_at) "
                "VALUES (?, ?, ?, '{}', '2026-11-01 00:00:00.000000')",
                [(program_id, name, f"Rep {i}") for i, name in enumerate(names)],
            )
        else:
            copy(
                connection,
                "participants (program_id, external_id, name, attributes, created_at)",
                ((program_id, name, f"Rep {i}", "{}", "2026-11-01T00:00:00Z") for i, name in enumerate(names)),
            )
        ids = dict(
            connection.execute(
                text("SELECT external_id, id FROM participants WHERE program_id = :p"), {"p": program_id}
            ).all()
        )
        subjects = [int(ids[name]) for name in names]
        rows = ((program_id, METRIC, PERIOD, "p", s, v) for s, v in zip(subjects, values, strict=True))
        if runtime.db.is_sqlite:
            connection.exec_driver_sql("INSERT INTO metric_totals VALUES (?, ?, ?, ?, ?, ?)", list(rows))
        else:
            copy(connection, "metric_totals (program_id, metric, period, subject_kind, subject_id, value)", rows)
    return subjects


def copy(connection: Connection, target: str, rows: Any) -> None:
    """PostgreSQL COPY … FROM STDIN, text format (row triggers fire as for INSERT)."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {target} FROM STDIN") as out:
        buffer = io.StringIO()
        for i, row in enumerate(rows, 1):
            buffer.write("\t".join(str(v) for v in row) + "\n")
            if i % 50_000 == 0:
                out.write(buffer.getvalue())
                buffer = io.StringIO()
        out.write(buffer.getvalue())


# ---------------------------------------------------------------------------- measuring


@dataclass
class Figure:
    query: str
    fast: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    naive_kind: str = ""
    index_walk: list[float] = field(default_factory=list)  # rank of one: count over the ordered index
    stopped: bool = False


def timed(calls: Sequence[Callable[[], Any]], budget: float) -> tuple[list[float], bool]:
    """Run the calls in order until done or ``budget`` seconds passed; seconds each, and whether stopped."""
    out: list[float] = []
    started = time.perf_counter()
    for call in calls:
        if time.perf_counter() - started > budget:
            return out, True
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out, False


@dataclass
class Run:
    database: str
    size: int
    load_s: float = 0.0
    fill_s: float = 0.0
    check: str = ""
    figures: list[Figure] = field(default_factory=list)
    python_sort: list[float] = field(default_factory=list)
    error: str | None = None


def bench(target: Target, size: int, args: argparse.Namespace) -> Run:
    run = Run(target.name, size)
    runtime = Runtime.from_url(target.url)
    try:
        measure(runtime, run, args)
    finally:
        runtime.db.dispose()
        target.cleanup()
    return run


def measure(runtime: Runtime, run: Run, args: argparse.Namespace) -> None:
    size = run.size
    values = board_values(size)
    # A goal on monthly revenue in both versions: the month's totals are kept before the boards come
    # (a version that keeps other metric periods rebuilds them from the event log, and these rows have
    # no events behind them).
    keep = "challenges:\n  - {key: bench-month, metric: revenue, target: 1000000000000, every: month}\n"
    full = ACME.replace("challenges:\n", keep, 1)
    bare = re.sub(r"(?ms)^leaderboards:\n(  - .*\n)+", "", full)
    record = apply(runtime, bare)
    started = time.perf_counter()
    subjects = load(runtime, record.id, values)
    run.load_s = time.perf_counter() - started
    started = time.perf_counter()
    record = apply(runtime, full)
    run.fill_s = time.perf_counter() - started
    if not runtime.db.is_sqlite:  # what autovacuum does after a bulk insert: statistics, visibility map
        with runtime.db.engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("participants", "metric_totals", "rank_rows", "rank_buckets"):
                autocommit.exec_driver_sql(f"VACUUM ANALYZE {table}")

    order = sorted(range(size), key=lambda i: (-values[i], subjects[i]))  # board order
    rank_at = [0] * size
    for position, i in enumerate(order):
        same = position and values[order[position - 1]] == values[i]
        rank_at[i] = rank_at[order[position - 1]] if same else position + 1
    rng = random.Random(SEED)
    anywhere = [order[rng.randrange(size)] for _ in range(args.samples)]
    deep = [order[rng.randrange(size - max(1, size // 500), size)] for _ in range(args.samples)]
    external = [f"rep-{i:07d}" for i in range(size)]

    with runtime.db.read() as connection:
        compiled = runtime.programs.compiled(connection, record)
        top = service.leaderboard(connection, record, compiled, BOARD, period=PERIOD, limit=10)
        expected = [(rank_at[i], external[i], values[i]) for i in order[:10]]
        got = [(e["rank"], e["id"], float(e["value"])) for e in top["entries"]]
        run.check = "ok" if got == expected and top["total"] == size else f"MISMATCH: {got[:3]} vs {expected[:3]}"
        lucky = anywhere[0]
        mine = service.standing(connection, record, compiled, BOARD, external[lucky], period=PERIOD)
        if mine["rank"] != rank_at[lucky]:
            run.check += f"; rank of {external[lucky]}: {mine['rank']} (expected {rank_at[lucky]})"

    def fast(call: Callable[[Connection], Any]) -> Callable[[], Any]:
        def go() -> Any:
            with runtime.db.read() as connection:
                return call(connection)

        return go

    def sql(statement: str, **params: Any) -> Callable[[], Any]:
        def go() -> Any:
            with runtime.db.read() as connection:
                return connection.execute(text(statement), {"p": record.id, **params}).all()

        return go

    def board(connection: Connection, **params: Any) -> Any:
        return service.leaderboard(connection, record, compiled, BOARD, period=PERIOD, **params)

    def stand(i: int) -> Callable[[Connection], Any]:
        return lambda c: service.standing(c, record, compiled, BOARD, external[i], period=PERIOD)

    offsets = [rng.randrange(size * 99 // 100, size - 10) for _ in range(args.samples)]
    naive_n = args.naive_samples
    around_sql = (
        "WITH ranked AS (SELECT subject_id, value, rank() OVER (ORDER BY value DESC) AS r, "
        "row_number() OVER (ORDER BY value DESC, subject_id) AS pos FROM metric_totals WHERE " + ON_BOARD + ") "
        "SELECT subject_id, value, r FROM ranked WHERE pos BETWEEN "
        "(SELECT pos FROM ranked WHERE subject_id = :s) - 10 AND (SELECT pos FROM ranked WHERE subject_id = :s) + 10"
    )
    plans: list[tuple[str, list[Callable[[], Any]], list[Callable[[], Any]], str, list[Callable[[], Any]]]] = [
        (
            "top-10",
            [fast(lambda c: board(c, limit=10))] * args.samples,
            [sql(TOP_NAIVE)] * naive_n,
            "ORDER BY value DESC LIMIT 10 (sort)",
            [],
        ),
        (
            "page at offset ~99%",
            [fast(lambda c, k=k: board(c, limit=10, offset=k)) for k in offsets],
            [
                sql(
                    f"SELECT subject_id, value FROM metric_totals WHERE {ON_BOARD} "
                    "ORDER BY value DESC, subject_id LIMIT 10 OFFSET :k",
                    k=k,
                )
                for k in offsets[:naive_n]
            ],
            "LIMIT 10 OFFSET k (sort)",
            [],
        ),
        (
            "around= (10 each side)",
            [fast(lambda c, i=i: board(c, limit=10, around=external[i])) for i in anywhere],
            [sql(around_sql, s=subjects[i]) for i in anywhere[:naive_n]],
            "rank() OVER (whole board)",
            [],
        ),
        (
            "rank of one, any depth",
            [fast(stand(i)) for i in anywhere],
            [
                sql(f"SELECT count(*) + 1 FROM metric_totals WHERE {ON_BOARD} AND value > :x", x=values[i])
                for i in anywhere[:naive_n]
            ],
            "count(*) WHERE value > x (scan)",
            [],
        ),
        (
            "rank of one, deep (last 0.2%)",
            [fast(stand(i)) for i in deep],
            [
                sql(f"SELECT count(*) + 1 FROM metric_totals WHERE {ON_BOARD} AND value > :x", x=values[i])
                for i in deep[:naive_n]
            ],
            "count(*) WHERE value > x (scan)",
            [
                sql(
                    "SELECT count(*) + 1 FROM rank_rows WHERE program_id = :p AND source = 'p' AND key = 'revenue' "
                    "AND period = '2026-11' AND value > :x",
                    x=values[i],
                )
                for i in deep[:naive_n]
            ],
        ),
    ]
    for name, fast_calls, naive_calls, naive_kind, walk_calls in plans:
        figure = Figure(name, naive_kind=naive_kind)
        fast_calls[0]()  # warm the caches and the statement cache
        figure.fast, stopped_fast = timed(fast_calls, args.max_seconds)
        figure.naive, stopped_naive = timed(naive_calls, args.max_seconds)
        figure.index_walk, stopped_walk = timed(walk_calls, args.max_seconds)
        figure.stopped = stopped_fast or stopped_naive or stopped_walk
        run.figures.append(figure)
        print(f"  [{run.database} {size:,}] {name}: done", file=sys.stderr, flush=True)

    def python_sort() -> Any:  # the previous implementation: the service's slow path over a plain board
        with runtime.db.read() as connection:
            today = service._today(compiled, None)
            board_doc = service._board(record, compiled, BOARD)
            return service._slow(
                connection, record, compiled, board_doc, PERIOD, today, scope=None, limit=10, offset=0, around=None
            )

    run.python_sort, _ = timed([python_sort] * args.python_samples, args.max_seconds)


# ---------------------------------------------------------------------------- output


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.2f}"


def print_run(run: Run) -> None:
    print(f"\n=== {run.database}, {run.size:,} participants ===")
    if run.error:
        print(f"  error: {run.error}")
        return
    print(f"  load {run.load_s:.1f} s (participants and metric rows, through the triggers)")
    print(f"  fill {run.fill_s:.1f} s (board added: {run.size:,} rows copied to rank_rows and counted)")
    print(f"  first page and one rank checked against a sort here: {run.check}")
    print(
        f"  {'query':<32}{'fast p50':>10}{'fast p99':>10}{'n':>6}   "
        + f"{'naive p50':>10}{'naive p99':>10}{'n':>4}  naive"
    )
    for f in run.figures:
        line = (
            f"  {f.query:<32}{ms(percentile(f.fast, 0.5)):>10}{ms(percentile(f.fast, 0.99)):>10}{len(f.fast):>6}   "
            f"{ms(percentile(f.naive, 0.5)):>10}{ms(percentile(f.naive, 0.99)):>10}{len(f.naive):>4}  {f.naive_kind}"
        )
        print(line + ("  (stopped by --max-seconds)" if f.stopped else ""))
        if f.index_walk:
            print(
                f"  {'':<32}{'':>10}{'':>10}{'':>6}   {ms(percentile(f.index_walk, 0.5)):>10}"
                f"{ms(percentile(f.index_walk, 0.99)):>10}{len(f.index_walk):>4}  count(*) WHERE value > x "
                "over the ordered index (walks to the rank)"
            )
    if run.python_sort:
        print(
            f"  {'top-10, python sort (before)':<32}{'':>26}   {ms(percentile(run.python_sort, 0.5)):>10}"
            f"{ms(percentile(run.python_sort, 0.99)):>10}{len(run.python_sort):>4}  every row and participant "
            "loaded, ranked in Python"
        )


def print_summary(runs: Sequence[Run]) -> None:
    print("\n=== summary: latency ms, p50 / p99 (fast path | naive) ===")
    for run in runs:
        if run.error:
            continue
        cells = [
            f"{f.query}: {ms(percentile(f.fast, 0.5))}/{ms(percentile(f.fast, 0.99))} | "
            f"{ms(percentile(f.naive, 0.5))}/{ms(percentile(f.naive, 0.99))}"
            for f in run.figures
        ]
        print(f"  {run.database} {run.size:>9,}: " + "; ".join(cells))
    for run in runs:
        if run.database == "postgres" and run.size == 1_000_000 and not run.error:
            worst = max(percentile(f.fast, 0.99) for f in run.figures if f.query.startswith("rank of one"))
            verdict = "meets" if worst <= TARGET_MS / 1000 else "MISSES"
            print(
                f"  target rank of one p99 <= {TARGET_MS:g} ms at 1,000,000 on PostgreSQL: {verdict} ({ms(worst)} ms)"
            )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="participants, comma-separated (default 100k,1M)")
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="one database only")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LEVELUP_BENCH_POSTGRES_URL")
        or os.environ.get("LEVELUP_TEST_POSTGRES_URL")
        or DEFAULT_POSTGRES,
        help="PostgreSQL URL (a schema of its own is made and dropped)",
    )
    parser.add_argument("--samples", type=int, default=500, help="calls per fast query (default 500)")
    parser.add_argument("--naive-samples", type=int, default=10, help="calls per naive query (default 10)")
    parser.add_argument(
        "--python-samples", type=int, default=3, help="calls of the previous implementation (default 3)"
    )
    parser.add_argument("--max-seconds", type=float, default=30.0, help="bound on each timing loop (default 30)")
    parser.add_argument("--tmpdir", default=None, help="where the SQLite files go (default: the system temp dir)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Levelup leaderboard benchmark: sizes {', '.join(f'{s:,}' for s in sizes)}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load_avg}"
    )
    runs: list[Run] = []
    for database in ("sqlite", "postgres"):
        if args.only and database != args.only:
            continue
        for size in sizes:
            target = (
                sqlite_target(args.tmpdir or tempfile.gettempdir())
                if database == "sqlite"
                else postgres_target(args.postgres)
            )
            if isinstance(target, str):
                print(f"\n=== postgres skipped: {target} ===")
                break
            print(f"[{database} {size:,}] load, fill, measure", file=sys.stderr, flush=True)
            run = bench(target, size, args)
            print_run(run)
            runs.append(run)
    print_summary(runs)
    print(
        f"  load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes slow every figure)"
    )


if __name__ == "__main__":
    main()
